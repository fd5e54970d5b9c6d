//! Builds the C zdtm tests: each `c/NAME.c` (but the library `zdtmtst.c`) is linked with
//! `zdtmtst.c` into the executable `$OUT_DIR/c-tests/NAME`; `static_bin.c` is linked
//! `-static`. `rs-static/NAME.rs` is compiled by plain rustc with a static C runtime
//! (`+crt-static`) into the same directory, handed to the crate as `ZDTM_C_DIR`.

use std::path::{Path, PathBuf};

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let c_dir = manifest_dir.join("c");
    let x86_64 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "x86_64");
    let bin_dir = out_dir.join("c-tests");
    std::fs::create_dir_all(&bin_dir).expect("create OUT_DIR/c-tests");
    println!("cargo:rerun-if-changed=c");
    println!("cargo:rustc-env=ZDTM_C_DIR={}", bin_dir.display());

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&c_dir)
        .expect("read zdtm/c")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "c"))
        .filter(|path| path.file_stem().is_some_and(|stem| stem != "zdtmtst"))
        // The fpu_* tests are x86 assembly and intrinsics; other targets skip them.
        .filter(|path| {
            x86_64
                || !path
                    .file_stem()
                    .is_some_and(|stem| stem.to_string_lossy().starts_with("fpu_"))
        })
        .collect();
    sources.sort();
    for source in sources {
        println!("cargo:rerun-if-changed={}", source.display());
        compile_test(&source, &c_dir, &bin_dir);
    }
    println!("cargo:rerun-if-changed=rs-static");
    compile_static_rust(&manifest_dir.join("rs-static/static_rust.rs"), &bin_dir);
}

/// `rustc -C target-feature=+crt-static`: std only, no crate dependencies. When cross
/// compiling, the target's C compiler links; where that fails the test is left out (the
/// harness then reports it skipped) with a cargo warning.
fn compile_static_rust(source: &Path, bin_dir: &Path) {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let name = source.file_stem().expect("source has a stem");
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let host = std::env::var("HOST").expect("cargo sets HOST");
    let mut command = std::process::Command::new(rustc);
    command
        .args([
            "--edition",
            "2021",
            "-O",
            "-g",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(bin_dir.join(name))
        .arg(source);
    if target != host {
        let linker = cc::Build::new()
            .cargo_metadata(false)
            .get_compiler()
            .path()
            .to_path_buf();
        command
            .args(["--target", &target])
            .arg("-C")
            .arg(format!("linker={}", linker.display()));
    }
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("run rustc for {}: {error}", source.display()));
    if target != host && !status.success() {
        println!(
            "cargo:warning=zdtm: {} not built for {target}: {status}",
            source.display()
        );
        return;
    }
    assert!(status.success(), "compile {}: {status}", source.display());
}

fn compile_test(source: &Path, c_dir: &Path, bin_dir: &Path) {
    let name = source
        .file_stem()
        .expect("source has a stem")
        .to_string_lossy()
        .into_owned();
    let output = bin_dir.join(&name);
    // -O1: enough to keep the loops tight, little enough that the compiler keeps the
    // memory accesses the tests rely on. No vector flags: AVX-512 code is enabled per
    // function with __attribute__((target)).
    let mut command = cc::Build::new()
        .cargo_metadata(false)
        .get_compiler()
        .to_command();
    command
        .args([
            "-O1",
            "-g",
            "-Wall",
            "-Wextra",
            "-Wno-unused-parameter",
            "-std=gnu11",
            "-o",
        ])
        .arg(&output)
        .arg("-I")
        .arg(c_dir)
        .arg(source)
        .arg(c_dir.join("zdtmtst.c"));
    if name == "static_bin" {
        command.arg("-static");
    }
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("run C compiler for {name}: {error}"));
    assert!(status.success(), "compile zdtm/c/{name}.c: {status}");
}
