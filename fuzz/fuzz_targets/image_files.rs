//! Fuzzes the parser of file images (files, fdinfo, pipes, sockets, socket queues).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = crust_fuzz::fuzz_image(crust_fuzz::ImageFamily::Files, bytes);
});
