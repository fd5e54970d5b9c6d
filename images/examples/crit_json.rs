//! Minimal crit JSON converter over `crust_images::json`, for checking the JSON layer
//! without building the whole CLI: `crit_json decode [--pretty|--nopl] IMG`,
//! `crit_json encode JSON OUT`.

use crust_images::json::{image_to_json, json_to_image, to_crit_string, JsonOptions};
use crust_images::ByteOrder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["decode", mode, path] => {
            let options = JsonOptions {
                pretty: *mode != "--plain",
                no_payload: *mode == "--nopl",
            };
            let bytes = std::fs::read(path)?;
            let name = std::path::Path::new(path)
                .file_name()
                .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
            println!(
                "{}",
                to_crit_string(&image_to_json(&name, &bytes, &options)?, options.pretty)
            );
        }
        ["encode", input, output] => {
            let json: serde_json::Value = serde_json::from_slice(&std::fs::read(input)?)?;
            std::fs::write(output, json_to_image(&json, ByteOrder::native())?)?;
        }
        _ => {
            return Err(
                "usage: crit_json decode --plain|--pretty|--nopl IMG | encode JSON OUT".into(),
            )
        }
    }
    Ok(())
}
