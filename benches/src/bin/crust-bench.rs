//! `crust-bench`: runs the side-by-side benchmark (`cargo xtest bench` builds crust and
//! this binary, then hands over here).
//!
//! ```text
//! crust-bench --crust PATH [--quick] [--vs-criu PATH] [--sizes 64M,256M,1G] [--reps N]
//!             [--only NAME,...] [--out DIR] [--scratch DIR] [--leave-running] [--frozen-copy]
//!             [--page-server] [--scaling]
//! ```
//!
//! `--page-server` measures page server throughput on loopback instead
//! (`crust_benches::page_server`): for each size, crust's dump to crust's page server
//! (and CRIU's to CRIU's with `--vs-criu`), a table of GB/s.
//!
//! `--scaling` measures dump and restore time against the count of VMAs (10 to 100,000),
//! threads and processes (1 to 1,000) and fds (10 to 100,000) instead, one round per point
//! (`--reps N` for medians), and writes `scaling.md` and `scaling.svg`
//! (`crust_benches::scaling`); `--quick` runs two counts of each.
//!
//! `--leave-running` adds an `anon-SIZE-R` workload per size, dumped with
//! `--leave-running`; `--frozen-copy` passes crust's `--frozen-copy` (its pages copied
//! while the target is frozen, the path before the copy-on-write snapshot).
//!
//! ```text
//! ```

use std::path::PathBuf;

use anyhow::{bail, Context};
use crust_benches::engine::{run_round, Engine, EngineKind, Outcome, RoundPlace};
use crust_benches::report::{failure_notes, markdown_table, time_vs_size_svg, Row, Summary};
use crust_benches::sys;
use crust_benches::workload::{parse_size, Workload};

/// What the command line asks for.
struct Options {
    crust: PathBuf,
    criu: Option<PathBuf>,
    quick: bool,
    sizes: Vec<u64>,
    reps: usize,
    only: Option<Vec<String>>,
    out: Option<PathBuf>,
    scratch: PathBuf,
    leave_running: bool,
    frozen_copy: bool,
    page_server: bool,
    scaling: bool,
}

fn main() -> anyhow::Result<()> {
    let options = parse_options(std::env::args().skip(1).collect())?;
    sys::become_subreaper().context("become a child subreaper")?;
    let workloads = select_workloads(&options);
    let crust_dump_args = if options.frozen_copy { vec!["--frozen-copy".to_string()] } else { Vec::new() };
    let mut engines = vec![Engine { kind: EngineKind::Crust, path: options.crust.clone(), dump_args: crust_dump_args }];
    if let Some(criu) = &options.criu {
        engines.push(Engine { kind: EngineKind::Criu, path: criu.clone(), dump_args: Vec::new() });
    }
    std::fs::create_dir_all(&options.scratch).with_context(|| format!("create {}", options.scratch.display()))?;
    if options.page_server {
        let mut transfers = Vec::new();
        for _ in 0..options.reps {
            for &size in &options.sizes {
                for engine in &engines {
                    let transfer = crust_benches::page_server::measure(engine, size, &options.scratch)?;
                    eprintln!("{:<5} {:>5} {:.2} GB/s", engine.name(), crust_benches::workload::size_label(size), transfer.gb_per_s());
                    transfers.push(transfer);
                }
            }
        }
        println!("{}", crust_benches::page_server::markdown(&transfers));
        return Ok(());
    }
    let place = RoundPlace { scratch: &options.scratch };
    if options.scaling {
        return run_scaling(&options, &engines, &place);
    }

    // outcomes[workload][engine]
    let mut outcomes: Vec<Vec<Vec<Outcome>>> = vec![vec![Vec::new(); engines.len()]; workloads.len()];
    // The floor under each memory workload, measured once per round (`floor.rs`).
    let mut floors: Vec<Vec<crust_benches::floor::Floor>> = vec![Vec::new(); workloads.len()];
    for rep in 0..options.reps {
        for (w, workload) in workloads.iter().enumerate() {
            if rep == 0 && workload.kind == "anon" && workload.count >= WARM_UP_FROM {
                // This VM hands memory that stayed free for a few seconds back to its host
                // (free page reporting), and the first touch of it costs 1.5-2.9 s per GiB
                // in whoever touches it (docs/bench/README.md): the engine that went first
                // met it, the other one reused what the first had just freed. One round
                // before the counted ones, not counted, leaves both the same warm memory.
                let outcome = run_round(&engines[0], workload, &place).unwrap_or_else(|error| Outcome::Failed(format!("harness: {error:#}")));
                eprintln!("[warm-up] {:<12} {:<5} {} (not counted)", workload.name, engines[0].name(), describe(&outcome));
            }
            // Alternate which engine goes first, so neither always meets a warm cache.
            let mut order: Vec<usize> = (0..engines.len()).collect();
            if rep % 2 == 1 {
                order.reverse();
            }
            for e in order {
                let engine = &engines[e];
                // A refusal does not change between rounds; a round over 30 s is not repeated
                // (the default run must stay short).
                let earlier_refusal = outcomes[w][e].iter().any(|o| matches!(o, Outcome::Unsupported(_)));
                let too_slow = outcomes[w][e].iter().any(|o| matches!(o, Outcome::Measured(f) if f.dump_ms + f.restore_ms > 30_000.0));
                if earlier_refusal || too_slow {
                    continue;
                }
                let outcome = match run_round(engine, workload, &place) {
                    Ok(outcome) => outcome,
                    Err(error) => Outcome::Failed(format!("harness: {error:#}")),
                };
                eprintln!("[{}/{}] {:<12} {:<5} {}", rep + 1, options.reps, workload.name, engine.name(), describe(&outcome));
                outcomes[w][e].push(outcome);
            }
            if workload.kind == "anon" && !workload.leave_running {
                match crust_benches::floor::measure(workload, &options.scratch) {
                    Ok(floor) => {
                        eprintln!(
                            "[{}/{}] {:<12} floor write {:.1} ms, read {:.1} ms, exit {:.1} ms",
                            rep + 1,
                            options.reps,
                            workload.name,
                            floor.write_ms,
                            floor.read_ms,
                            floor.exit_ms
                        );
                        floors[w].push(floor);
                    }
                    Err(error) => eprintln!("[{}/{}] {:<12} floor not measured: {error:#}", rep + 1, options.reps, workload.name),
                }
            }
        }
    }

    let rows: Vec<Row> = workloads
        .iter()
        .zip(&outcomes)
        .map(|(workload, per_engine)| Row {
            workload: workload.clone(),
            crust: Summary::from_outcomes(&per_engine[0]),
            criu: (engines.len() > 1).then(|| Summary::from_outcomes(&per_engine[1])),
        })
        .collect();
    let mut table = markdown_table(&rows);
    let floor_table = crust_benches::report::floors_table(&rows, &floors);
    if !floor_table.is_empty() {
        table.push('\n');
        table.push_str(&floor_table);
    }
    println!("{table}");
    for note in failure_notes(&rows) {
        println!("- {note}");
    }

    let out = output_dir(&options)?;
    let report = report_markdown(&options, &engines, &table, &failure_notes(&rows));
    std::fs::write(out.join("report.md"), report).with_context(|| format!("write {}/report.md", out.display()))?;
    std::fs::write(out.join("time_vs_size.svg"), time_vs_size_svg(&rows))
        .with_context(|| format!("write {}/time_vs_size.svg", out.display()))?;
    eprintln!("wrote {}/report.md and time_vs_size.svg", out.display());
    let broken = rows.iter().any(|r| matches!(r.crust, Summary::Failed(_)));
    if broken {
        bail!("a crust round failed on a workload it did not refuse (see the table)");
    }
    Ok(())
}

/// `--scaling`: every count of every dimension this machine can run, each engine, then
/// `scaling.md` and `scaling.svg` in the output directory.
fn run_scaling(options: &Options, engines: &[Engine], place: &RoundPlace<'_>) -> anyhow::Result<()> {
    use crust_benches::scaling::{dimensions, machine_limit, machine_limits, markdown, svg, Curve, Point};
    let (max_map_count, nofile_hard) = machine_limits();
    let mut curves = Vec::new();
    for dimension in dimensions(options.quick) {
        if let Some(only) = &options.only {
            if !only.iter().any(|name| name == dimension.kind) {
                continue;
            }
        }
        let mut curve = Curve { dimension: dimension.clone(), points: Vec::new(), skipped: Vec::new() };
        for &count in &dimension.counts {
            if let Some(reason) = machine_limit(dimension.kind, count, max_map_count, nofile_hard) {
                eprintln!("{:<8} {:>7} not run: {reason}", dimension.kind, count);
                curve.skipped.push(reason);
                continue;
            }
            let workload = Workload::counted(dimension.kind, count);
            let mut per_engine: Vec<Vec<Outcome>> = vec![Vec::new(); engines.len()];
            for rep in 0..options.reps {
                let mut order: Vec<usize> = (0..engines.len()).collect();
                if rep % 2 == 1 {
                    order.reverse();
                }
                for e in order {
                    let outcome = run_round(&engines[e], &workload, place).unwrap_or_else(|error| Outcome::Failed(format!("harness: {error:#}")));
                    eprintln!("[{}/{}] {:<8} {:>7} {:<5} {}", rep + 1, options.reps, dimension.kind, count, engines[e].name(), describe(&outcome));
                    per_engine[e].push(outcome);
                }
            }
            curve.points.push(Point {
                count,
                crust: Summary::from_outcomes(&per_engine[0]),
                criu: (engines.len() > 1).then(|| Summary::from_outcomes(&per_engine[1])),
            });
        }
        curves.push(curve);
    }
    let out = output_dir(options)?;
    let text = markdown(&curves, &scaling_header(options));
    print!("{text}");
    std::fs::write(out.join("scaling.md"), &text).with_context(|| format!("write {}/scaling.md", out.display()))?;
    std::fs::write(out.join("scaling.svg"), svg(&curves)).with_context(|| format!("write {}/scaling.svg", out.display()))?;
    eprintln!("wrote {}/scaling.md and scaling.svg", out.display());
    let broken = curves.iter().flat_map(|c| &c.points).any(|p| matches!(p.crust, Summary::Failed(_)));
    if broken {
        bail!("a crust round failed (see scaling.md)");
    }
    Ok(())
}

/// Where the report goes (`--out`, else `docs/bench`, or under the scratch directory with
/// `--quick`), created.
fn output_dir(options: &Options) -> anyhow::Result<PathBuf> {
    let out = options.out.clone().unwrap_or_else(|| {
        if options.quick {
            options.scratch.join("report")
        } else {
            PathBuf::from("docs/bench")
        }
    });
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    Ok(out)
}

/// The checkout's short commit, empty outside git.
fn short_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn scaling_header(options: &Options) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let commit = short_commit();
    format!(
        "Written by `cargo xtest bench --scaling{}`. {} round(s) per point (median), engines alternating; kernel {}, crust {}.",
        if options.criu.is_some() { " --vs-criu ci/criu" } else { "" },
        options.reps,
        kernel.trim(),
        if commit.is_empty() { "?" } else { &commit }
    )
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Measured(f) => format!(
            "freeze {} ms, dump {:.1} ms (cpu {:.0}), restore {:.1} ms (cpu {:.0}), image {:.1} MiB, rss {}/{} MiB, verified",
            f.freeze_ms.map(|v| format!("{v:.1}")).unwrap_or_else(|| "?".into()),
            f.dump_ms,
            f.dump_cpu_ms,
            f.restore_ms,
            f.restore_cpu_ms,
            f.image_bytes as f64 / (1 << 20) as f64,
            f.dump_rss_kib / 1024,
            f.restore_rss_kib / 1024
        ),
        Outcome::Unsupported(reason) => format!("unsupported: {reason}"),
        Outcome::Failed(reason) => format!("FAILED: {reason}"),
    }
}

fn select_workloads(options: &Options) -> Vec<Workload> {
    let mut workloads = vec![Workload::idle()];
    workloads.extend(options.sizes.iter().map(|&bytes| Workload::anon(bytes)));
    if options.leave_running {
        workloads.extend(options.sizes.iter().map(|&bytes| Workload::anon_leave_running(bytes)));
    }
    workloads.push(Workload::counted("vmas", 10_000));
    workloads.push(Workload::counted("threads", 100));
    workloads.push(Workload::counted("tree", 100));
    workloads.push(Workload::counted("fds", 10_000));
    if let Some(only) = &options.only {
        workloads.retain(|w| only.iter().any(|name| name == &w.name || name == w.kind));
    }
    workloads
}

/// Memory workloads from this size on get a warm-up round.
const WARM_UP_FROM: u64 = 256 << 20;

const USAGE: &str = "crust-bench --crust PATH [--vs-criu PATH] [--quick] [--sizes 64M,256M,1G,4G] [--reps N]
            [--only NAME,...] [--leave-running] [--frozen-copy] [--out DIR] [--scratch DIR]
            [--page-server] [--scaling]
Runs the benchmark workloads under crust (and the reference CRIU with --vs-criu), verifies
every restored process, prints the table and writes report.md and time_vs_size.svg
(docs/bench/README.md says what each column means). Usually run as `cargo xtest bench`.";

fn parse_options(args: Vec<String>) -> anyhow::Result<Options> {
    let mut crust = None;
    let mut criu = None;
    let mut quick = false;
    let mut sizes = None;
    let mut reps = None;
    let mut only = None;
    let mut out = None;
    let mut scratch = PathBuf::from("target/bench");
    let mut leave_running = false;
    let mut frozen_copy = false;
    let mut page_server = false;
    let mut scaling = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--crust" => crust = Some(PathBuf::from(value("--crust")?)),
            "--vs-criu" => criu = Some(PathBuf::from(value("--vs-criu")?)),
            "--quick" => quick = true,
            "--sizes" => {
                sizes = Some(value("--sizes")?.split(',').map(parse_size).collect::<anyhow::Result<Vec<u64>>>()?)
            }
            "--reps" => reps = Some(value("--reps")?.parse().context("--reps N")?),
            "--only" => only = Some(value("--only")?.split(',').map(str::to_string).collect()),
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--scratch" => scratch = PathBuf::from(value("--scratch")?),
            "--leave-running" => leave_running = true,
            "--frozen-copy" => frozen_copy = true,
            "--page-server" => page_server = true,
            "--scaling" => scaling = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("crust-bench: unknown option {other} (--help lists them)"),
        }
    }
    let crust = crust.context("--crust PATH is required")?;
    let criu = match criu {
        Some(path) => Some(std::fs::canonicalize(&path).with_context(|| format!("--vs-criu {}", path.display()))?),
        None => None,
    };
    let default_sizes = if quick { vec![64 << 20, 256 << 20] } else { vec![64 << 20, 256 << 20, 1 << 30] };
    Ok(Options {
        crust: std::fs::canonicalize(&crust).with_context(|| format!("--crust {}", crust.display()))?,
        criu,
        quick,
        sizes: sizes.unwrap_or(default_sizes),
        reps: reps.unwrap_or(if quick || scaling { 1 } else { 3 }),
        only,
        out,
        scratch: std::path::absolute(&scratch).unwrap_or(scratch),
        leave_running,
        frozen_copy,
        page_server,
        scaling,
    })
}

fn report_markdown(options: &Options, engines: &[Engine], table: &str, notes: &[String]) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let commit = short_commit();
    let criu_version = options
        .criu
        .as_ref()
        .and_then(|path| std::process::Command::new(path).arg("--version").output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string());
    let mut text = String::new();
    text.push_str("# crust benchmarks: freeze, dump and restore\n\n");
    text.push_str("Written by `cargo xtest bench");
    if options.criu.is_some() {
        text.push_str(" --vs-criu ci/criu");
    }
    text.push_str("`. ");
    text.push_str(&format!(
        "Medians of {} round(s) per cell, engines alternating; kernel {}, crust {}{}, images on local disk (page cache warm).\n\n",
        options.reps,
        kernel.trim(),
        if commit.is_empty() { "?" } else { &commit },
        criu_version.map(|v| format!(", CRIU {v}")).unwrap_or_default()
    ));
    text.push_str(&format!(
        "Engines: {}. Each round starts the workload, dumps it (the dump kills it), restores it with `restore -d`, \
         and checks the restored process's memory checksum, threads, children and fds against the ones it had \
         before the dump: a round that restores a different process counts as failed, never as a time.\n\n",
        engines.iter().map(|e| e.name()).collect::<Vec<_>>().join(", ")
    ));
    text.push_str(
        "freeze: how long the target was stopped (crust: seize to kill, or to release with `--leave-running`, \
         from `-v3`; CRIU: `frozen_time` of stats-dump). `-R` workloads are dumped with `--leave-running`: the \
         original is checked after the dump, then killed, and the images restored. dump/restore: wall time of the \
         command. RSS: peak resident set of the command (wait4).\n\n",
    );
    text.push_str(table);
    if !notes.is_empty() {
        text.push('\n');
        for note in notes {
            text.push_str(&format!("- {note}\n"));
        }
    }
    text.push_str("\n![time against memory size](time_vs_size.svg)\n");
    text
}
