//! `cargo xtest fuzz`: runs the cargo-fuzz targets in fuzz/ and replays their regressions.
//!
//! ```text
//! cargo xtest fuzz [--target T]... [--time S] [--replay] [--list]
//! ```
//!
//! * default: for every target (or each `--target`), seed `fuzz/corpus/<T>` from the
//!   image fixtures, run `cargo +nightly fuzz run T -- -max_total_time=S`, print the
//!   target's execs, exec/s, coverage and features from libFuzzer's closing lines.
//!   A crash, timeout or out-of-memory input is copied to `fuzz/regressions/<T>/` (to
//!   commit: it becomes a regression fixture) and the verb fails once all targets ran.
//! * `--replay`: run every input under `fuzz/regressions/<T>/` once through its target
//!   (`-runs=0`), failing if any still crashes.
//! * `--list`: print the targets.
//!
//! The fuzz crate is its own workspace on nightly; this file knows its layout
//! (`fuzz/Cargo.toml` `[[bin]]` names) and the dump-directory input encoding of the
//! `dump_dir` target, which it writes seeds in.

use anyhow::{bail, Context};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Entry point of the fuzz verb.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let options = FuzzOptions::parse(args)?;
    let layout = FuzzLayout::locate()?;
    let all_targets = layout.targets()?;
    let targets = if options.targets.is_empty() {
        all_targets
    } else {
        for target in &options.targets {
            if !all_targets.contains(target) {
                bail!(
                    "fuzz: no target {target} in {} (have: {})",
                    layout.manifest().display(),
                    all_targets.join(", ")
                );
            }
        }
        options.targets.clone()
    };
    if options.list {
        for target in &targets {
            println!("{target}");
        }
        return Ok(());
    }
    check_cargo_fuzz()?;
    if options.replay {
        replay_regressions(&layout, &targets)
    } else {
        fuzz_targets(&layout, &targets, &options)
    }
}

/// Command-line options of the fuzz verb.
#[derive(Debug, Default)]
struct FuzzOptions {
    targets: Vec<String>,
    seconds_per_target: u64,
    replay: bool,
    list: bool,
}

impl FuzzOptions {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = FuzzOptions {
            seconds_per_target: 60,
            ..FuzzOptions::default()
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--target" | "-t" => {
                    let target = args.next().context("fuzz: --target needs a target name")?;
                    options.targets.push(target.clone());
                }
                "--time" => {
                    let seconds = args.next().context("fuzz: --time needs seconds")?;
                    options.seconds_per_target = seconds.parse().with_context(|| {
                        format!("fuzz: --time {seconds}: not a number of seconds")
                    })?;
                }
                "--replay" => options.replay = true,
                "--list" => options.list = true,
                "--help" | "-h" => {
                    eprintln!("usage: cargo xtest fuzz [--target T]... [--time SECONDS] [--replay] [--list]");
                    std::process::exit(0);
                }
                other => bail!("fuzz: unknown option {other}"),
            }
        }
        Ok(options)
    }
}

/// Where the fuzz crate and its inputs live.
struct FuzzLayout {
    repo_root: PathBuf,
    fuzz_dir: PathBuf,
}

impl FuzzLayout {
    fn locate() -> anyhow::Result<Self> {
        let repo_root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("fuzz: xtask has no parent directory")?
            .to_path_buf();
        let fuzz_dir = repo_root.join("fuzz");
        if !fuzz_dir.join("Cargo.toml").is_file() {
            bail!("fuzz: no fuzz crate at {}", fuzz_dir.display());
        }
        Ok(FuzzLayout {
            repo_root,
            fuzz_dir,
        })
    }

    fn manifest(&self) -> PathBuf {
        self.fuzz_dir.join("Cargo.toml")
    }

    /// Target names: the `name` of every `[[bin]]` table in fuzz/Cargo.toml.
    fn targets(&self) -> anyhow::Result<Vec<String>> {
        let manifest = fs::read_to_string(self.manifest())
            .with_context(|| format!("fuzz: read {}", self.manifest().display()))?;
        Ok(bin_names_in_manifest(&manifest))
    }

    fn corpus_dir(&self, target: &str) -> PathBuf {
        self.fuzz_dir.join("corpus").join(target)
    }

    fn regressions_dir(&self, target: &str) -> PathBuf {
        self.fuzz_dir.join("regressions").join(target)
    }

    /// Not under artifacts/: cargo-fuzz takes the newest file there as the crash input.
    fn log_path(&self, target: &str) -> PathBuf {
        self.fuzz_dir.join("logs").join(format!("{target}.log"))
    }

    /// Directories holding image fixtures, in the images crate.
    fn fixture_roots(&self) -> Vec<PathBuf> {
        [
            "images/tests/fixtures",
            "images/tests/criu-fixtures",
            "images/tests/snapshots",
        ]
        .iter()
        .map(|relative| self.repo_root.join(relative))
        .filter(|path| path.is_dir())
        .collect()
    }
}

/// What libFuzzer reported for one target run.
#[derive(Debug, Default, PartialEq)]
struct FuzzRunStats {
    executions: Option<u64>,
    executions_per_second: Option<u64>,
    coverage: Option<u64>,
    features: Option<u64>,
    corpus_units: Option<u64>,
    new_units: Option<u64>,
    peak_rss_mb: Option<u64>,
    /// Inputs libFuzzer wrote after a crash, leak, timeout or out-of-memory.
    failure_inputs: Vec<PathBuf>,
}

fn fuzz_targets(
    layout: &FuzzLayout,
    targets: &[String],
    options: &FuzzOptions,
) -> anyhow::Result<()> {
    eprintln!("fuzz: building {} targets", targets.len());
    let mut build = cargo_fuzz(layout, &["build"]);
    run_checked(&mut build, "cargo fuzz build")?;

    let mut summary = Vec::new();
    let mut failed_targets = Vec::new();
    for target in targets {
        let seeds = seed_corpus(layout, target)?;
        eprintln!(
            "fuzz: {target}: {seeds} seed inputs, {}s",
            options.seconds_per_target
        );
        let corpus = layout.corpus_dir(target);
        let max_total_time = format!("-max_total_time={}", options.seconds_per_target);
        let mut command = cargo_fuzz(
            layout,
            &[
                "run",
                target,
                path_str(&corpus)?,
                "--",
                &max_total_time,
                "-print_final_stats=1",
                "-timeout=10",
                "-rss_limit_mb=2048",
                "-max_len=262144",
            ],
        );
        let (succeeded, output) = run_logged(&mut command, &layout.log_path(target))?;
        let stats = parse_libfuzzer_output(&output);
        let mut saved = Vec::new();
        for input in &stats.failure_inputs {
            saved.push(save_regression(layout, target, input)?);
        }
        if !succeeded || !saved.is_empty() {
            eprintln!("{}", failure_excerpt(&output));
            for path in &saved {
                eprintln!("fuzz: {target}: failing input saved as {}", path.display());
            }
            failed_targets.push(target.clone());
        }
        summary.push((target.clone(), succeeded && saved.is_empty(), stats));
    }

    println!("{}", format_summary(&summary));
    if !failed_targets.is_empty() {
        bail!(
            "fuzz: {} failed: {}; inputs are in fuzz/regressions/<target>/ (commit them; \
             `cargo xtest fuzz --replay` runs them)",
            failed_targets.len(),
            failed_targets.join(", ")
        );
    }
    Ok(())
}

fn replay_regressions(layout: &FuzzLayout, targets: &[String]) -> anyhow::Result<()> {
    let mut replayed = 0usize;
    let mut replayed_targets = 0usize;
    let mut failures = Vec::new();
    for target in targets {
        let directory = layout.regressions_dir(target);
        let inputs = list_files(&directory)?;
        if inputs.is_empty() {
            continue;
        }
        eprintln!("fuzz: replaying {} inputs of {target}", inputs.len());
        let mut command = cargo_fuzz(
            layout,
            &[
                "run",
                target,
                path_str(&directory)?,
                "--",
                "-runs=0",
                "-timeout=10",
            ],
        );
        let (succeeded, output) = run_logged(&mut command, &layout.log_path(target))?;
        replayed += inputs.len();
        replayed_targets += 1;
        if !succeeded {
            eprintln!("{}", failure_excerpt(&output));
            failures.push(target.clone());
        }
    }
    if replayed_targets == 0 {
        // No "0 passed, 0 failed" line: CI would read it as a run of no tests.
        println!("fuzz replay: no regression inputs in fuzz/regressions/");
        return Ok(());
    }
    let passed_targets = replayed_targets - failures.len();
    println!("fuzz replay: {replayed} regression inputs of {replayed_targets} targets");
    println!("replay: {passed_targets} passed, {} failed", failures.len());
    if !failures.is_empty() {
        bail!(
            "fuzz replay: regressions still fail in {}",
            failures.join(", ")
        );
    }
    Ok(())
}

fn check_cargo_fuzz() -> anyhow::Result<()> {
    let status = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => Ok(()),
        _ => bail!("fuzz: `cargo +nightly fuzz` is missing: run ci/setup.sh"),
    }
}

/// `cargo +nightly fuzz ARGS` in fuzz/. Plain `cargo` from PATH: the rustup proxy is
/// what understands `+nightly`, and `CARGO` points at the stable toolchain's binary.
fn cargo_fuzz(layout: &FuzzLayout, args: &[&str]) -> Command {
    let mut command = Command::new("cargo");
    command
        .arg("+nightly")
        .arg("fuzz")
        .args(args)
        .current_dir(&layout.fuzz_dir);
    // The outer `cargo run` of xtask sets these for the stable toolchain.
    for variable in [
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
        "CARGO_MANIFEST_DIR",
    ] {
        command.env_remove(variable);
    }
    command
}

fn run_checked(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("fuzz: spawn {what}"))?;
    if !status.success() {
        bail!("fuzz: {what}: {status}");
    }
    Ok(())
}

/// Runs `command` with stdout and stderr written to `log_path`, returns whether it
/// succeeded and what it printed.
fn run_logged(command: &mut Command, log_path: &Path) -> anyhow::Result<(bool, String)> {
    if let Some(parent) = log_path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("fuzz: create {}", parent.display()))?;
    }
    let log = fs::File::create(log_path)
        .with_context(|| format!("fuzz: create {}", log_path.display()))?;
    let log_for_stdout = log.try_clone().context("fuzz: clone log file handle")?;
    let status = command
        .stdin(Stdio::null())
        .stdout(log_for_stdout)
        .stderr(log)
        .status()
        .context("fuzz: spawn cargo fuzz")?;
    let output =
        fs::read(log_path).with_context(|| format!("fuzz: read {}", log_path.display()))?;
    Ok((
        status.success(),
        String::from_utf8_lossy(&output).into_owned(),
    ))
}

/// Reads libFuzzer's closing lines: the last `#N ... cov: X ft: Y corp: C/..
/// exec/s: Z` status line, the `stat::` lines of `-print_final_stats=1`, and the
/// `Test unit written to PATH` line of a failure.
fn parse_libfuzzer_output(output: &str) -> FuzzRunStats {
    let mut stats = FuzzRunStats::default();
    for line in output.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("stat::") {
            let Some((key, value)) = rest.split_once(':') else {
                continue;
            };
            let value = value.trim().parse().ok();
            match key.trim() {
                "number_of_executed_units" => stats.executions = value,
                "average_exec_per_sec" => stats.executions_per_second = value,
                "new_units_added" => stats.new_units = value,
                "peak_rss_mb" => stats.peak_rss_mb = value,
                _ => {}
            }
        } else if line.starts_with('#') && line.contains(" cov: ") {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(executions) = words.first().and_then(|word| word[1..].parse().ok()) {
                stats.executions = stats.executions.max(Some(executions));
            }
            for pair in words.windows(2) {
                let number = || {
                    pair[1]
                        .split('/')
                        .next()
                        .and_then(|count| count.parse().ok())
                };
                match pair[0] {
                    "cov:" => stats.coverage = number(),
                    "ft:" => stats.features = number(),
                    "corp:" => stats.corpus_units = number(),
                    "exec/s:" if stats.executions_per_second.is_none() => {
                        stats.executions_per_second = number()
                    }
                    _ => {}
                }
            }
        } else if let Some(index) = line.find("Test unit written to ") {
            let path = line[index + "Test unit written to ".len()..].trim();
            stats.failure_inputs.push(PathBuf::from(path));
        }
    }
    stats
}

fn format_summary(summary: &[(String, bool, FuzzRunStats)]) -> String {
    let show =
        |value: Option<u64>| value.map_or_else(|| "-".to_string(), |number| number.to_string());
    let mut text = format!(
        "{:<16} {:>6} {:>10} {:>8} {:>6} {:>6} {:>6} {:>6}\n",
        "target", "result", "execs", "exec/s", "cov", "ft", "corpus", "rss_mb"
    );
    for (target, passed, stats) in summary {
        let _ = writeln!(
            text,
            "{:<16} {:>6} {:>10} {:>8} {:>6} {:>6} {:>6} {:>6}",
            target,
            if *passed { "ok" } else { "FAIL" },
            show(stats.executions),
            show(stats.executions_per_second),
            show(stats.coverage),
            show(stats.features),
            show(stats.corpus_units),
            show(stats.peak_rss_mb),
        );
    }
    let failed = summary.iter().filter(|(_, passed, _)| !passed).count();
    let _ = write!(
        text,
        "fuzz: {} passed, {} failed",
        summary.len() - failed,
        failed
    );
    text
}

/// Copies a failing input into fuzz/regressions/<target>/ under its libFuzzer name.
fn save_regression(layout: &FuzzLayout, target: &str, input: &Path) -> anyhow::Result<PathBuf> {
    let input = if input.is_absolute() {
        input.to_path_buf()
    } else {
        layout.fuzz_dir.join(input)
    };
    let directory = layout.regressions_dir(target);
    fs::create_dir_all(&directory)
        .with_context(|| format!("fuzz: create {}", directory.display()))?;
    let name = input
        .file_name()
        .context("fuzz: failing input has no file name")?;
    let destination = directory.join(name);
    fs::copy(&input, &destination).with_context(|| {
        format!(
            "fuzz: copy {} to {}",
            input.display(),
            destination.display()
        )
    })?;
    Ok(destination)
}

/// How a target's seeds are made from the image fixtures.
enum SeedSource {
    /// Image files whose name starts with one of these prefixes (`core-`, `mm-`, ...);
    /// the empty prefix takes every `.img` file.
    ImageFiles(&'static [&'static str]),
    /// Whole dump directories, encoded as the `dump_dir` target reads them.
    DumpDirectories,
    /// crit's JSON decoding of images (`*.json` beside the fixtures).
    Json,
    /// Tar archives: plain ones (`*.tar`) as they are, gzipped ones (`*.tar.gz`,
    /// `*.tar.gz.img`) also decompressed with `gzip -dc` so the fuzzer mutates the tar
    /// structure behind the gzip checksum.
    TarArchives,
}

/// Seeds of each target. A target missing here starts from an empty corpus. The
/// prefixes follow `ImageFamily::of` in fuzz/src/lib.rs.
fn seed_source(target: &str) -> Option<SeedSource> {
    Some(match target {
        "image_any" => SeedSource::ImageFiles(&[""]),
        "image_core" => SeedSource::ImageFiles(&[
            "inventory",
            "pstree",
            "core-",
            "ids-",
            "fs-",
            "creds-",
            "seccomp",
            "sigacts-",
            "itimers-",
            "posix-timers-",
            "rlimit-",
            "signal-",
        ]),
        "image_mm" => SeedSource::ImageFiles(&["mm-", "vmas-", "pagemap-"]),
        "image_files" => SeedSource::ImageFiles(&[
            "files",
            "fdinfo-",
            "pipes",
            "fifo",
            "unixsk",
            "inetsk",
            "packetsk",
            "netlinksk",
            "sk-queues",
            "tcp-stream-",
            "reg-files",
            "ext-files",
            "remap-fpath",
            "ghost-file-",
            "eventfd",
            "eventpoll",
            "signalfd",
            "inotify",
            "fanotify",
            "tty",
            "filelocks",
            "tunfile",
            "timerfd",
            "memfd",
            "bpfmap",
            "ns-files",
        ]),
        "image_misc" => SeedSource::ImageFiles(&[
            "stats-",
            "irmap-cache",
            "timens-",
            "utsns-",
            "mountpoints-",
            "netdev-",
            "netns-",
            "cgroup",
            "userns-",
            "cpuinfo",
        ]),
        "dump_dir" => SeedSource::DumpDirectories,
        "json" => SeedSource::Json,
        "tar" => SeedSource::TarArchives,
        "iproute" => SeedSource::ImageFiles(&["ifaddr-", "route-", "route6-", "rule-"]),
        _ => return None,
    })
}

/// Copies the target's seeds into fuzz/corpus/<target>/ (named `seed-...`, so the
/// inputs libFuzzer found are kept apart); returns how many seeds there are.
fn seed_corpus(layout: &FuzzLayout, target: &str) -> anyhow::Result<usize> {
    let corpus = layout.corpus_dir(target);
    fs::create_dir_all(&corpus).with_context(|| format!("fuzz: create {}", corpus.display()))?;
    let Some(source) = seed_source(target) else {
        return Ok(0);
    };
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for root in layout.fixture_roots() {
        for file in walk_files(&root)? {
            let name = file
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default();
            let is_image =
                name.ends_with(".img") || name == "stats-dump" || name == "stats-restore";
            let wanted = match &source {
                SeedSource::ImageFiles(prefixes) => {
                    is_image
                        && !name.starts_with("pages-")
                        && prefixes.iter().any(|prefix| name.starts_with(prefix))
                }
                SeedSource::Json => name.ends_with(".json") || name.ends_with(".snap"),
                SeedSource::TarArchives => {
                    name.ends_with(".tar")
                        || name.ends_with(".tar.gz")
                        || name.ends_with(".tar.gz.img")
                }
                SeedSource::DumpDirectories => false,
            };
            if wanted {
                let mut bytes =
                    fs::read(&file).with_context(|| format!("fuzz: read {}", file.display()))?;
                if name.ends_with(".snap") {
                    bytes = snapshot_body(&bytes).to_vec();
                }
                if matches!(source, SeedSource::TarArchives) && !name.ends_with(".tar") {
                    seeds.push((format!("{}.plain", seed_name(&root, &file)), gunzip(&file)?));
                }
                seeds.push((seed_name(&root, &file), bytes));
            }
        }
        if let SeedSource::DumpDirectories = source {
            for directory in dump_directories(&root)? {
                let bytes = encode_dump_directory(&directory)?;
                seeds.push((seed_name(&root, &directory), bytes));
            }
        }
    }
    for (name, bytes) in &seeds {
        let path = corpus.join(name);
        fs::write(&path, bytes).with_context(|| format!("fuzz: write {}", path.display()))?;
    }
    Ok(seeds.len())
}

/// `gzip -dc FILE` (gzip is in every Debian base system).
fn gunzip(file: &Path) -> anyhow::Result<Vec<u8>> {
    let output = Command::new("gzip")
        .arg("-dc")
        .arg(file)
        .output()
        .with_context(|| format!("fuzz: run gzip -dc {}", file.display()))?;
    if !output.status.success() {
        bail!(
            "fuzz: gzip -dc {}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output.stdout)
}

/// What an insta snapshot file holds after its `---` metadata header (crit JSON in
/// the images crate's snapshots).
fn snapshot_body(snapshot: &[u8]) -> &[u8] {
    let mut separators = 0;
    let mut offset = 0;
    for line in snapshot.split_inclusive(|&byte| byte == b'\n') {
        offset += line.len();
        if line.trim_ascii_end() == b"---" {
            separators += 1;
            if separators == 2 {
                return &snapshot[offset..];
            }
        }
    }
    snapshot
}

/// `seed-<path below the fixture root, with / as ->`.
fn seed_name(root: &Path, file: &Path) -> String {
    let root_name = root
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("fixtures");
    let relative = file
        .strip_prefix(root)
        .unwrap_or(file)
        .to_string_lossy()
        .replace('/', "--");
    format!("seed-{root_name}--{relative}")
}

/// Largest pages-*.img prefix put into a dump-directory seed: page contents are opaque
/// to the parsers, and big inputs only slow libFuzzer down.
const SEED_PAGES_BYTES: usize = 8192;

/// Encodes a dump directory as the `dump_dir` target's input: for each file, its name
/// length (u8), its name, its length (u32 little-endian) and its bytes. The decoder is
/// `fuzz/fuzz_targets/dump_dir.rs`; keep the two in step.
fn encode_dump_directory(directory: &Path) -> anyhow::Result<Vec<u8>> {
    let mut encoded = Vec::new();
    for file in list_files(directory)? {
        let name = file
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        if name.is_empty() || name.len() > usize::from(u8::MAX) {
            continue;
        }
        let mut bytes =
            fs::read(&file).with_context(|| format!("fuzz: read {}", file.display()))?;
        if name.starts_with("pages-") {
            bytes.truncate(SEED_PAGES_BYTES);
        }
        let length = u32::try_from(bytes.len()).context("fuzz: fixture file over 4 GiB")?;
        encoded.push(u8::try_from(name.len()).expect("checked above"));
        encoded.extend_from_slice(name.as_bytes());
        encoded.extend_from_slice(&length.to_le_bytes());
        encoded.extend_from_slice(&bytes);
    }
    Ok(encoded)
}

/// Directories below `root` that hold an `inventory.img`: one CRIU dump each.
fn dump_directories(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut directories = BTreeSet::new();
    for file in walk_files(root)? {
        if file.file_name().is_some_and(|name| name == "inventory.img") {
            if let Some(parent) = file.parent() {
                directories.insert(parent.to_path_buf());
            }
        }
    }
    Ok(directories.into_iter().collect())
}

/// Regular files directly in `directory`, sorted; none if it does not exist.
fn list_files(directory: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !directory.is_dir() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for entry in
        fs::read_dir(directory).with_context(|| format!("fuzz: read {}", directory.display()))?
    {
        let path = entry
            .with_context(|| format!("fuzz: read {}", directory.display()))?
            .path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Regular files anywhere below `root`, sorted.
fn walk_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(directory) = pending.pop() {
        for entry in fs::read_dir(&directory)
            .with_context(|| format!("fuzz: read {}", directory.display()))?
        {
            let path = entry
                .with_context(|| format!("fuzz: read {}", directory.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The `name = "..."` of each `[[bin]]` table of a Cargo manifest.
fn bin_names_in_manifest(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bin_table = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_bin_table = line == "[[bin]]";
            continue;
        }
        if !in_bin_table {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            if key.trim() == "name" {
                names.push(value.trim().trim_matches('"').to_string());
            }
        }
    }
    names
}

/// A stack frame line outside the code under test (std, libFuzzer, the sanitizer), or
/// the source location line of a Rust backtrace frame.
fn is_uninteresting_frame(line: &str) -> bool {
    let line = line.trim_start();
    let is_frame = line.starts_with("at /")
        || (line.starts_with('#') && line.contains(" 0x"))
        || line
            .split_once(':')
            .is_some_and(|(number, _)| number.parse::<u32>().is_ok());
    is_frame
        && !(line.contains("fuzz_targets") || line.contains("crust") || line.contains("images/src"))
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("fuzz: path {} is not UTF-8", path.display()))
}

/// The part of a failed run's output worth reading: from the panic or sanitizer report
/// on, without the stack frames' source locations, at most 60 lines.
fn failure_excerpt(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|line| {
            line.contains("panicked at") || line.contains("ERROR: ") || line.starts_with("error")
        })
        .unwrap_or_else(|| lines.len().saturating_sub(40));
    lines[start..]
        .iter()
        // cargo-fuzz's own reproduction banner follows libFuzzer's report.
        .take_while(|line| !line.starts_with("────"))
        .filter(|line| !is_uninteresting_frame(line))
        .take(60)
        .map(|line| line.chars().take(300).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libfuzzer_closing_lines() {
        let output = "\
INFO: Seed: 1234
#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb
#65536\tpulse  cov: 210 ft: 480 corp: 40/2Kb lim: 652 exec/s: 21845 rss: 52Mb
#131072\tDONE   cov: 215 ft: 500 corp: 44/3Kb lim: 1300 exec/s: 6553 rss: 60Mb
Done 131072 runs in 20 second(s)
stat::number_of_executed_units: 131072
stat::average_exec_per_sec:     6553
stat::new_units_added:          43
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              60
";
        let stats = parse_libfuzzer_output(output);
        assert_eq!(
            stats,
            FuzzRunStats {
                executions: Some(131072),
                executions_per_second: Some(6553),
                coverage: Some(215),
                features: Some(500),
                corpus_units: Some(44),
                new_units: Some(43),
                peak_rss_mb: Some(60),
                failure_inputs: Vec::new(),
            }
        );
    }

    #[test]
    fn finds_the_crash_input() {
        let output = "\
==123== ERROR: libFuzzer: deadly signal
artifact_prefix='/w/fuzz/artifacts/json/'; Test unit written to /w/fuzz/artifacts/json/crash-da39a3ee
Base64: AAAA
";
        let stats = parse_libfuzzer_output(output);
        assert_eq!(
            stats.failure_inputs,
            vec![PathBuf::from("/w/fuzz/artifacts/json/crash-da39a3ee")]
        );
        assert_eq!(stats.coverage, None);
    }

    #[test]
    fn takes_the_body_of_a_snapshot() {
        let snapshot = b"---\nsource: images/tests/fixtures.rs\nexpression: text\n---\n{\"magic\": \"CORE\"}\n";
        assert_eq!(snapshot_body(snapshot), b"{\"magic\": \"CORE\"}\n");
        assert_eq!(snapshot_body(b"{}"), b"{}");
    }

    #[test]
    fn reads_bin_names() {
        let manifest = r#"
[package]
name = "crust-fuzz"

[[bin]]
name = "image_core"
path = "fuzz_targets/image_core.rs"

[dependencies]
name = "not a bin"

[[bin]]
name = "json"
"#;
        assert_eq!(bin_names_in_manifest(manifest), vec!["image_core", "json"]);
    }

    #[test]
    fn encodes_dump_directory_files_in_name_order() {
        let directory =
            std::env::temp_dir().join(format!("crust-xtask-fuzz-{}", std::process::id()));
        fs::create_dir_all(&directory).expect("create temp dir");
        fs::write(directory.join("b.img"), b"BB").expect("write b");
        fs::write(directory.join("a.img"), b"A").expect("write a");
        let encoded = encode_dump_directory(&directory).expect("encode");
        fs::remove_dir_all(&directory).expect("remove temp dir");
        assert_eq!(
            encoded,
            b"\x05a.img\x01\0\0\0A\x05b.img\x02\0\0\0BB".to_vec()
        );
    }
}
