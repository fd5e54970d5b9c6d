//! Fuzzes the parser of task-state images (core, pstree, ids, fs, creds, inventory, seccomp).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = crust_fuzz::fuzz_image(crust_fuzz::ImageFamily::Core, bytes);
});
