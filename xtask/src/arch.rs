//! `cargo xtest arch [--arch A|all]`: the arch crate's tests (the pure ones and the
//! live sigreturn test, `arch/tests/sigreturn/`) built for aarch64, ppc64le and s390x
//! and run under qemu-user (`qemu-A-static`, from qemu-user-static), with the cross
//! toolchain's libc as the loader's root. qemu-user has no ptrace, which these tests do
//! not need; the zdtm suite needs it and runs in qemu-system VMs (`zdtm --arch`).
//!
//! `CRUST_QEMU_USER=1` tells the live test where qemu-user departs from Linux (see
//! `arch/tests/sigreturn/ppc64le.rs`).

use crate::qemu::{ArchSpec, ARCHES};
use anyhow::{bail, Context};
use std::process::Command;
use std::time::Instant;

/// The architectures this verb runs (x86_64 runs natively in `cargo test`).
const USER_ARCHES: [&str; 3] = ["aarch64", "ppc64le", "s390x"];

/// qemu-user's binary for an architecture (`qemu-aarch64-static`, ...).
pub(crate) fn qemu_user(arch: &ArchSpec) -> String {
    format!("qemu-{}-static", arch.name)
}

/// Entry point of the arch verb.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut wanted: Vec<&str> = USER_ARCHES.to_vec();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--arch" => {
                let value = rest.next().context("--arch needs a value (aarch64, ppc64le, s390x or all)")?;
                wanted = USER_ARCHES.iter().copied().filter(|a| value == "all" || a == value).collect();
                if wanted.is_empty() {
                    bail!("--arch {value}: not one of aarch64, ppc64le, s390x, all");
                }
            }
            "-h" | "--help" => {
                println!(
                    "usage: cargo xtest arch [--arch aarch64|ppc64le|s390x|all]\n\
                     runs `cargo test -p crust-arch` for each architecture under qemu-user\n\
                     (needs qemu-user-static and the cross gcc; ci/setup.sh installs both)"
                );
                return Ok(());
            }
            other => bail!("arch: unknown option {other} (try --help)"),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let started = Instant::now();
    for name in wanted {
        let arch = ARCHES.iter().find(|a| a.name == name).expect("every user arch has a spec");
        let qemu = qemu_user(arch);
        let linker = format!("{}-gcc", arch.gnu);
        crate::tools::require(&format!("arch {name}"), &crate::tools::user_arch_run(arch))?;
        let env_triple = arch.triple.to_uppercase().replace('-', "_");
        let arch_started = Instant::now();
        println!("=== arch {name}: cargo test -p crust-arch --target {} (runner {qemu})", arch.triple);
        let status = Command::new(&cargo)
            .args(["test", "-p", "crust-arch", "--target", arch.triple])
            .env(format!("CARGO_TARGET_{env_triple}_LINKER"), &linker)
            .env(format!("CARGO_TARGET_{env_triple}_RUNNER"), format!("{qemu} -L /usr/{}", arch.gnu))
            .env("CRUST_QEMU_USER", "1")
            .status()
            .with_context(|| format!("arch {name}: run {cargo}"))?;
        if !status.success() {
            bail!("arch {name}: cargo test -p crust-arch --target {} failed ({status})", arch.triple);
        }
        println!("=== arch {name}: ok in {:.0}s", arch_started.elapsed().as_secs_f64());
    }
    println!("=== arch: all passed in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}
