//! Fuzzes crit JSON to image and back (plain and pretty), as `crit encode` does.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    crust_fuzz::fuzz_json(bytes);
});
