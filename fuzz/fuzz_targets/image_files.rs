//! Fuzzes file and socket images (files, fdinfo, pipes, sockets, queues, ghost files...).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let _ = crust_fuzz::fuzz_image(crust_fuzz::ImageFamily::Files, bytes);
});
