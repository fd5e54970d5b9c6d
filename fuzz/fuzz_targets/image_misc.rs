//! Fuzzes the other images (stats, namespaces, mounts, cgroups, net devices, cpuinfo).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = crust_fuzz::fuzz_image(crust_fuzz::ImageFamily::Misc, bytes);
});
