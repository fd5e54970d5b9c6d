//! Fuzzes the tmpfs archive reader (plain tar, or gzip when the input starts with its
//! magic) and the writer's round trip of what it reads.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    crust_fuzz::fuzz_tar(bytes);
});
