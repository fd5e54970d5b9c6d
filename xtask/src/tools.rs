//! The external programs and files the verbs use, each with the Debian package and the
//! `ci/setup.sh` flag that installs it. A verb checks its list before it starts any
//! work, so a machine that lacks something says what to run instead of failing midway
//! with "not found". A unit test below holds `ci/setup.sh` to these lists.

use std::path::{Path, PathBuf};

/// `ci/setup.sh` flag of the set `.ci/run` installs (CI, and the native zdtm run).
pub const SETUP_CI: &str = "--ci";
/// `ci/setup.sh` flag of everything else (every VM architecture, language runtimes).
pub const SETUP_FULL: &str = "--full";

/// One thing a verb needs from the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// What is looked for.
    pub probe: Probe,
    /// The Debian package that provides it.
    pub package: &'static str,
    /// The smallest `ci/setup.sh` set that installs `package` ([`SETUP_CI`] or [`SETUP_FULL`]).
    pub setup: &'static str,
}

/// How a [`Need`] is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A program in `PATH`.
    Command(String),
    /// A file at a fixed path (a cross libc's `libc.a`).
    File(PathBuf),
}

impl Need {
    /// A program in `PATH`.
    pub fn command(name: impl Into<String>, package: &'static str, setup: &'static str) -> Need {
        Need { probe: Probe::Command(name.into()), package, setup }
    }

    /// A file at a fixed path.
    pub fn file(path: impl Into<PathBuf>, package: &'static str, setup: &'static str) -> Need {
        Need { probe: Probe::File(path.into()), package, setup }
    }

    /// Whether the machine has it.
    pub fn is_met(&self) -> bool {
        match &self.probe {
            Probe::Command(name) => find_in_path(name).is_some(),
            Probe::File(path) => path.is_file(),
        }
    }

    fn describe(&self) -> String {
        match &self.probe {
            Probe::Command(name) => format!("{name} (package {})", self.package),
            Probe::File(path) => format!("{} (package {})", path.display(), self.package),
        }
    }
}

/// Fails with one line naming every unmet need of `what` and the `ci/setup.sh` flag
/// that installs them all.
pub fn require(what: &str, needs: &[Need]) -> anyhow::Result<()> {
    let missing: Vec<&Need> = needs.iter().filter(|need| !need.is_met()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let flag = if missing.iter().any(|need| need.setup == SETUP_FULL) { SETUP_FULL } else { SETUP_CI };
    let names: Vec<String> = missing.iter().map(|need| need.describe()).collect();
    anyhow::bail!("{what}: missing {}: run ci/setup.sh {flag}", names.join(", "))
}

/// `PATH` lookup of an executable file.
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program)).filter(|path| is_executable(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// The native zdtm run and the demo: the C test programs are compiled with `cc`.
pub fn native_zdtm() -> Vec<Need> {
    vec![Need::command("cc", "gcc", SETUP_CI)]
}

/// The container flavors (`--flavor container|container-uns|all`): busybox for the
/// containers' rootfs. With `--engine` (the reference CRIU validating the flavor), what
/// it runs for a container's network namespace: `ip` (addresses, routes and rules are
/// dumped with `ip ... save`) and `iptables-restore` (its network lock).
pub fn container_zdtm(external_engine: bool) -> Vec<Need> {
    let mut needs = vec![Need::command("busybox", "busybox-static", SETUP_CI)];
    if external_engine {
        needs.push(Need::command("ip", "iproute2", SETUP_CI));
        needs.push(Need::command("iptables-restore", "iptables", SETUP_CI));
    }
    needs
}

/// `cargo xtest containers`: runc and podman (over runc), busybox for the rootfs, GNU
/// tar for the tarball `podman import` takes, ip for the TCP flow's network namespace,
/// nft for the leftover check.
pub fn containers() -> Vec<Need> {
    vec![
        Need::command("runc", "runc", SETUP_CI),
        Need::command("podman", "podman", SETUP_CI),
        Need::command("conmon", "conmon", SETUP_CI),
        Need::command("busybox", "busybox-static", SETUP_CI),
        Need::command("tar", "tar", SETUP_CI),
        Need::command("ip", "iproute2", SETUP_CI),
        Need::command("nft", "nftables", SETUP_CI),
    ]
}

/// `cargo xtest restore-fuzz`: the seed dumps come from the native zdtm run (cc), each
/// case runs under `unshare` and a stuck one is ended with `kill`.
pub fn restore_fuzz() -> Vec<Need> {
    vec![Need::command("cc", "gcc", SETUP_CI), Need::command("unshare", "util-linux", SETUP_CI), Need::command("kill", "procps", SETUP_CI)]
}

/// `cargo xtest migrate`: the writer is compiled with `cc` and starts under `unshare
/// --pid --fork`.
pub fn migrate() -> Vec<Need> {
    vec![Need::command("cc", "gcc", SETUP_CI), Need::command("unshare", "util-linux", SETUP_CI)]
}

/// A VM run of `spec`: the host's cc, the kernel fetch (apt against a private state directory, dpkg-deb,
/// xz for compressed modules), the static cross build (the cross gcc, its strip and its
/// libc) and qemu-system.
pub fn vm_run(spec: &crate::qemu::ArchSpec) -> Vec<Need> {
    let setup_qemu = if spec.name == crate::qemu::SMOKE_ARCH { SETUP_CI } else { SETUP_FULL };
    vec![
        // Build scripts and proc macros are host programs, linked with cc.
        Need::command("cc", "gcc", SETUP_CI),
        Need::command("apt-get", "apt", SETUP_CI),
        Need::command("apt-cache", "apt", SETUP_CI),
        Need::command("dpkg-deb", "dpkg", SETUP_CI),
        Need::command("xz", "xz-utils", SETUP_CI),
        Need::command(format!("{}-gcc", spec.gnu), spec.cross_gcc_package, SETUP_CI),
        Need::command(format!("{}-strip", spec.gnu), spec.cross_binutils_package, SETUP_CI),
        Need::file(spec.sysroot().join("libc.a"), spec.cross_libc_package, SETUP_CI),
        Need::command(spec.qemu, spec.qemu_package, setup_qemu),
    ]
}

/// `cargo xtest arch` for `spec`: the arch crate's tests, cross-linked and run under
/// qemu-user with the cross libc as the loader's root.
pub fn user_arch_run(spec: &crate::qemu::ArchSpec) -> Vec<Need> {
    vec![
        Need::command("cc", "gcc", SETUP_CI),
        Need::command(format!("{}-gcc", spec.gnu), spec.cross_gcc_package, SETUP_CI),
        Need::command(crate::arch::qemu_user(spec), "qemu-user-static", SETUP_CI),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The language runtimes of `--group runtime`: the harness skips a test whose
    /// runtime is missing and names `ci/setup.sh --full` (zdtm/src/harness.rs).
    const RUNTIME_PACKAGES: &[&str] = &["python3", "default-jre-headless", "nodejs", "golang-go"];

    /// The packages of one bash array `NAME=( ... )` in ci/setup.sh.
    fn setup_array(text: &str, name: &str) -> Vec<String> {
        let start = text.find(&format!("{name}=(")).unwrap_or_else(|| panic!("ci/setup.sh has no {name}"));
        // The array ends at the first `)` outside a comment (comments may hold one).
        let body = &text[start + name.len() + 2..];
        let mut words = Vec::new();
        for line in body.lines() {
            let code = line.split('#').next().unwrap_or("");
            let (inside, closed) = match code.find(')') {
                Some(end) => (&code[..end], true),
                None => (code, false),
            };
            words.extend(inside.split_whitespace().map(str::to_string));
            if closed {
                return words;
            }
        }
        panic!("ci/setup.sh: {name} does not close")
    }

    fn setup_lists() -> (Vec<String>, Vec<String>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/setup.sh");
        let text = std::fs::read_to_string(&path).expect("read ci/setup.sh");
        (setup_array(&text, "ci_apt_packages"), setup_array(&text, "full_apt_packages"))
    }

    #[test]
    fn setup_installs_every_need_with_the_named_flag() {
        let (ci, full) = setup_lists();
        let mut needs = native_zdtm();
        needs.extend(container_zdtm(true));
        needs.extend(containers());
        needs.extend(migrate());
        for spec in crate::qemu::ARCHES {
            needs.extend(vm_run(spec));
            needs.extend(user_arch_run(spec));
        }
        for need in needs {
            let listed = match need.setup {
                SETUP_CI => ci.contains(&need.package.to_string()),
                _ => ci.contains(&need.package.to_string()) || full.contains(&need.package.to_string()),
            };
            assert!(listed, "ci/setup.sh {} does not install {} for {:?}", need.setup, need.package, need.probe);
        }
        for package in RUNTIME_PACKAGES {
            assert!(full.contains(&package.to_string()), "ci/setup.sh --full does not install {package}");
        }
    }

    #[test]
    fn missing_needs_are_named_with_the_flag() {
        let needs = [
            Need::command("sh", "dash", SETUP_CI),
            Need::command("crust-no-such-program", "nosuch", SETUP_CI),
            Need::file("/crust/no/such/libc.a", "libc6-dev-nosuch-cross", SETUP_FULL),
        ];
        let error = require("zdtm --arch x", &needs).unwrap_err().to_string();
        assert_eq!(
            error,
            "zdtm --arch x: missing crust-no-such-program (package nosuch), /crust/no/such/libc.a \
             (package libc6-dev-nosuch-cross): run ci/setup.sh --full"
        );
        assert!(require("x", &needs[..1]).is_ok());
    }
}
