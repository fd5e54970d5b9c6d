//! Compiles our `.proto` files (no system `protoc`: protox parses them) into prost types,
//! and saves the descriptor set so the JSON layer can read field options at run time.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from("proto");
    println!("cargo:rerun-if-changed=proto");
    let mut proto_files: Vec<PathBuf> = std::fs::read_dir(&proto_dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    proto_files.sort();

    let mut compiler = protox::Compiler::new([&proto_dir])?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(&proto_files)?;
    // The encoded set keeps the `(criu)` field options, which prost-types would drop.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("criu_descriptor_set.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let descriptor_set = compiler.file_descriptor_set();

    // file_entry holds one optional message of each file kind inline: 2,224 bytes for
    // one fd. The large kinds are boxed (about 500 bytes left), so the tens of
    // thousands of entries of a big files.img are not moved around as 2 KiB each.
    let mut config = prost_build::Config::new();
    for field in ["isk", "psk", "nlsk", "usk", "bpf", "tfd", "epfd", "ify", "ffy"] {
        config.boxed(format!(".criu.file_entry.{field}"));
    }
    config.compile_fds(descriptor_set)?;
    Ok(())
}
