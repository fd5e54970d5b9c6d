//! Builds the benchmark workload `workloads/workload.c` into `$OUT_DIR/workload`; the
//! path is handed to the crate as `CRUST_BENCH_WORKLOAD`.

use std::path::PathBuf;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let source = manifest_dir.join("workloads/workload.c");
    let output = out_dir.join("workload");
    println!("cargo:rerun-if-changed={}", source.display());
    println!("cargo:rustc-env=CRUST_BENCH_WORKLOAD={}", output.display());
    let mut command = cc::Build::new().cargo_metadata(false).get_compiler().to_command();
    command
        .args(["-O2", "-g", "-Wall", "-Wextra", "-std=gnu11", "-pthread", "-o"])
        .arg(&output)
        .arg(&source);
    let status = command.status().unwrap_or_else(|error| panic!("run C compiler for workload.c: {error}"));
    assert!(status.success(), "compile benches/workloads/workload.c: {status}");
}
