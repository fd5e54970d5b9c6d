//! `cargo xtest VERB`: the project's task runner (zdtm, demo, fuzz, bench, qemu, arch).

mod arch;
mod bench;
mod ci;
mod containers;
mod fuzz;
mod migrate;
mod newc;
mod qemu;
mod restore_fuzz;
mod tools;
mod zdtm;

fn main() {
    // One line per error, whatever RUST_BACKTRACE says: the messages name what to do.
    if let Err(error) = run() {
        eprintln!("xtask: {error:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((verb, rest)) = args.split_first() else {
        print_usage();
        std::process::exit(2);
    };
    match verb.as_str() {
        "ci" => ci::run(rest),
        "arch" => arch::run(rest),
        "zdtm" => zdtm::run_zdtm(rest),
        "containers" => containers::run(rest),
        "demo" => zdtm::run_demo(rest),
        "fuzz" => fuzz::run(rest),
        "restore-fuzz" => restore_fuzz::run(rest),
        "bench" => bench::run(rest),
        "migrate" => migrate::run(rest),
        "qemu" => qemu::run_qemu_verb(rest),
        "nightly" => {
            // The long restore fuzz first (the VMs take the machine after it).
            restore_fuzz::run(&["--time".into(), "600".into()])?;
            // crust signalled at 200 random moments of dumps (none in the default run).
            let kill_random = ["--filter", "kill_random", "--kill-trials", "200"].map(String::from);
            let killed = zdtm::run_zdtm(&kill_random);
            qemu::run_nightly(rest)?;
            killed
        }
        "help" | "--help" | "-h" => {
            print_usage();
            Ok(())
        }
        other => {
            eprintln!("xtask: unknown verb {other}");
            print_usage();
            std::process::exit(2);
        }
    }
}

fn print_usage() {
    eprintln!(
        "usage: cargo xtest <verb> [options]\n\
         verbs:\n  \
         ci [--quick]         the test command: unit tests, zdtm, fuzz replay and a short fuzz run\n  \
         containers [--filter S] [--vs-criu PATH] [--engine PATH]   runc and podman checkpoint/restore a\n                       counting container with crust as criu (and the reference side by side)\n  \
         demo                 build crust, checkpoint a live counter, restore it, show it going on\n  \
         zdtm [options]       run the zdtm suite (--filter, --iters N, --snap, --pre-dump, --keep, --json PATH)\n  \
         zdtm --arch A|all    the same inside a qemu-system VM (aarch64, ppc64le, s390x, x86_64), same\n                       options; --json PATH (with {{arch}} in it for several), --keep brings the logs back\n  \
         arch [--arch A|all]  the arch crate's tests (with the live sigreturn test) for aarch64,\n                       \
         ppc64le and s390x under qemu-user\n  \
         nightly              restore-fuzz for 10 minutes, kill_random with 200 trials, then zdtm on all four architectures in VMs, kernels refreshed\n  \
         qemu fetch A|all     fetch and cache the VM kernels\n  \
         fuzz [--target T] [--time S]   run the cargo-fuzz targets\n  \
         restore-fuzz [--time S] [--seed N]   mutated zdtm dumps through crust restore in throwaway namespaces\n  \
         bench [--quick] [--vs-criu PATH] [--sizes 64M,1G] [--criterion]   freeze/dump/restore figures, docs/bench/\n  \
         migrate [--vs-criu PATH] [--size B] [--rate B/s] [--rounds N]   live migration of a 1 GiB writer into a new\n                       pid namespace: pre-dumps over the page server, dump --lazy-pages, lazy restore; its figures"
    );
}
