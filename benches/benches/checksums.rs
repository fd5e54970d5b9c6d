//! The page checksum's candidates on 1 GiB (`crust-checksums.img`): CRC-32C (the
//! `crc-fast` crate crust uses, and the `crc32c` crate's SSE4.2 loop) against xxh3
//! (`xxhash-rust`, built for plain x86-64 as crust is), each over the whole GiB (memory
//! bound) and as 1 MiB pieces in the cache (how the page copier meets the bytes).
//!
//! `cargo bench -p crust-benches --bench checksums`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const GIB: usize = 1 << 30;
const PIECE: usize = 1 << 20;

fn checksums(c: &mut Criterion) {
    let data: Vec<u8> = (0..GIB).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let piece = &data[..PIECE];
    let mut group = c.benchmark_group("checksum 1 GiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(GIB as u64));
    group.bench_function("crc32c crc-fast, from memory", |b| b.iter(|| crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, black_box(&data))));
    group.bench_function("crc32c crc32c-crate, from memory", |b| b.iter(|| crc32c::crc32c(black_box(&data))));
    group.bench_function("xxh3 xxhash-rust, from memory", |b| b.iter(|| xxhash_rust::xxh3::xxh3_64(black_box(&data))));
    group.bench_function("crc32c crc-fast, 1 MiB pieces in cache", |b| {
        b.iter(|| (0..GIB / PIECE).fold(0u64, |acc, _| acc ^ crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, black_box(piece))))
    });
    group.bench_function("crc32c crc32c-crate, 1 MiB pieces in cache", |b| {
        b.iter(|| (0..GIB / PIECE).fold(0u32, |acc, _| acc ^ crc32c::crc32c(black_box(piece))))
    });
    group.bench_function("xxh3 xxhash-rust, 1 MiB pieces in cache", |b| {
        b.iter(|| (0..GIB / PIECE).fold(0u64, |acc, _| acc ^ xxhash_rust::xxh3::xxh3_64(black_box(piece))))
    });
    group.finish();
}

criterion_group!(benches, checksums);
criterion_main!(benches);
