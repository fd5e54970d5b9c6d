//! crust's zdtm suite: test programs that build state, get checkpointed and restored by
//! `crust`, and check that the state survived; and the harness that drives them.
//!
//! # Protocol
//! 1. The harness is a child subreaper and reaps every child at once (`reaper`).
//! 2. It starts a test with `ZDTM_READY_FD` (write end of a pipe) and `ZDTM_OUTDIR` in the
//!    env. The test forks; the parent exits; the child calls setsid, points stdio at
//!    /dev/null and `<outdir>/<name>.log`, builds its state from randomness, writes
//!    `<pid> <token>\n` (or `skip <reason>\n`) into the pipe and closes it. The harness reads
//!    to EOF, so no pipe is held at dump time.
//! 3. The harness records /proc state, runs `crust dump`, checks the target is gone,
//!    runs `crust restore -d`, and compares the restored process's /proc state.
//! 4. It sends SIGTERM. The test's handler sets a flag; the test checks its state against
//!    what it recorded before the dump and writes `PASS` or `FAIL: reason`, then
//!    `token <token>`, to `<outdir>/<name>.out`, and exits 0/1. A program that was re-run
//!    instead of restored has a new token and fails.
//!
//! `testlib` is the Rust side of the test library; `c/zdtmtst.{h,c}` the C side.
#![deny(unsafe_code)]

pub mod catalog;
pub mod container;
pub mod cross;
pub mod demo;
pub mod harness;
pub mod kill;
pub mod leftovers;
pub mod own_cgroups;
pub mod procfs;
pub mod reaper;
pub mod report;
pub mod runtimes;
pub mod snapshot;
pub mod testlib;
pub mod tree;

use anyhow::Context;
use harness::{Config, Harness, HostInfo, Verdict, ZdtmTest};
use report::{Report, TestResult};

/// Whether `--filter` picks `spec`: one of its comma-separated words is part of the
/// test's name or names its group.
pub fn filter_matches(filter: &str, spec: &catalog::TestSpec) -> bool {
    filter.split(',').filter(|word| !word.is_empty()).any(|word| spec.name.contains(word) || word == spec.group)
}

/// Whether `flavor` lists `spec`: a test that needs namespaces of its own is listed in
/// the mntns flavor only, and the mntns flavor (so far without /proc and /dev, issue 15's
/// M1) lists only those. A test a flavor does not list is neither run nor counted as
/// skipped there.
pub fn flavor_lists(spec: &catalog::TestSpec, flavor: catalog::Flavor) -> bool {
    spec.requirements.contains(&catalog::Requirement::MntnsFlavor) == (flavor == catalog::Flavor::Mntns)
}

/// Runs the suite with `config`; prints the table and summary; returns the report.
pub fn run_suite(config: Config) -> anyhow::Result<Report> {
    let host = HostInfo::probe(config.big);
    let json_path = config.json.clone();
    let filter = config.filter.clone();
    let mut harness = Harness::new(config)?;
    let flavors = harness.config.flavors.clone();
    let group = harness.config.group.clone();
    let config_snap = harness.config.snap;
    let mut report = Report::default();
    println!("{}", report::table_header());
    for flavor in flavors {
    for spec in catalog::TESTS {
        if filter.as_deref().is_some_and(|filter| !filter_matches(filter, spec)) {
            continue;
        }
        // The runtime group is slow: it runs when asked for by group or filter.
        let wanted_group = group.as_deref().unwrap_or(match filter.as_deref() {
            Some(filter) if filter_matches(filter, spec) => spec.group,
            _ => "core",
        });
        if wanted_group != "all" && wanted_group != spec.group {
            continue;
        }
        if !flavor_lists(spec, flavor) {
            continue;
        }
        let outcome = match (spec.can_run(&host), spec.flavor_skip(flavor)) {
            (Err(reason), _) | (Ok(()), Some(reason)) => harness::TestOutcome {
                verdict: Verdict::Skipped(reason),
                dump_ms: None,
                restore_ms: None,
            },
            // A connection cannot live on in two processes: killing the original after
            // `--leave-running` resets it under the restored one.
            (Ok(()), None) if config_snap && spec.dump_args.contains(&"--tcp-established") => harness::TestOutcome {
                verdict: Verdict::Skipped("--snap: killing the original resets its TCP connection".into()),
                dump_ms: None,
                restore_ms: None,
            },
            (Ok(()), None) => spec.run(&harness, flavor),
        };
        let result = TestResult {
            name: spec.name.to_string(),
            flavor: flavor.name(),
            outcome,
        };
        println!("{}", report::table_row(&result));
        if let Verdict::Failed(error) = &result.outcome.verdict {
            for line in format!("{error:#}").lines().skip(1) {
                println!("    {line}");
            }
        }
        report.results.push(result);
    }
    // The kill tests, after the others (host flavor; in the core group): crust
    // SIGKILLed at each step, then signalled at random moments.
    let group_wanted = group.as_deref().is_none_or(|group| group == "core" || group == "all");
    let wanted = |name: &str| filter.as_deref().is_none_or(|filter| name.contains(filter) || filter == "core") && group_wanted;
    let mut kill_tests: Vec<Box<dyn ZdtmTest>> = Vec::new();
    if wanted(kill::STEPS_NAME) {
        kill_tests.push(Box::new(kill::KillSteps));
    }
    if wanted(kill::NAME) && harness.config.kill_trials > 0 {
        kill_tests.push(Box::new(kill::KillTest { trials: harness.config.kill_trials, seed: harness.config.kill_seed }));
    }
    for test in kill_tests.iter().filter(|_| flavor == catalog::Flavor::Host) {
        let cross = harness.config.dump_with.is_some() || harness.config.restore_with.is_some();
        let can_run = if cross { Err("a cross run: the kill tests hold and kill crust itself at its own points".into()) } else { test.can_run(&host) };
        let outcome = match can_run {
            Err(reason) => harness::TestOutcome { verdict: Verdict::Skipped(reason), dump_ms: None, restore_ms: None },
            Ok(()) => test.run(&harness, flavor),
        };
        let result = TestResult { name: test.name().to_string(), flavor: flavor.name(), outcome };
        println!("{}", report::table_row(&result));
        if let Verdict::Failed(error) = &result.outcome.verdict {
            for line in format!("{error:#}").lines().skip(1) {
                println!("    {line}");
            }
        }
        report.results.push(result);
    }
    }
    // What the container flavors' run left besides its bridge, cgroups and rootfs
    // counts as a failure of its own.
    if let Some(left) = harness.finish_run() {
        let result = TestResult {
            name: "container-run-teardown".to_string(),
            flavor: "container",
            outcome: harness::TestOutcome {
                verdict: Verdict::Failed(anyhow::anyhow!("the run {}", left.describe())),
                dump_ms: None,
                restore_ms: None,
            },
        };
        println!("{}", report::table_row(&result));
        report.results.push(result);
    }
    let skipped: Vec<&TestResult> = report
        .results
        .iter()
        .filter(|result| matches!(result.outcome.verdict, Verdict::Skipped(_)))
        .collect();
    if !skipped.is_empty() {
        println!("skipped:");
        for result in skipped {
            if let Verdict::Skipped(reason) = &result.outcome.verdict {
                println!("  {} [{}]: {reason}", result.name, result.flavor);
            }
        }
    }
    if let Some(path) = json_path {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let json = report.to_json(std::env::consts::ARCH, kernel.trim());
        let text = serde_json::to_string_pretty(&json).context("serialise report")?;
        std::fs::write(&path, text + "\n").with_context(|| format!("write {}", path.display()))?;
    }
    println!("{}", report.summary_line());
    Ok(report)
}
