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

    let descriptor_set = protox::compile(&proto_files, [&proto_dir])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("criu_descriptor_set.bin"),
        prost::Message::encode_to_vec(&descriptor_set),
    )?;

    prost_build::Config::new().compile_fds(descriptor_set)?;
    Ok(())
}
