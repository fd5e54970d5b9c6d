//! `zdtm-runner`: the harness binary `cargo xtest zdtm` and `cargo xtest demo` exec.
//!
//! zdtm-runner run --engine PATH --workdir DIR [--filter S] [--iters N] [--snap] [--pre-dump] [--lazy] [--keep] [--big] [--json PATH] [--flavor host|ns|mntns|container|container-uns|all[,...]] [--group core|runtime|all] [--dump-with PATH | --restore-with PATH] [--kill-trials N] [--kill-seed S]
//! zdtm-runner demo --engine PATH --workdir DIR
//! zdtm-runner runtimes --criu LABEL=PATH [--criu LABEL=PATH] --workdir DIR [--filter S] [--criu-config FILE]
//! zdtm-runner list
#![deny(unsafe_code)]

use anyhow::{bail, Context};
use crust_zdtm::catalog::Flavor;
use crust_zdtm::harness::Config;
use std::path::PathBuf;

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("zdtm: {error:#}");
            std::process::exit(2);
        }
    }
}

fn run() -> anyhow::Result<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((verb, rest)) = args.split_first() else {
        bail!("usage: zdtm-runner run|demo|runtimes|list [options]");
    };
    match verb.as_str() {
        "list" => {
            for spec in crust_zdtm::catalog::TESTS {
                println!("{}", spec.name);
            }
            Ok(0)
        }
        "run" => {
            let report = crust_zdtm::run_suite(parse_config(rest)?)?;
            Ok(if report.counts().1 == 0 { 0 } else { 1 })
        }
        "runtimes" => {
            let results = crust_zdtm::runtimes::run(&parse_runtimes(rest)?)?;
            Ok(if results.iter().any(|result| result.outcome.failed()) { 1 } else { 0 })
        }
        "demo" => {
            crust_zdtm::demo::run_demo(parse_config(rest)?)?;
            Ok(0)
        }
        other => bail!("unknown verb {other}"),
    }
}

/// `runtimes --criu LABEL=PATH [--criu LABEL=PATH] --workdir DIR [--filter S]`.
fn parse_runtimes(args: &[String]) -> anyhow::Result<crust_zdtm::runtimes::Config> {
    let mut config = crust_zdtm::runtimes::Config { crius: Vec::new(), workdir: PathBuf::from("target/runtimes"), filter: None, criu_config: None };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().cloned().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--criu" => {
                let pair = value("--criu")?;
                let (label, path) = pair.split_once('=').with_context(|| format!("--criu takes LABEL=PATH, not {pair}"))?;
                config.crius.push((label.to_string(), PathBuf::from(path)));
            }
            "--workdir" => config.workdir = PathBuf::from(value("--workdir")?),
            "--filter" => config.filter = Some(value("--filter")?),
            "--criu-config" => config.criu_config = Some(PathBuf::from(value("--criu-config")?)),
            other => bail!("unknown option {other}"),
        }
    }
    if config.crius.is_empty() {
        bail!("--criu LABEL=PATH is required");
    }
    Ok(config)
}

fn parse_config(args: &[String]) -> anyhow::Result<Config> {
    let mut config = Config {
        engine: PathBuf::new(),
        workdir: PathBuf::from("target/zdtm"),
        filter: None,
        iters: 1,
        snap: false,
        pre_dump: false,
        lazy: false,
        keep: false,
        big: false,
        json: None,
        flavors: vec![Flavor::Host],
        group: None,
        dump_with: None,
        restore_with: None,
        kill_trials: crust_zdtm::kill::DEFAULT_TRIALS,
        kill_seed: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--engine" => config.engine = PathBuf::from(value("--engine")?),
            "--workdir" => config.workdir = PathBuf::from(value("--workdir")?),
            "--filter" => config.filter = Some(value("--filter")?),
            "--iters" => {
                config.iters = value("--iters")?
                    .parse()
                    .context("--iters takes a number")?;
                if config.iters == 0 {
                    bail!("--iters must be at least 1");
                }
            }
            "--json" => config.json = Some(PathBuf::from(value("--json")?)),
            "--flavor" => {
                let name = value("--flavor")?;
                config.flavors = Flavor::parse_list(&name)
                    .with_context(|| format!("--flavor takes host, ns, mntns, container, container-uns or all, or a comma-separated list of them, not {name}"))?;
            }
            "--group" => config.group = Some(value("--group")?),
            "--dump-with" => config.dump_with = Some(PathBuf::from(value("--dump-with")?)),
            "--restore-with" => config.restore_with = Some(PathBuf::from(value("--restore-with")?)),
            "--kill-trials" => config.kill_trials = value("--kill-trials")?.parse().context("--kill-trials takes a number")?,
            "--kill-seed" => config.kill_seed = Some(value("--kill-seed")?.parse().context("--kill-seed takes a number")?),
            "--snap" => config.snap = true,
            "--pre-dump" => config.pre_dump = true,
            "--lazy" => config.lazy = true,
            "--keep" => config.keep = true,
            "--big" => config.big = true,
            other => bail!("unknown option {other}"),
        }
    }
    if config.engine.as_os_str().is_empty() {
        bail!("--engine PATH is required");
    }
    if config.dump_with.is_some() && config.restore_with.is_some() {
        bail!("--dump-with and --restore-with: one of them (the engine does the other half)");
    }
    Ok(config)
}
