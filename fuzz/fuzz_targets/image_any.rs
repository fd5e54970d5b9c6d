//! Fuzzes every image kind: framing, typed entries, crit JSON both ways.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = crust_fuzz::fuzz_image(crust_fuzz::ImageFamily::Any, bytes);
});
