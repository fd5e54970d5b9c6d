//! Fuzzes the parser of the other images (stats, timens, namespaces, cgroups).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = crust_fuzz::fuzz_image(crust_fuzz::ImageFamily::Misc, bytes);
});
