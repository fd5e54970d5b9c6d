//! `cargo xtest ci`: the README's test command, what `.ci/run` runs after installing
//! what a fresh machine lacks. Each step runs in order; the first failure stops the run.

use std::process::Command;
use std::time::Instant;

/// The test steps: unit and integration tests, the fuzz crate's own tests, the zdtm
/// suite, the same with the reference CRIU dumping and crust restoring and the reverse
/// (the core group in the host flavor, about a minute each), the fuzz regression
/// fixtures, and a short run of every fuzz target.
const STEPS: &[&[&str]] = &[
    &["test", "--workspace"],
    &["test", "--manifest-path", "fuzz/Cargo.toml"],
    &["xtest", "zdtm"],
    &["xtest", "zdtm", "--dump-with", "ci/criu"],
    &["xtest", "zdtm", "--restore-with", "ci/criu"],
    &["xtest", "fuzz", "--replay"],
    &["xtest", "fuzz", "--time", "10"],
];

/// Entry point of the ci verb.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let quick = args.iter().any(|a| a == "--quick");
    let started = Instant::now();
    for step in STEPS {
        if quick && step.contains(&"fuzz") {
            continue;
        }
        let step_started = Instant::now();
        println!("\n=== ci: cargo {}", step.join(" "));
        let status = Command::new(&cargo).args(*step).status()?;
        println!("=== ci: cargo {}: {} in {:.0}s", step.join(" "), if status.success() { "ok" } else { "FAILED" }, step_started.elapsed().as_secs_f64());
        if !status.success() {
            anyhow::bail!("ci step `cargo {}` failed ({status})", step.join(" "));
        }
    }
    println!("\n=== ci: all steps passed in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}
