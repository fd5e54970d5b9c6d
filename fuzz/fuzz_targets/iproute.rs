//! Fuzzes the iproute2 save stream parser (ifaddr/route/rule images) and its round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    crust_fuzz::fuzz_iproute(bytes);
});
