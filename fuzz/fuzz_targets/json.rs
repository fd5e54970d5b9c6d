//! Fuzzes the crit JSON path: JSON text to an image and back.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    crust_fuzz::fuzz_json(bytes);
});
