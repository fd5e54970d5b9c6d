//! Fuzzes task-state images (inventory, pstree, core, ids, fs, creds, signals, timers).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = crust_fuzz::fuzz_image(crust_fuzz::ImageFamily::Core, bytes);
});
