//! Fuzzes opening a whole dump directory: the input is a set of named files
//! (`crust_fuzz::decode_dump_archive`) written into a scratch directory.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    crust_fuzz::fuzz_dump_dir(bytes);
});
