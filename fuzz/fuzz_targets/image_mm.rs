//! Fuzzes memory images (mm, vmas, pagemap, checked as restore walks it).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = crust_fuzz::fuzz_image(crust_fuzz::ImageFamily::Memory, bytes);
});
