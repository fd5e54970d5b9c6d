//! `cargo xtest restore-fuzz`: mutated dumps of the zdtm suite through `crust restore`,
//! each in a throwaway pid (and IPC, network, UTS, mount) namespace, so that nothing a
//! restore creates can outlive it.
//!
//! ```text
//! cargo xtest restore-fuzz [--time S] [--seed N] [--tests a,b,...] [--fresh-seeds] [--keep]
//! ```
//!
//! * Seeds: the dumps `zdtm-runner --keep` leaves for a few zdtm tests (host and ns
//!   flavors), kept in `target/restore-fuzz/seeds/` between runs (`--fresh-seeds`
//!   makes them again).
//! * Each case copies one seed and applies one mutation: bit flips in one image,
//!   a truncation, a field changed through crit's JSON (`crust show`, edit, `crust
//!   encode`: numbers to edge values, strings long or empty, lists emptied, an element
//!   duplicated, a list repeated 40 times), an image deleted, an image replaced by
//!   another of its kind.
//! * `crust` is the debug build: integer overflow panics there.
//! * Each restore runs as `unshare --pid --fork --kill-child --mount-proc --ipc --net
//!   --uts --mount crust restore -d` with a timeout.
//! * Findings: a panic or a crash, a hang (the timeout), a process left in the case's
//!   pid namespace, a refusal that is not one line or names its image twice, and a
//!   restore that succeeded from a mutation that must be refused (a flipped page, an
//!   image crust's list names deleted, a task state, comm, signal action count, fd or
//!   pid out of the kernel's range). Other accepted mutations are counted by image and
//!   field for review: many are legitimate (a register's value, a flag).
//! * Each finding is kept in `target/restore-fuzz/findings/N-KIND/` (the mutated dump,
//!   the mutation, crust's output); the verb fails if there is one.

use anyhow::{bail, Context};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// zdtm tests whose dumps seed the fuzzer: small, and between them most kinds of image.
const SEED_TESTS: &[&str] = &[
    "pipe_data",
    "unix_sockets",
    "threads_pending",
    "tree_sessions",
    "zombie_exit",
    "unlinked_file",
    "memfd_data",
    "posix_timers",
    "fifo_data",
    "event_fds",
    "sigactions",
    "stopped_sigstop",
    "seccomp_filter",
    "file_locks",
    "tree_group_gone",
];
/// The few of them a short run (CI) dumps.
const SHORT_SEED_TESTS: &[&str] = &["pipe_data", "unix_sockets", "threads_pending", "tree_sessions", "zombie_exit"];
/// What unshare (util-linux) prints when its child died of SIGKILL: it cannot reset
/// SIGKILL's action to pass the signal on to itself.
const KILLED_CHILD: &str = "unshare: sigprocmask unblock failed";
/// How long one restore may take before it counts as a hang.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(30);

/// Entry point of the restore-fuzz verb.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let options = Options::parse(args)?;
    crate::tools::require("restore-fuzz", &crate::tools::restore_fuzz())?;
    let workspace = crate::zdtm::workspace_root();
    let base = crate::zdtm::target_dir(&workspace).join("restore-fuzz");
    let crust = build_debug_crust(&workspace)?;
    let seeds = make_seeds(&base.join("seeds"), &options)?;
    if seeds.is_empty() {
        bail!("restore-fuzz: no seed dumps under {}", base.join("seeds").display());
    }
    println!("restore-fuzz: {} seed dumps, {} s, seed {}", seeds.len(), options.seconds, options.seed);
    let findings_dir = base.join("findings");
    let _ = fs::remove_dir_all(&findings_dir);
    let mut fuzzer = Fuzzer { crust, work: base.join("work"), findings_dir, rng: Rng(options.seed | 1), stats: Stats::default(), keep: options.keep };
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let started = Instant::now();
    while Instant::now() < deadline {
        let seed = &seeds[fuzzer.rng.below(seeds.len())];
        fuzzer.one_case(seed)?;
    }
    let summary = fuzzer.stats.summary(started.elapsed());
    println!("{summary}");
    fs::create_dir_all(&base)?;
    fs::write(base.join("summary.txt"), &summary)?;
    if fuzzer.stats.findings > 0 {
        bail!("restore-fuzz: {} findings, kept in {}", fuzzer.stats.findings, fuzzer.findings_dir.display());
    }
    Ok(())
}

#[derive(Debug)]
struct Options {
    seconds: u64,
    seed: u64,
    tests: Vec<String>,
    fresh_seeds: bool,
    keep: bool,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options { seconds: 60, seed: 0, tests: Vec::new(), fresh_seeds: false, keep: false };
        let mut seed_given = false;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().with_context(|| format!("restore-fuzz: {name} needs a value")).cloned();
            match arg.as_str() {
                "--time" => options.seconds = value("--time")?.parse().context("restore-fuzz: --time takes seconds")?,
                "--seed" => {
                    options.seed = value("--seed")?.parse().context("restore-fuzz: --seed takes a number")?;
                    seed_given = true;
                }
                "--tests" => options.tests = value("--tests")?.split(',').map(str::to_owned).collect(),
                "--fresh-seeds" => options.fresh_seeds = true,
                "--keep" => options.keep = true,
                other => bail!("restore-fuzz: unknown option {other} (--time S, --seed N, --tests a,b, --fresh-seeds, --keep)"),
            }
        }
        if !seed_given {
            options.seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        }
        if options.tests.is_empty() {
            let list = if options.seconds <= 180 { SHORT_SEED_TESTS } else { SEED_TESTS };
            options.tests = list.iter().map(|t| t.to_string()).collect();
        }
        Ok(options)
    }
}

/// `cargo build -p crust` (debug: overflow checks on).
fn build_debug_crust(workspace: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo).current_dir(workspace).args(["build", "-p", "crust"]).status().context("run cargo build")?;
    if !status.success() {
        bail!("cargo build -p crust failed: {status}");
    }
    Ok(crate::zdtm::target_dir(workspace).join("debug/crust"))
}

/// The seed dumps: kept from an earlier run, or made by the zdtm harness (`--keep`).
fn make_seeds(dir: &Path, options: &Options) -> anyhow::Result<Vec<PathBuf>> {
    if options.fresh_seeds {
        let _ = fs::remove_dir_all(dir);
    }
    let mut seeds = dump_dirs(dir);
    let have: Vec<String> = seeds.iter().map(|s| s.display().to_string()).collect();
    let missing: Vec<&String> =
        options.tests.iter().filter(|test| !have.iter().any(|s| s.contains(&format!("/{test}/")) || s.contains(&format!("/{test}-")))).collect();
    if !missing.is_empty() {
        crate::zdtm::build_harness()?;
    }
    for test in missing {
        for flavor in ["host", "ns"] {
            // A test that fails or is skipped here gives no seed; the others do.
            let args: Vec<String> = ["--filter", test, "--flavor", flavor, "--keep"].map(String::from).to_vec();
            if let Err(error) = crate::zdtm::run_harness(&args, &dir.join(flavor)) {
                println!("restore-fuzz: seed {test} ({flavor}): {error}");
            }
        }
    }
    seeds = dump_dirs(dir);
    seeds.sort();
    Ok(seeds)
}

/// Directories under `root` holding a crust dump (pstree.img and crust-checksums.img).
fn dump_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(root) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            if path.join("pstree.img").exists() && path.join("crust-checksums.img").exists() && !path.join("parent").exists() {
                out.push(path.clone());
            }
            out.extend(dump_dirs(&path));
        }
    }
    out
}

/// xorshift64*: reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation, as applied and as described in a finding.
#[derive(Debug, Clone)]
struct Mutation {
    kind: &'static str,
    image: String,
    detail: String,
    /// The restore must refuse it.
    must_refuse: Option<String>,
    /// For the review list of accepted mutations: image kind and field.
    class: String,
}

/// What one restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Refused(String),
    Accepted,
    Panic(String),
    Crash(String),
    Hang,
}

#[derive(Default)]
struct Stats {
    cases: u64,
    by_kind: BTreeMap<&'static str, u64>,
    refused: u64,
    accepted: u64,
    not_applied: u64,
    findings: u64,
    accepted_classes: BTreeMap<String, u64>,
    finding_lines: Vec<String>,
}

impl Stats {
    fn summary(&self, elapsed: Duration) -> String {
        let mut out = format!(
            "restore-fuzz: {} cases in {:.0} s ({:.1}/s): {} refused, {} accepted, {} mutations not applicable, {} findings\n",
            self.cases,
            elapsed.as_secs_f64(),
            self.cases as f64 / elapsed.as_secs_f64().max(1e-3),
            self.refused,
            self.accepted,
            self.not_applied,
            self.findings
        );
        out += &format!("  by mutation: {}\n", self.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "));
        if !self.accepted_classes.is_empty() {
            out += "  accepted mutations, for review (image: field):\n";
            for (class, n) in &self.accepted_classes {
                out += &format!("    {n:5}  {class}\n");
            }
        }
        for line in &self.finding_lines {
            out += &format!("  FINDING {line}\n");
        }
        out
    }
}

struct Fuzzer {
    crust: PathBuf,
    work: PathBuf,
    findings_dir: PathBuf,
    rng: Rng,
    stats: Stats,
    keep: bool,
}

impl Fuzzer {
    fn one_case(&mut self, seed: &Path) -> anyhow::Result<()> {
        let case = self.work.join("case");
        let _ = fs::remove_dir_all(&case);
        copy_dir(seed, &case)?;
        let Some(mutation) = self.mutate(&case)? else {
            self.stats.not_applied += 1;
            return Ok(());
        };
        self.stats.cases += 1;
        *self.stats.by_kind.entry(mutation.kind).or_default() += 1;
        let (mut outcome, mut output, mut leftover) = self.restore(&case)?;
        if output.contains(KILLED_CHILD) {
            // unshare's child, crust, died of SIGKILL before it said anything: from inside
            // crust that is a crash, from outside (another run's kill of a pid it had, on
            // a machine that hands pids on quickly) it says nothing of the images. The
            // case runs again; only a second SIGKILL is a finding.
            println!("restore-fuzz: {} {}: crust killed by SIGKILL, running the case again", mutation.kind, mutation.image);
            (outcome, output, leftover) = self.restore(&case)?;
            if output.contains(KILLED_CHILD) {
                outcome = Outcome::Crash("killed by SIGKILL twice (unshare: `sigprocmask unblock failed`)".into());
            }
        }
        let mut problems = Vec::new();
        match &outcome {
            Outcome::Refused(line) => {
                self.stats.refused += 1;
                let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
                if lines.len() != 1 || !lines[0].starts_with("crust: ") {
                    problems.push(format!("refusal is not one `crust: ` line: {output:?}"));
                }
                if let Some(twice) = names_image_twice(line) {
                    problems.push(format!("refusal names {twice} twice: {line}"));
                }
            }
            Outcome::Accepted => {
                self.stats.accepted += 1;
                match &mutation.must_refuse {
                    Some(why) => problems.push(format!("accepted, but {why}")),
                    None => *self.stats.accepted_classes.entry(mutation.class.clone()).or_default() += 1,
                }
            }
            Outcome::Panic(line) => problems.push(format!("panic: {line}")),
            Outcome::Crash(what) => problems.push(format!("crash: {what}")),
            Outcome::Hang => problems.push(format!("no answer in {} s", RESTORE_TIMEOUT.as_secs())),
        }
        if let Some(pids) = leftover {
            problems.push(format!("left running in the case's pid namespace: {pids}"));
        }
        if !problems.is_empty() {
            self.record_finding(seed, &case, &mutation, &problems, &output)?;
        }
        if !self.keep {
            let _ = fs::remove_dir_all(&case);
        }
        Ok(())
    }

    fn record_finding(&mut self, seed: &Path, case: &Path, mutation: &Mutation, problems: &[String], output: &str) -> anyhow::Result<()> {
        self.stats.findings += 1;
        let name = format!("{}-{}", self.stats.findings, mutation.kind);
        let dir = self.findings_dir.join(&name);
        copy_dir(case, &dir)?;
        let text = format!(
            "seed: {}\nmutation: {} of {}: {}\nproblems:\n  {}\ncrust's output:\n{output}\n",
            seed.display(),
            mutation.kind,
            mutation.image,
            mutation.detail,
            problems.join("\n  ")
        );
        fs::write(dir.join("FINDING.txt"), &text)?;
        let line = format!("{name}: {} {}: {} ({})", mutation.kind, mutation.image, problems.join("; "), mutation.detail);
        println!("restore-fuzz: FINDING {line}");
        self.stats.finding_lines.push(line);
        Ok(())
    }

    /// Applies one random mutation to the dump in `dir`; `None` if the chosen one does
    /// not apply (nothing to change there, or crit's JSON cannot hold the value).
    fn mutate(&mut self, dir: &Path) -> anyhow::Result<Option<Mutation>> {
        let mut images: Vec<String> = fs::read_dir(dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".img"))
            .collect();
        images.sort();
        if images.is_empty() {
            return Ok(None);
        }
        let listed = listed_images(&self.crust, dir);
        let image = images[self.rng.below(images.len())].clone();
        let path = dir.join(&image);
        let kind = image_kind(&image);
        let class = |field: &str| format!("{kind}: {field}");
        match self.rng.below(10) {
            0..=1 => {
                let mut bytes = fs::read(&path)?;
                if bytes.is_empty() {
                    return Ok(None);
                }
                let flips = 1 + self.rng.below(3);
                let mut at = Vec::new();
                for _ in 0..flips {
                    let offset = self.rng.below(bytes.len());
                    bytes[offset] ^= 1 << self.rng.below(8);
                    at.push(offset);
                }
                fs::write(&path, &bytes)?;
                let must_refuse = (kind == "pages").then(|| "a flipped page must fail its checksum".to_string());
                Ok(Some(Mutation { kind: "flip", image, detail: format!("bits flipped at offsets {at:?}"), must_refuse, class: class("bytes") }))
            }
            2 => {
                let len = fs::metadata(&path)?.len();
                if len == 0 {
                    return Ok(None);
                }
                let keep = self.rng.next() % len;
                fs::OpenOptions::new().write(true).open(&path)?.set_len(keep)?;
                let must_refuse = (kind == "pages").then(|| "a truncated pages file must be refused".to_string());
                Ok(Some(Mutation { kind: "truncate", image, detail: format!("cut from {len} to {keep} bytes"), must_refuse, class: class("truncated") }))
            }
            3 => {
                fs::remove_file(&path)?;
                let must_refuse = listed.contains(&image).then(|| format!("{image} is in crust's list of images"));
                Ok(Some(Mutation { kind: "delete", image: image.clone(), detail: "deleted".into(), must_refuse, class: class("deleted") }))
            }
            4 => {
                let others: Vec<&String> = images.iter().filter(|o| **o != image && image_kind(o) == kind).collect();
                if others.is_empty() {
                    return Ok(None);
                }
                let other = others[self.rng.below(others.len())].clone();
                fs::copy(dir.join(&other), &path)?;
                let must_refuse = (kind == "pages").then(|| "another pages file must fail the checksums".to_string());
                Ok(Some(Mutation { kind: "replace", image, detail: format!("replaced by a copy of {other}"), must_refuse, class: class("replaced") }))
            }
            _ => self.mutate_field(dir, &image),
        }
    }

    /// A field changed through crit's JSON.
    fn mutate_field(&mut self, dir: &Path, image: &str) -> anyhow::Result<Option<Mutation>> {
        if image_kind(image) == "pages" {
            return Ok(None);
        }
        let path = dir.join(image);
        let shown = Command::new(&self.crust).arg("show").arg(&path).stderr(Stdio::null()).output()?;
        if !shown.status.success() {
            return Ok(None);
        }
        let Ok(mut json) = serde_json::from_slice::<Value>(&shown.stdout) else { return Ok(None) };
        let mut leaves = Vec::new();
        collect_paths(&json["entries"], "entries".into(), &mut leaves);
        if leaves.is_empty() {
            return Ok(None);
        }
        let field = leaves[self.rng.below(leaves.len())].clone();
        let Some(target) = json.pointer_mut(&pointer(&field)) else { return Ok(None) };
        let before = summarize(target);
        let change = self.change(target);
        let after = summarize(target);
        let encoded_path = dir.join(".fuzz.json");
        fs::write(&encoded_path, serde_json::to_vec(&json)?)?;
        let encoded = Command::new(&self.crust).arg("encode").arg("-i").arg(&encoded_path).arg("-o").arg(&path).stderr(Stdio::null()).status()?;
        let _ = fs::remove_file(&encoded_path);
        if !encoded.success() {
            // The value does not fit the field (a negative number in a uint32, ...).
            return Ok(None);
        }
        let name = if field == "entries" { "entries".to_string() } else { generic_field(&field) };
        let mut must_refuse = must_refuse_field(image, &name, &json, &field);
        if name == "threads" && image_kind(image) == "pstree" && self.is_zombie_entry(dir, &json, &field) {
            // A zombie's thread list is not read: CRIU writes whatever it had there.
            must_refuse = None;
        }
        Ok(Some(Mutation {
            kind: "field",
            image: image.to_owned(),
            detail: format!("{field}: {before} -> {after} ({change})"),
            must_refuse,
            class: format!("{}: {name} ({change})", image_kind(image)),
        }))
    }

    /// Whether the pstree entry that `field` (`entries/N/...`) is in is a zombie: its
    /// core image says task state Dead (2).
    fn is_zombie_entry(&self, dir: &Path, pstree: &Value, field: &str) -> bool {
        let Some(index) = field.split('/').nth(1).and_then(|n| n.parse::<usize>().ok()) else { return false };
        let Some(pid) = pstree["entries"][index]["pid"].as_u64() else { return false };
        let Ok(shown) = Command::new(&self.crust).arg("show").arg(dir.join(format!("core-{pid}.img"))).stderr(Stdio::null()).output() else { return false };
        serde_json::from_slice::<Value>(&shown.stdout).is_ok_and(|core| {
            let state = &core["entries"][0]["tc"]["task_state"];
            state.as_str() == Some("Dead") || state.as_u64() == Some(2)
        })
    }

    /// Changes a JSON value in place; what was done.
    fn change(&mut self, value: &mut Value) -> &'static str {
        match value {
            Value::Number(n) => {
                let old = n.as_i64().unwrap_or(0);
                let choices: [(i64, &'static str); 10] = [
                    (0, "zero"),
                    (1, "one"),
                    (-1, "minus one"),
                    (77, "77"),
                    (i32::MAX as i64, "i32 max"),
                    (i32::MAX as i64 + 1, "i32 max + 1"),
                    (u32::MAX as i64, "u32 max"),
                    (i64::MAX, "i64 max"),
                    (old.wrapping_add(1), "plus one"),
                    (old.wrapping_mul(4096).wrapping_add(4096), "times a page"),
                ];
                let (new, what) = choices[self.rng.below(choices.len())];
                *value = Value::from(new);
                what
            }
            Value::String(s) => {
                if s.starts_with("0x") {
                    let choices = ["0x0", "0xffffffffffffffff", "0x7fffffff", "0x1000"];
                    *s = choices[self.rng.below(choices.len())].to_string();
                    "hex edge"
                } else if self.rng.below(2) == 0 {
                    *s = "x".repeat(5000);
                    "5000 bytes"
                } else {
                    s.clear();
                    "emptied"
                }
            }
            Value::Bool(b) => {
                *b = !*b;
                "negated"
            }
            Value::Array(items) => match self.rng.below(4) {
                0 => {
                    items.clear();
                    "emptied"
                }
                1 if !items.is_empty() => {
                    let index = self.rng.below(items.len());
                    let copy = items[index].clone();
                    items.push(copy);
                    "an element duplicated"
                }
                2 if !items.is_empty() => {
                    let copy = items.clone();
                    for _ in 1..40 {
                        items.extend(copy.iter().cloned());
                    }
                    "repeated 40 times"
                }
                _ if !items.is_empty() => {
                    items.remove(self.rng.below(items.len()));
                    "an element removed"
                }
                _ => "left empty",
            },
            _ => "unchanged",
        }
    }

    /// Runs `crust restore -d` on `dir` in throwaway namespaces.
    fn restore(&self, dir: &Path) -> anyhow::Result<(Outcome, String, Option<String>)> {
        let ns_file = self.work.join("pidns");
        let _ = fs::remove_file(&ns_file);
        let mut child = Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--net", "--uts", "--mount", "sh", "-c"])
            .arg("readlink /proc/self/ns/pid > \"$1\"; shift; exec \"$@\"")
            .arg("sh")
            .arg(&ns_file)
            .arg(&self.crust)
            .args(["restore", "-d", "-v4", "-o", "restore.log", "-D"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .context("run unshare (util-linux)")?;
        let mut stderr = child.stderr.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let deadline = Instant::now() + RESTORE_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() > deadline {
                // The whole group: unshare, and with it (--kill-child) the namespace.
                let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let output = reader.join().unwrap_or_default();
        let outcome = match status {
            None => Outcome::Hang,
            Some(status) => {
                use std::os::unix::process::ExitStatusExt;
                if let Some(line) = output.lines().find(|l| l.contains("panicked at")) {
                    Outcome::Panic(line.to_owned())
                } else if let Some(signal) = status.signal() {
                    Outcome::Crash(format!("killed by signal {signal}"))
                } else if status.code() == Some(101) {
                    Outcome::Panic(output.lines().next().unwrap_or_default().to_owned())
                } else if status.code().is_some_and(|c| c > 128) {
                    Outcome::Crash(format!("exit {}", status.code().unwrap_or(0)))
                } else if status.success() {
                    Outcome::Accepted
                } else {
                    Outcome::Refused(output.lines().next().unwrap_or_default().to_owned())
                }
            }
        };
        Ok((outcome, output, left_in_namespace(&ns_file)))
    }
}

/// Processes still in the pid namespace named in `ns_file` (`pid:[INODE]`), if any.
fn left_in_namespace(ns_file: &Path) -> Option<String> {
    let ns = fs::read_to_string(ns_file).ok()?.trim().to_owned();
    if ns.is_empty() {
        return None;
    }
    let mut left = Vec::new();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if fs::read_link(entry.path().join("ns/pid")).map(|l| l.to_string_lossy() == ns).unwrap_or(false) {
            left.push(name);
        }
    }
    if left.is_empty() {
        return None;
    }
    for pid in &left {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
    Some(left.join(" "))
}

/// An image name's kind: `core-42.img` → `core`, `pagemap-shmem-7.img` → `pagemap-shmem`.
fn image_kind(name: &str) -> String {
    let stem = name.trim_end_matches(".img");
    match stem.rsplit_once('-') {
        Some((kind, id)) if !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()) => kind.to_owned(),
        _ => stem.to_owned(),
    }
}

/// The images crust's list names (`crust show crust-checksums.img`).
fn listed_images(crust: &Path, dir: &Path) -> Vec<String> {
    let Ok(shown) = Command::new(crust).arg("show").arg(dir.join("crust-checksums.img")).stderr(Stdio::null()).output() else { return Vec::new() };
    let Ok(json) = serde_json::from_slice::<Value>(&shown.stdout) else { return Vec::new() };
    json["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|entry| entry["images"].as_array().into_iter().flatten())
        .filter_map(|name| name.as_str().map(str::to_owned))
        .collect()
}

/// JSON paths of every value worth changing (`entries/0/tc/comm`), leaves and lists.
fn collect_paths(value: &Value, path: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                collect_paths(inner, format!("{path}/{key}"), out);
            }
        }
        Value::Array(items) => {
            out.push(path.clone());
            for (index, inner) in items.iter().enumerate().take(64) {
                collect_paths(inner, format!("{path}/{index}"), out);
            }
        }
        Value::Null => {}
        _ => out.push(path),
    }
}

fn pointer(path: &str) -> String {
    format!("/{path}")
}

/// A path without its indexes: `entries/0/tc/sigactions/3/flags` → `tc.sigactions.flags`.
fn generic_field(path: &str) -> String {
    path.split('/').skip(1).filter(|part| !part.chars().all(|c| c.is_ascii_digit())).collect::<Vec<_>>().join(".")
}

fn summarize(value: &Value) -> String {
    match value {
        Value::String(s) if s.len() > 40 => format!("{:?}... ({} bytes)", &s[..20], s.len()),
        Value::Array(items) => format!("[{} items]", items.len()),
        other => other.to_string(),
    }
}

/// Whether a changed field must make the restore refuse the dump: the values the
/// kernel would not hold, which crust validates.
fn must_refuse_field(image: &str, field: &str, json: &Value, path: &str) -> Option<String> {
    let kind = image_kind(image);
    let value = json.pointer(&pointer(path))?;
    let number = value.as_i64();
    let out_of = |low: i64, high: i64| number.is_some_and(|n| n < low || n > high);
    match (kind.as_str(), field) {
        ("core", "tc.task_state") if out_of(1, 3) => Some(format!("task_state {value} is no task state")),
        ("core", "tc.comm") if value.as_str().is_some_and(|s| s.len() > 15) => Some("a comm over 15 bytes".into()),
        ("core", "thread_core.comm") if value.as_str().is_some_and(|s| s.len() > 15) => Some("a comm over 15 bytes".into()),
        ("core", "tc.sigactions") if value.as_array().is_some_and(|a| !a.is_empty() && a.len() != 62) => {
            Some(format!("{} signal actions", value.as_array().map_or(0, |a| a.len())))
        }
        ("pstree", "pid" | "threads") if out_of(1, 4 << 20) => Some(format!("{field} {value} out of range")),
        // 0: a group or session led outside the dumped pid namespace.
        ("pstree", "pgid" | "sid") if out_of(0, 4 << 20) => Some(format!("{field} {value} out of range")),
        ("pstree", "threads") if value.as_array().is_some_and(|a| has_duplicate(a)) => Some("a thread id twice".into()),
        ("fdinfo", "fd") if out_of(0, (1 << 20) - 4105) => Some(format!("fd {value} above fs.nr_open")),
        ("fdinfo", "type") if out_of(1, 20) => Some(format!("fd type {value} out of range")),
        ("fdinfo", "entries") => {
            let fds: Vec<Value> = value.as_array()?.iter().map(|e| e["fd"].clone()).collect();
            has_duplicate(&fds).then(|| "an fd number twice".into())
        }
        ("pstree", "entries") => {
            let pids: Vec<Value> = value.as_array()?.iter().map(|e| e["pid"].clone()).collect();
            has_duplicate(&pids).then(|| "a pid twice".into())
        }
        _ => None,
    }
}

fn has_duplicate(values: &[Value]) -> bool {
    let mut seen: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    let before = seen.len();
    seen.sort();
    seen.dedup();
    seen.len() != before
}

/// The name of an image that a refusal repeats back to back (`X.img: X.img:`).
fn names_image_twice(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split(": ").collect();
    words.windows(2).find(|pair| pair[0].ends_with(".img") && pair[0].rsplit('/').next() == pair[1].rsplit('/').next()).map(|pair| pair[0].to_owned())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_symlink() {
            let _ = std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target);
        } else if kind.is_file() {
            fs::copy(entry.path(), &target).with_context(|| format!("copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_kinds_and_fields() {
        assert_eq!(image_kind("core-42.img"), "core");
        assert_eq!(image_kind("pagemap-shmem-7.img"), "pagemap-shmem");
        assert_eq!(image_kind("ghost-file-1a.img"), "ghost-file");
        assert_eq!(image_kind("inventory.img"), "inventory");
        assert_eq!(image_kind("crust-checksums.img"), "crust-checksums");
        assert_eq!(generic_field("entries/0/tc/sigactions/3/flags"), "tc.sigactions.flags");
    }

    #[test]
    fn a_name_said_twice_is_found() {
        assert_eq!(names_image_twice("crust: restore: pagemap-2980.img: pagemap-2980.img: truncated"), Some("pagemap-2980.img".into()));
        assert_eq!(names_image_twice("crust: restore: /d/pagemap-1.img: pagemap-1.img: x"), Some("/d/pagemap-1.img".into()));
        assert_eq!(names_image_twice("crust: restore: core-1.img: tc.comm is long"), None);
    }

    #[test]
    fn the_rng_is_reproducible() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        assert_eq!((0..5).map(|_| a.next()).collect::<Vec<_>>(), (0..5).map(|_| b.next()).collect::<Vec<_>>());
    }
}
