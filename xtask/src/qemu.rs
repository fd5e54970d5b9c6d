//! `cargo xtest zdtm --arch A` and `cargo xtest nightly`: the zdtm suite inside a
//! qemu-system VM of another (or the same) architecture.
//!
//! Per architecture: a Debian kernel fetched once with apt against a private state
//! directory and cached under `.cache/qemu/ARCH/kernel-HASH/` with the modules the VM
//! loads (HASH names their set); static cross builds of `crust` and
//! the zdtm programs (`target/cross/TRIPLE/release`); an initramfs (cpio `newc`, written
//! by `newc.rs`) holding a static `/init` (`ci/qemu/init.c`), those binaries, the C tests
//! at the path the harness was built to look in, and the cross libc for them; with a
//! container flavor (`--flavor container`, `host,container`), the arch's busybox-static
//! (Debian's .deb, cached as `.cache/qemu/ARCH/busybox`) for the containers' rootfs.
//! The VM mounts cgroup2 only, so the container flavor runs there on a v2-only host;
//! `nft` is not in it (`tcp_established` skips). qemu's exit
//! code says nothing, so the verdict is read from the console: `/init` prints the
//! harness's JSON report between markers and powers off; xtask writes it to
//! `target/cross/zdtm-ARCH.json` and where `--json` says. Every run is bounded by a
//! timeout. Before any of it, the programs and files a run needs are checked
//! (`tools.rs`), each missing one named with the `ci/setup.sh` flag that installs it.
//!
//! qemu-user cannot run the tests (it has no ptrace), and /dev/kvm here cannot boot a
//! stock kernel, so every architecture, x86_64 included, runs under TCG.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One architecture the VM runs can target.
#[derive(Debug, Clone, Copy)]
pub struct ArchSpec {
    /// Name on the command line and in reports.
    pub name: &'static str,
    /// Rust target triple.
    pub triple: &'static str,
    /// Debian architecture.
    pub debian: &'static str,
    /// Debian kernel flavour (`linux-image-FLAVOUR` is the metapackage).
    pub flavour: &'static str,
    /// GNU triple of the cross toolchain (`TRIPLE-gcc`, `/usr/TRIPLE/lib`).
    pub gnu: &'static str,
    /// qemu-system binary.
    pub qemu: &'static str,
    /// Machine options.
    pub machine: &'static [&'static str],
    /// Kernel console device.
    pub console: &'static str,
    /// Prefix of the kernel file under the package's `boot/`.
    pub kernel_prefix: &'static str,
    /// The dynamic loader the cross toolchain's binaries ask for.
    pub interpreter: &'static str,
    /// Debian package of `qemu`.
    pub qemu_package: &'static str,
    /// Debian package of `GNU-gcc`.
    pub cross_gcc_package: &'static str,
    /// Debian package of `GNU-strip` (a dependency of the gcc package).
    pub cross_binutils_package: &'static str,
    /// Debian package of the libc (`libc.a`, `libc.so.6`, the loader) in [`Self::sysroot`].
    pub cross_libc_package: &'static str,
}

impl ArchSpec {
    /// Where the cross toolchain's libc lives: `/usr/GNU/lib`, or the host's own
    /// multiarch directory for the host's architecture.
    pub fn sysroot(&self) -> PathBuf {
        if self.name == std::env::consts::ARCH {
            PathBuf::from(format!("/usr/lib/{}", self.gnu))
        } else {
            PathBuf::from(format!("/usr/{}/lib", self.gnu))
        }
    }
}

/// The architecture CI's VM smoke run uses (`cargo xtest ci`). Measured on 2026-12-06
/// (2 cores, load 7-19 from other builds), VM time of the smoke tests with the builds
/// done: aarch64 15 and 20 s, ppc64le 19 and 16 s, s390x 29 and 30 s; of 33 thread, anon
/// and tree tests: aarch64 175 and 114 s, ppc64le 98 and 159 s. aarch64 and ppc64le tie,
/// s390x is slowest. `ci/setup.sh --ci` installs this arch's qemu; the others come with
/// `--full`.
pub const SMOKE_ARCH: &str = "aarch64";

/// Every architecture, in the order `--arch all` runs them.
pub const ARCHES: &[ArchSpec] = &[
    ArchSpec {
        name: "aarch64",
        triple: "aarch64-unknown-linux-gnu",
        debian: "arm64",
        flavour: "arm64",
        gnu: "aarch64-linux-gnu",
        qemu: "qemu-system-aarch64",
        // pauth-impdef: QEMU's own pointer-auth hash, 3x faster than the architected one.
        machine: &["-M", "virt", "-cpu", "max,pauth-impdef=on"],
        console: "ttyAMA0",
        kernel_prefix: "vmlinuz-",
        interpreter: "/lib/ld-linux-aarch64.so.1",
        qemu_package: "qemu-system-arm",
        cross_gcc_package: "gcc-aarch64-linux-gnu",
        cross_binutils_package: "binutils-aarch64-linux-gnu",
        cross_libc_package: "libc6-dev-arm64-cross",
    },
    ArchSpec {
        name: "ppc64le",
        triple: "powerpc64le-unknown-linux-gnu",
        debian: "ppc64el",
        flavour: "powerpc64le",
        gnu: "powerpc64le-linux-gnu",
        qemu: "qemu-system-ppc64",
        // x-vof: QEMU's built-in firmware instead of SLOF (6 s less per boot).
        machine: &["-M", "pseries,x-vof=on"],
        console: "hvc0",
        kernel_prefix: "vmlinux-",
        interpreter: "/lib64/ld64.so.2",
        qemu_package: "qemu-system-ppc",
        cross_gcc_package: "gcc-powerpc64le-linux-gnu",
        cross_binutils_package: "binutils-powerpc64le-linux-gnu",
        cross_libc_package: "libc6-dev-ppc64el-cross",
    },
    ArchSpec {
        name: "s390x",
        triple: "s390x-unknown-linux-gnu",
        debian: "s390x",
        flavour: "s390x",
        gnu: "s390x-linux-gnu",
        qemu: "qemu-system-s390x",
        machine: &["-M", "s390-ccw-virtio"],
        console: "ttysclp0",
        kernel_prefix: "vmlinuz-",
        interpreter: "/lib/ld64.so.1",
        qemu_package: "qemu-system-misc",
        cross_gcc_package: "gcc-s390x-linux-gnu",
        cross_binutils_package: "binutils-s390x-linux-gnu",
        cross_libc_package: "libc6-dev-s390x-cross",
    },
    ArchSpec {
        name: "x86_64",
        triple: "x86_64-unknown-linux-gnu",
        debian: "amd64",
        flavour: "amd64",
        gnu: "x86_64-linux-gnu",
        qemu: "qemu-system-x86_64",
        machine: &["-M", "q35", "-cpu", "max"],
        console: "ttyS0",
        kernel_prefix: "vmlinuz-",
        interpreter: "/lib64/ld-linux-x86-64.so.2",
        qemu_package: "qemu-system-x86",
        cross_gcc_package: "gcc",
        cross_binutils_package: "binutils-x86-64-linux-gnu",
        cross_libc_package: "libc6-dev",
    },
];

/// Markers `/init` prints around the harness's JSON report.
const JSON_BEGIN: &str = "CRUST-ZDTM-JSON-BEGIN";
const JSON_END: &str = "CRUST-ZDTM-JSON-END";
const EXIT_MARKER: &str = "CRUST-ZDTM-EXIT ";

/// Options of a VM run besides the harness's own.
#[derive(Debug, Clone)]
pub struct VmOptions {
    /// Arguments handed to `zdtm-runner run` inside the VM (`--filter`, `--iters`, ...).
    pub harness_args: Vec<String>,
    /// Wall-clock limit of one VM run.
    pub timeout: Duration,
    /// Fetch the kernel again even if one is cached.
    pub refresh_kernel: bool,
    /// A directory of images inside the VM whose files `/init` prints to the console,
    /// and the host directory they are written to (`qemu export`).
    pub export: Option<(String, PathBuf)>,
    /// `--keep`: every test's logs come back from the VM to `target/cross/qemu-ARCH/zdtm/`.
    pub keep_logs: bool,
}

/// The harness options a VM run passes on, and whether each takes a value. `--engine`
/// and `--workdir` are the VM's own; `--json` is written on the host.
const HARNESS_OPTIONS: &[(&str, bool)] = &[
    ("--filter", true),
    ("--iters", true),
    ("--group", true),
    ("--flavor", true),
    ("--snap", false),
    ("--pre-dump", false),
    ("--keep", false),
    ("--big", false),
    ("--kill-trials", true),
    ("--kill-seed", true),
];

/// What one architecture's run gave.
#[derive(Debug)]
pub struct ArchResult {
    pub arch: &'static str,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub wall: Duration,
    /// Why the run produced no report, if it did not.
    pub error: Option<String>,
}

/// `cargo xtest zdtm ...`: `Some` when `--arch` is among the arguments (the run goes to
/// VMs), `None` to let the native run go on.
pub fn zdtm_with_arch(args: &[String]) -> Option<anyhow::Result<()>> {
    let index = args.iter().position(|a| a == "--arch")?;
    let Some(value) = args.get(index + 1) else { return Some(Err(anyhow::anyhow!("--arch needs a value"))) };
    let mut rest: Vec<String> = args.to_vec();
    rest.drain(index..index + 2);
    Some(run_arches(value, rest))
}

/// `cargo xtest nightly`: the whole suite on all four architectures, kernels refreshed,
/// after `ci/setup.sh --full --no-fuzz` made sure qemu and the cross toolchains are
/// there (so it runs from a fresh clone).
pub fn run_nightly(args: &[String]) -> anyhow::Result<()> {
    let setup = workspace_root().join("ci/setup.sh");
    let status = Command::new("bash")
        .arg(&setup)
        .args(["--full", "--no-fuzz"])
        .status()
        .with_context(|| format!("run {}", setup.display()))?;
    if !status.success() {
        bail!("{}: {status}", setup.display());
    }
    let mut rest = args.to_vec();
    if !rest.iter().any(|a| a == "--refresh-kernel") {
        rest.push("--refresh-kernel".into());
    }
    run_arches("all", rest)
}

/// `cargo xtest qemu fetch ARCH|all`: only fetch and cache the kernels.
/// `cargo xtest qemu export ARCH TEST OUT_DIR`: run one test in the VM with its images
/// kept and copy its first dump's `*.img` files to `OUT_DIR` (how the s390x fixture
/// under `images/tests/fixtures/s390x-dump/` was made).
pub fn run_qemu_verb(args: &[String]) -> anyhow::Result<()> {
    match args {
        [verb, arch] if verb == "fetch" => {
            let workspace = workspace_root();
            for spec in select(arch)? {
                let (kernel, version) = ensure_kernel(&workspace, spec, true)?;
                println!("{}: {} ({version})", spec.name, kernel.display());
            }
            Ok(())
        }
        [verb, arch, test, out] if verb == "export" => {
            let spec = select(arch)?.into_iter().next().context("one arch")?;
            let out = PathBuf::from(out);
            let options = VmOptions {
                harness_args: vec!["--filter".into(), test.clone(), "--keep".into()],
                timeout: Duration::from_secs(1800),
                refresh_kernel: false,
                export: Some((format!("/tmp/zdtm/{test}/img-0"), out.clone())),
                keep_logs: false,
            };
            let (result, _) = run_one(&workspace_root(), spec, &options)?;
            println!("{}: {} passed, {} failed; images in {}", spec.name, result.passed, result.failed, out.display());
            Ok(())
        }
        _ => bail!("usage: cargo xtest qemu fetch ARCH|all | qemu export ARCH TEST OUT_DIR"),
    }
}

fn select(arch: &str) -> anyhow::Result<Vec<&'static ArchSpec>> {
    if arch == "all" {
        return Ok(ARCHES.iter().collect());
    }
    let names: Vec<&str> = ARCHES.iter().map(|a| a.name).collect();
    arch.split(',')
        .map(|name| {
            ARCHES.iter().find(|a| a.name == name).with_context(|| format!("unknown arch {name} (have {names:?} or all)"))
        })
        .collect()
}

/// The options of a VM run besides `--arch`: the harness's own (checked here, before
/// anything is built), `--json PATH`, `--timeout SECONDS` and `--refresh-kernel`.
pub fn parse_vm_args(args: Vec<String>) -> anyhow::Result<(VmOptions, Option<String>)> {
    let mut options = VmOptions {
        harness_args: Vec::new(),
        timeout: Duration::from_secs(1800),
        refresh_kernel: false,
        export: None,
        keep_logs: false,
    };
    let mut json = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--timeout" => {
                options.timeout = Duration::from_secs(
                    args.next().context("--timeout needs seconds")?.parse().context("--timeout takes seconds")?,
                )
            }
            "--refresh-kernel" => options.refresh_kernel = true,
            "--json" => json = Some(args.next().context("--json needs a path")?),
            "--engine" => bail!("--engine: a VM run checkpoints with the crust it cross-builds for the VM"),
            "--workdir" => bail!("--workdir: a VM run works in target/cross/qemu-ARCH (and /tmp/zdtm inside the VM)"),
            _ => {
                let Some(&(_, takes_value)) = HARNESS_OPTIONS.iter().find(|(name, _)| *name == arg) else {
                    bail!("unknown option {arg} (a VM run takes --json, --timeout, --refresh-kernel and {})", HARNESS_OPTIONS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", "));
                };
                options.keep_logs |= arg == "--keep";
                options.harness_args.push(arg.clone());
                if takes_value {
                    options.harness_args.push(args.next().with_context(|| format!("{arg} needs a value"))?);
                }
            }
        }
    }
    Ok((options, json))
}

/// Where `--json TEMPLATE` puts `arch`'s report: `{arch}` in the template becomes the
/// architecture's name (required when several run).
pub fn json_path_for(template: &str, arch: &str, several: bool) -> anyhow::Result<PathBuf> {
    if several && !template.contains("{arch}") {
        bail!("--json {template}: several architectures run, put {{arch}} in the path (e.g. zdtm-{{arch}}.json)");
    }
    Ok(PathBuf::from(template.replace("{arch}", arch)))
}

fn run_arches(arch: &str, args: Vec<String>) -> anyhow::Result<()> {
    let specs = select(arch)?;
    let (options, json) = parse_vm_args(args)?;
    let several = specs.len() > 1;
    if let Some(template) = &json {
        json_path_for(template, "", several)?;
    }
    for spec in &specs {
        crate::tools::require(&format!("zdtm --arch {}", spec.name), &crate::tools::vm_run(spec))?;
    }
    let workspace = workspace_root();
    let mut results = Vec::new();
    for spec in specs {
        let started = Instant::now();
        let json_path = json.as_deref().map(|template| json_path_for(template, spec.name, several)).transpose()?;
        let result = run_one(&workspace, spec, &options).and_then(|(result, report)| {
            if let Some(path) = &json_path {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?).with_context(|| format!("write {}", path.display()))?;
                println!("== {}: report in {}", spec.name, path.display());
            }
            Ok(result)
        });
        let result = result.unwrap_or_else(|error| ArchResult {
            arch: spec.name,
            passed: 0,
            failed: 0,
            skipped: 0,
            wall: started.elapsed(),
            error: Some(format!("{error:#}")),
        });
        results.push(result);
    }
    println!("\n{:<10} {:>7} {:>7} {:>8} {:>9}  note", "arch", "passed", "failed", "skipped", "wall");
    let mut bad = false;
    for r in &results {
        println!(
            "{:<10} {:>7} {:>7} {:>8} {:>8.0}s  {}",
            r.arch,
            r.passed,
            r.failed,
            r.skipped,
            r.wall.as_secs_f64(),
            r.error.as_deref().unwrap_or("")
        );
        bad |= r.failed > 0 || r.error.is_some();
    }
    if bad {
        std::process::exit(1);
    }
    Ok(())
}

/// Build, pack, boot and read the report of one architecture; returns the counts and
/// the harness's JSON report.
fn run_one(workspace: &Path, spec: &ArchSpec, options: &VmOptions) -> anyhow::Result<(ArchResult, serde_json::Value)> {
    crate::tools::require(&format!("zdtm --arch {}", spec.name), &crate::tools::vm_run(spec))?;
    let started = Instant::now();
    let (kernel, version) = ensure_kernel(workspace, spec, options.refresh_kernel)?;
    let kernel_done = Instant::now();
    let release = cross_build(workspace, spec)?;
    let work = cross_target_dir(workspace).join(format!("qemu-{}", spec.name));
    let initrd = pack_initramfs(workspace, spec, &release, &work, options)?;
    let build_done = Instant::now();
    println!("== {}: booting {version} in {} ({}s limit)", spec.name, spec.qemu, options.timeout.as_secs());
    let console = work.join("console.log");
    let lines = boot(spec, &kernel, &initrd, &console, options.timeout)?;
    println!(
        "== {}: kernel {:.0}s, cross build and initramfs {:.0}s, VM {:.0}s",
        spec.name,
        (kernel_done - started).as_secs_f64(),
        (build_done - kernel_done).as_secs_f64(),
        build_done.elapsed().as_secs_f64()
    );
    let exported_to = match &options.export {
        Some((_, out)) => Some(out.clone()),
        None if options.keep_logs => Some(work.join("zdtm")),
        None => None,
    };
    if let Some(out) = exported_to {
        let files = parse_exported_files(&lines);
        if files.is_empty() && options.export.is_some() {
            bail!("{}: no exported images on the console (see {})", spec.name, console.display());
        }
        if options.keep_logs {
            let _ = std::fs::remove_dir_all(&out);
        }
        for (name, bytes) in files {
            let path = out.join(&name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
            }
            std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
        }
        if options.keep_logs {
            println!("== {}: the tests' logs are in {}", spec.name, out.display());
        }
    }
    let report = parse_report(&lines)
        .with_context(|| format!("{}: no report on the console (see {})", spec.name, console.display()))?;
    let json_path = cross_target_dir(workspace).join(format!("zdtm-{}.json", spec.name));
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?).with_context(|| format!("write {}", json_path.display()))?;
    let count = |key: &str| report.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
    let result = ArchResult {
        arch: spec.name,
        passed: count("passed"),
        failed: count("failed"),
        skipped: count("skipped"),
        wall: started.elapsed(),
        error: None,
    };
    Ok((result, report))
}

/// The JSON report between the markers.
pub fn parse_report(lines: &[String]) -> Option<serde_json::Value> {
    let begin = lines.iter().position(|l| l.trim_end() == JSON_BEGIN)?;
    let end = lines[begin..].iter().position(|l| l.trim_end() == JSON_END)? + begin;
    let text: String = lines[begin + 1..end].join("\n");
    serde_json::from_str(text.trim()).ok()
}

/// The files `/init` printed in hex: `CRUST-FILE NAME SIZE`, hex lines, `CRUST-FILE-END`.
/// NAME is relative (`TEST/img-0/dump.log`); one that is absolute or climbs (`..`) is
/// left out, and so is a file whose bytes do not add up to its size.
pub fn parse_exported_files(lines: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut current: Option<(String, usize, Vec<u8>)> = None;
    for line in lines {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("CRUST-FILE ") {
            let mut words = rest.split(' ');
            if let (Some(name), Some(Ok(size))) = (words.next(), words.next().map(str::parse)) {
                // Only relative names that stay inside the output directory.
                let inside = !name.is_empty()
                    && name.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
                if inside {
                    current = Some((name.to_string(), size, Vec::with_capacity(size)));
                }
            }
        } else if line == "CRUST-FILE-END" {
            if let Some((name, size, bytes)) = current.take() {
                if bytes.len() == size {
                    files.push((name, bytes));
                }
            }
        } else if let Some((_, _, bytes)) = current.as_mut() {
            let digits = line.as_bytes();
            let value = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
            for pair in digits.chunks(2) {
                if let [high, low] = pair {
                    if let (Some(high), Some(low)) = (value(*high), value(*low)) {
                        bytes.push(high << 4 | low);
                    }
                }
            }
        }
    }
    files
}

/// `apt-get`/`apt-cache` options for `spec`'s architecture with a private state
/// directory under `.cache/qemu/apt-DEBIANARCH` (created here).
fn apt_options(workspace: &Path, spec: &ArchSpec) -> anyhow::Result<Vec<String>> {
    let state = workspace.join(".cache/qemu").join(format!("apt-{}", spec.debian));
    for dir in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(state.join(dir)).with_context(|| format!("create {}", state.join(dir).display()))?;
    }
    Ok([
        format!("APT::Architecture={}", spec.debian),
        format!("APT::Architectures::={}", spec.debian),
        format!("Dir::State::Lists={}", state.join("lists").display()),
        format!("Dir::Cache={}", state.join("cache").display()),
        "Dir::State::status=/dev/null".to_string(),
        "Debug::NoLocking=1".to_string(),
    ]
    .into_iter()
    .flat_map(|option| ["-o".to_string(), option])
    .collect())
}

/// `apt-get update` of `spec`'s private lists.
fn apt_update(workspace: &Path, spec: &ArchSpec) -> anyhow::Result<()> {
    println!("== {}: apt-get update ({})", spec.name, spec.debian);
    let mut update = Command::new("apt-get");
    update.args(apt_options(workspace, spec)?);
    // A mirror caught mid-sync fails one index now and then; what was fetched is enough
    // as long as the packages resolve afterwards.
    if let Err(error) = run_quiet(update.args(["-q", "update"]), "apt-get update") {
        println!("== {}: {error:#}; going on with the lists that arrived", spec.name);
    }
    Ok(())
}

/// Downloads `package` for `spec`'s architecture into `dir` and unpacks it into
/// `dir/x`; returns the .deb.
fn download_and_unpack(workspace: &Path, spec: &ArchSpec, package: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut download = Command::new("apt-get");
    download.args(apt_options(workspace, spec)?);
    run_quiet(download.current_dir(dir).args(["-q", "download", &format!("{package}:{}", spec.debian)]), "apt-get download")?;
    let deb = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    run_quiet(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(dir.join("x")), "dpkg-deb -x")?;
    Ok(deb)
}

/// The cached static busybox of `spec` (Debian's busybox-static for its architecture),
/// fetched if missing: the container flavor's rootfs in the VM.
fn ensure_busybox(workspace: &Path, spec: &ArchSpec) -> anyhow::Result<PathBuf> {
    let cache = workspace.join(".cache/qemu").join(spec.name);
    let busybox = cache.join("busybox");
    if busybox.is_file() {
        return Ok(busybox);
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("create {}", cache.display()))?;
    let lists = workspace.join(".cache/qemu").join(format!("apt-{}/lists", spec.debian));
    let have_lists = std::fs::read_dir(&lists).is_ok_and(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().is_file())));
    if !have_lists {
        apt_update(workspace, spec)?;
    }
    let debs = cache.join("deb-busybox");
    download_and_unpack(workspace, spec, "busybox-static", &debs)?;
    let unpacked = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|path| debs.join("x").join(path))
        .find(|path| path.is_file())
        .context("busybox-static has no bin/busybox")?;
    let partial = cache.join("busybox.partial");
    std::fs::copy(&unpacked, &partial).with_context(|| format!("copy {}", unpacked.display()))?;
    std::fs::rename(&partial, &busybox).with_context(|| format!("rename {}", partial.display()))?;
    let _ = std::fs::remove_dir_all(&debs);
    Ok(busybox)
}

/// The cached kernel of `spec` and its package version, fetched if missing (or if the
/// cached modules are not [`VM_MODULES`]).
fn ensure_kernel(workspace: &Path, spec: &ArchSpec, refresh: bool) -> anyhow::Result<(PathBuf, String)> {
    let cache = kernel_cache(workspace, spec);
    let kernel = cache.join("kernel");
    let version_file = cache.join("kernel.version");
    let modules = cache.join("modules");
    let module_set = std::fs::read_to_string(modules.join(MODULE_SET_FILE)).unwrap_or_default();
    if !refresh && kernel.exists() && modules.is_dir() && module_set == VM_MODULES.join("\n") {
        if let Ok(version) = std::fs::read_to_string(&version_file) {
            return Ok((kernel, version.trim().to_string()));
        }
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("create {}", cache.display()))?;
    apt_update(workspace, spec)?;
    // The metapackage names the current ABI; point releases remove older ones.
    let mut depends = Command::new("apt-cache");
    depends.args(apt_options(workspace, spec)?);
    let output = depends.args(["depends", &format!("linux-image-{}", spec.flavour)]).output().context("run apt-cache")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let package = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(|p| p.trim().to_string())
        .find(|p| p.starts_with("linux-image-") && !p.ends_with("-unsigned"))
        .with_context(|| format!("linux-image-{} has no linux-image dependency: {text}", spec.flavour))?;
    let debs = cache.join("deb");
    let deb = download_and_unpack(workspace, spec, &package, &debs)?;
    let extracted = debs.join("x");
    let boot = extracted.join("boot");
    let image = std::fs::read_dir(&boot)
        .with_context(|| format!("list {}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(spec.kernel_prefix)))
        .with_context(|| format!("no {}* in {}", spec.kernel_prefix, boot.display()))?;
    std::fs::copy(&image, &kernel).with_context(|| format!("copy {}", image.display()))?;
    copy_vm_modules(&extracted, &modules)?;
    let version = deb.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(package);
    std::fs::write(&version_file, &version)?;
    let _ = std::fs::remove_dir_all(&debs);
    Ok((kernel, version))
}

/// The modules the VM loads, in load order (Debian builds them as modules; the VM has no
/// modprobe, so `/init` loads them from `/modules`): the sock_diag ones crust's dump of
/// sockets needs, the bridge (with its dependencies) and veth the container flavor's
/// network needs, and nf_tables (after nfnetlink and libcrc32c, whose crc32c the kernel
/// would ask modprobe for): a restored network namespace is unlocked through it. The
/// cgroup controllers and the v1 freezer are built into Debian's kernels (6.1).
const VM_MODULES: &[&str] = &[
    "net/ipv4/inet_diag",
    "net/ipv4/tcp_diag",
    "net/ipv4/udp_diag",
    "net/unix/unix_diag",
    "net/llc/llc",
    "net/802/stp",
    "net/bridge/bridge",
    "drivers/net/veth",
    "crypto/crc32c_generic",
    "lib/libcrc32c",
    "net/netfilter/nfnetlink",
    "net/netfilter/nf_tables",
];

/// Where `spec`'s kernel, its version and its [`VM_MODULES`] are cached:
/// `.cache/qemu/ARCH/kernel-HASH`, HASH (FNV-1a) naming the module set. `.cache` may be
/// shared by several worktrees: one whose set differs keeps a directory of its own
/// instead of fetching the kernel again over the others' modules.
fn kernel_cache(workspace: &Path, spec: &ArchSpec) -> PathBuf {
    let set = VM_MODULES.join("\n");
    let hash = set.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3));
    workspace.join(".cache/qemu").join(spec.name).join(format!("kernel-{:08x}", hash as u32))
}

/// The name of the `index`th module of [`VM_MODULES`] in the VM's `/modules`: names
/// sort in load order.
fn module_file_name(index: usize, name: &str) -> String {
    format!("{index:02}-{name}.ko")
}

/// The file in the cached modules directory listing the [`VM_MODULES`] it was made for.
const MODULE_SET_FILE: &str = "module-set";

/// Copies [`VM_MODULES`] from the unpacked kernel package to `dest` as `NN-NAME.ko`
/// (uncompressed), NN (two digits: `/init` loads in name order) giving the load order,
/// and writes [`MODULE_SET_FILE`]. A module built into the kernel is simply not there.
fn copy_vm_modules(extracted: &Path, dest: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dest);
    std::fs::create_dir_all(dest).with_context(|| format!("create {}", dest.display()))?;
    let Some(release_dir) = std::fs::read_dir(extracted.join("lib/modules"))
        .ok()
        .and_then(|mut entries| entries.find_map(|e| e.ok().map(|e| e.path())))
    else {
        return Ok(());
    };
    for (index, module) in VM_MODULES.iter().enumerate() {
        let base = release_dir.join("kernel").join(module);
        let name = Path::new(module).file_name().expect("module has a name").to_string_lossy().into_owned();
        let placed = dest.join(module_file_name(index, &name));
        let plain = base.with_extension("ko");
        let xz = base.with_extension("ko.xz");
        if plain.exists() {
            std::fs::copy(&plain, &placed).with_context(|| format!("copy {}", plain.display()))?;
        } else if xz.exists() {
            let output = Command::new("xz").arg("-dc").arg(&xz).output().context("run xz")?;
            if !output.status.success() {
                bail!("xz -d {}: {}", xz.display(), String::from_utf8_lossy(&output.stderr));
            }
            std::fs::write(&placed, output.stdout)?;
        }
    }
    std::fs::write(dest.join(MODULE_SET_FILE), VM_MODULES.join("\n")).with_context(|| format!("write {}", dest.join(MODULE_SET_FILE).display()))?;
    Ok(())
}

fn run_quiet(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("run {what}"))?;
    if !output.status.success() {
        bail!("{what} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// `target/cross`: the cross builds keep their own target directory, so they neither
/// wait on nor invalidate the native one.
fn cross_target_dir(workspace: &Path) -> PathBuf {
    workspace.join("target/cross")
}

/// Static release builds of crust and the zdtm programs for `spec`; returns the
/// release directory.
fn cross_build(workspace: &Path, spec: &ArchSpec) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let upper = spec.triple.to_uppercase().replace('-', "_");
    let gcc = format!("{}-gcc", spec.gnu);
    println!("== {}: cargo build --release --target {}", spec.name, spec.triple);
    let status = Command::new(cargo)
        .current_dir(workspace)
        .env(format!("CARGO_TARGET_{upper}_LINKER"), &gcc)
        .env(format!("CARGO_TARGET_{upper}_RUSTFLAGS"), "-C target-feature=+crt-static")
        .env(format!("CC_{}", spec.triple.replace('-', "_")), &gcc)
        // The binaries are stripped into the initramfs: debug info would only cost
        // build time.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_TARGET_DIR", build_target_dir(workspace, spec))
        .args(["build", "--release", "-p", "crust", "-p", "crust-zdtm", "--target", spec.triple])
        .status()
        .context("run cargo build")?;
    if !status.success() {
        bail!("cargo build --release --target {} failed: {status}", spec.triple);
    }
    Ok(build_target_dir(workspace, spec).join(spec.triple).join("release"))
}

/// Where `spec`'s build goes: `target/cross`, except for the host's own architecture,
/// whose `CARGO_TARGET_<TRIPLE>_RUSTFLAGS` (crt-static) also reach the build scripts and
/// would make every other arch's build rebuild them (`target/cross-host`).
fn build_target_dir(workspace: &Path, spec: &ArchSpec) -> PathBuf {
    if spec.name == std::env::consts::ARCH {
        workspace.join("target/cross-host")
    } else {
        cross_target_dir(workspace)
    }
}

/// Lays out the VM's root and packs it as a `newc` cpio; returns the archive.
fn pack_initramfs(workspace: &Path, spec: &ArchSpec, release: &Path, work: &Path, options: &VmOptions) -> anyhow::Result<PathBuf> {
    let root = work.join("root");
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("remove {}", root.display()))?;
    }
    let crust_dir = root.join("crust");
    std::fs::create_dir_all(&crust_dir)?;
    // /init: static, from ci/qemu/init.c.
    let init_source = workspace.join("ci/qemu/init.c");
    let status = Command::new(format!("{}-gcc", spec.gnu))
        .args(["-static", "-O2", "-Wall", "-o"])
        .arg(root.join("init"))
        .arg(&init_source)
        .status()
        .with_context(|| format!("run {}-gcc", spec.gnu))?;
    if !status.success() {
        bail!("compile {}: {status}", init_source.display());
    }
    for name in ["crust", "zdtm-runner", "zdtm-rs"] {
        let built = release.join(name);
        let placed = crust_dir.join(name);
        std::fs::copy(&built, &placed).with_context(|| format!("copy {}", built.display()))?;
        // Debug info only makes the initramfs (held in the VM's memory) bigger.
        let _ = Command::new(format!("{}-strip", spec.gnu)).arg(&placed).status();
    }
    let mut args = vec!["run".to_string(), "--engine".into(), "/crust/crust".into()];
    args.extend(["--workdir".into(), "/tmp/zdtm".into(), "--json".into(), "/tmp/zdtm-report.json".into()]);
    args.extend(options.harness_args.iter().cloned());
    std::fs::write(crust_dir.join("args"), args.join("\n") + "\n")?;
    if let Some((dir, _)) = &options.export {
        std::fs::write(crust_dir.join("export"), format!("{dir}\n"))?;
    }
    if options.keep_logs {
        // /init prints every test's logs (not the images: too slow over the console).
        std::fs::write(crust_dir.join("keep"), "/tmp/zdtm\n")?;
    }
    // The C tests where the harness was built to find them (an absolute build path).
    let runner = std::fs::read(release.join("zdtm-runner")).context("read zdtm-runner")?;
    let candidates: Vec<PathBuf> = std::fs::read_dir(release.join("build"))
        .context("list the build scripts' output")?
        .filter_map(|e| e.ok().map(|e| e.path().join("out/c-tests")))
        .filter(|p| p.is_dir())
        .collect();
    let c_dir = embedded_c_tests_dir(&runner, &candidates).context("zdtm-runner names no c-tests directory")?;
    let c_dest = root.join(c_dir.strip_prefix("/").unwrap_or(&c_dir));
    std::fs::create_dir_all(&c_dest)?;
    for entry in std::fs::read_dir(&c_dir).with_context(|| format!("list {}", c_dir.display()))? {
        let entry = entry?;
        std::fs::copy(entry.path(), c_dest.join(entry.file_name()))?;
    }
    // The cross libc for the dynamically linked C tests.
    let sysroot = spec.sysroot();
    let interpreter_name = Path::new(spec.interpreter).file_name().expect("interpreter has a name");
    let lib_dir = root.join("lib").join(spec.gnu);
    std::fs::create_dir_all(&lib_dir)?;
    let interp_dest = root.join(spec.interpreter.trim_start_matches('/'));
    std::fs::create_dir_all(interp_dest.parent().expect("interpreter has a directory"))?;
    std::fs::copy(sysroot.join(interpreter_name), &interp_dest)
        .with_context(|| format!("copy {}", sysroot.join(interpreter_name).display()))?;
    for lib in ["libc.so.6", "libm.so.6"] {
        std::fs::copy(sysroot.join(lib), lib_dir.join(lib)).with_context(|| format!("copy {}", sysroot.join(lib).display()))?;
    }
    let modules = kernel_cache(workspace, spec).join("modules");
    let modules_dest = root.join("modules");
    std::fs::create_dir_all(&modules_dest)?;
    for entry in std::fs::read_dir(&modules).with_context(|| format!("list {}", modules.display()))? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|ext| ext == "ko") {
            std::fs::copy(entry.path(), modules_dest.join(entry.file_name()))?;
        }
    }
    // The container flavors' rootfs, when one is asked for: the arch's static busybox at
    // the path the harness looks for it.
    if crate::zdtm::wants_container_flavor(&options.harness_args) {
        let busybox = ensure_busybox(workspace, spec)?;
        std::fs::create_dir_all(root.join("bin"))?;
        std::fs::copy(&busybox, root.join("bin/busybox")).with_context(|| format!("copy {}", busybox.display()))?;
        std::fs::set_permissions(root.join("bin/busybox"), std::fs::Permissions::from_mode(0o755))?;
    }
    for dir in ["proc", "sys", "dev", "tmp", "run"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    let initrd = work.join("initrd.cpio");
    crate::newc::pack_dir(&root, &initrd)?;
    Ok(initrd)
}

/// The `ZDTM_C_DIR` path compiled into the harness binary: the candidate (a build
/// script's `out/c-tests`) whose path the binary contains.
pub fn embedded_c_tests_dir(binary: &[u8], candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates
        .iter()
        .find(|c| {
            let needle = c.to_string_lossy();
            binary.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .cloned()
}

/// Boots the VM, echoes and records its console, and returns the console's lines.
/// The run is killed after `timeout`.
fn boot(spec: &ArchSpec, kernel: &Path, initrd: &Path, console_log: &Path, timeout: Duration) -> anyhow::Result<Vec<String>> {
    let mut command = Command::new(spec.qemu);
    command
        .args(spec.machine)
        .args(["-m", "1G", "-smp", "1", "-nographic", "-no-reboot", "-kernel"])
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!("console={} panic=-1 rdinit=/init quiet", spec.console))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().with_context(|| format!("run {} (ci/setup.sh --full installs it)", spec.qemu))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let log_path = console_log.to_path_buf();
    let reader = std::thread::spawn(move || -> Vec<String> {
        let mut log = std::fs::File::create(&log_path).ok();
        let mut lines = Vec::new();
        // Exported files' hex lines go to the log and the result, not the terminal.
        let mut in_file = false;
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
            if let Some(log) = log.as_mut() {
                let _ = writeln!(log, "{text}");
            }
            if text.starts_with("CRUST-FILE ") {
                in_file = true;
            }
            if !in_file {
                println!("  | {text}");
            }
            if text == "CRUST-FILE-END" {
                in_file = false;
            }
            lines.push(text);
        }
        lines
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    loop {
        if child.try_wait().context("wait for qemu")?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = reader.join().map_err(|_| anyhow::anyhow!("console reader panicked"))?;
    if timed_out && parse_report(&lines).is_none() {
        bail!("{} timed out after {}s", spec.qemu, timeout.as_secs());
    }
    if let Some(code) = lines.iter().find_map(|l| l.strip_prefix(EXIT_MARKER)) {
        println!("== {}: harness exit status {}", spec.name, code.trim());
    }
    Ok(lines)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_is_read_between_the_markers() {
        let lines: Vec<String> =
            ["boot noise", JSON_BEGIN, "{\"passed\": 3,", "\"failed\": 0}", "", JSON_END, "CRUST-ZDTM-EXIT 0"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        assert_eq!(parse_report(&lines).unwrap()["passed"], 3);
        assert!(parse_report(&lines[..3]).is_none());
    }

    #[test]
    fn c_tests_dir_is_found_in_the_binary() {
        let binary = b"garbage/usr/x/work/x/build/crust-zdtm-2/out/c-testsmore";
        let candidates = [PathBuf::from("/work/x/build/crust-zdtm-1/out/c-tests"), PathBuf::from("/work/x/build/crust-zdtm-2/out/c-tests")];
        assert_eq!(embedded_c_tests_dir(binary, &candidates).unwrap(), candidates[1]);
        assert!(embedded_c_tests_dir(b"none", &candidates).is_none());
    }

    #[test]
    fn exported_files_are_read_back() {
        let lines: Vec<String> = [
            "noise",
            "CRUST-FILE core-1.img 3",
            "0a0b",
            "ff",
            "CRUST-FILE-END",
            "CRUST-FILE short.img 4",
            "00",
            "CRUST-FILE-END",
            "CRUST-FILE ../evil.img 1",
            "00",
            "CRUST-FILE-END",
            "CRUST-FILE /etc/evil 1",
            "00",
            "CRUST-FILE-END",
            "CRUST-FILE sigmask/img-0/dump.log 2",
            "6f6b",
            "CRUST-FILE-END",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            parse_exported_files(&lines),
            vec![
                ("core-1.img".to_string(), vec![0x0a, 0x0b, 0xff]),
                ("sigmask/img-0/dump.log".to_string(), b"ok".to_vec()),
            ]
        );
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn vm_runs_take_the_native_runs_options() {
        let (options, json) = parse_vm_args(strings(&[
            "--filter", "sig", "--iters", "2", "--group", "all", "--flavor", "ns", "--snap", "--pre-dump", "--keep",
            "--json", "out.json", "--timeout", "60",
        ]))
        .unwrap();
        assert_eq!(
            options.harness_args,
            strings(&["--filter", "sig", "--iters", "2", "--group", "all", "--flavor", "ns", "--snap", "--pre-dump", "--keep"])
        );
        assert_eq!(json.as_deref(), Some("out.json"));
        assert!(options.keep_logs);
        assert_eq!(options.timeout, Duration::from_secs(60));
        for bad in [&["--engine", "x"][..], &["--workdir", "x"], &["--frobnicate"], &["--filter"], &["--json"]] {
            assert!(parse_vm_args(strings(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn json_paths_name_the_arch_when_several_run() {
        assert_eq!(json_path_for("r.json", "s390x", false).unwrap(), PathBuf::from("r.json"));
        assert_eq!(json_path_for("r-{arch}.json", "s390x", true).unwrap(), PathBuf::from("r-s390x.json"));
        assert!(json_path_for("r.json", "s390x", true).is_err());
    }

    #[test]
    fn module_files_sort_in_load_order() {
        let names: Vec<String> = VM_MODULES
            .iter()
            .enumerate()
            .map(|(index, module)| module_file_name(index, module.rsplit('/').next().unwrap()))
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names);
        assert!(VM_MODULES.len() <= 100);
        let position = |name: &str| VM_MODULES.iter().position(|m| m.ends_with(name)).unwrap();
        assert!(position("/libcrc32c") < position("/nf_tables") && position("/nfnetlink") < position("/nf_tables"));
    }

    #[test]
    fn arches_are_selected_by_name() {
        assert_eq!(select("all").unwrap().len(), 4);
        assert_eq!(select("s390x,aarch64").unwrap()[1].debian, "arm64");
        assert!(select("mips").is_err());
    }
}
