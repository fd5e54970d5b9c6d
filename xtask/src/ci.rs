//! `cargo xtest ci`: the README's test command, what `.ci/run` runs after installing
//! what a fresh machine lacks. Each step runs in order; the first failure stops the run.

use std::process::Command;
use std::time::Instant;

/// The test steps: unit and integration tests, the fuzz crate's own tests, the zdtm
/// suite, the fuzz regression fixtures, a short run of every fuzz target, and a short
/// restore fuzz (mutated zdtm dumps through `crust restore`).
const STEPS: &[&[&str]] = &[
    &["test", "--workspace"],
    &["test", "--manifest-path", "fuzz/Cargo.toml"],
    &["xtest", "zdtm"],
    &["xtest", "fuzz", "--replay"],
    &["xtest", "fuzz", "--time", "10"],
    &["xtest", "restore-fuzz", "--time", "90"],
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
