//! Fuzzes the parser of any image kind, chosen by its magic.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = crust_fuzz::fuzz_image(crust_fuzz::ImageFamily::Any, bytes);
});
