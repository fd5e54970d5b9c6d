//! criterion benches of the pure hot paths of a dump and a restore: building page runs
//! from pagemap entries, and writing and reading the pagemap image's framing.
//!
//! `cargo xtest bench --criterion` (or `cargo bench -p crust-benches`).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use crust_engine::fast_pages::page_runs;
use crust_images::{pb, ByteOrder, ImageKind, ImageReader, ImageWriter, PE_PRESENT};

const PRESENT: u64 = 1 << 63;

/// 1 GiB of 4 KiB pages: all present, or every other one.
fn pagemap_runs(c: &mut Criterion) {
    let pages = 262_144usize;
    let all_present = vec![PRESENT | 0x1234; pages];
    let every_other: Vec<u64> = (0..pages).map(|i| if i % 2 == 0 { PRESENT } else { 0 }).collect();
    let mut group = c.benchmark_group("page_runs");
    group.throughput(Throughput::Elements(pages as u64));
    group.bench_function("1GiB all present", |b| b.iter(|| page_runs(black_box(&all_present), |e| e & PRESENT != 0)));
    group.bench_function("1GiB every other page", |b| b.iter(|| page_runs(black_box(&every_other), |e| e & PRESENT != 0)));
    group.finish();
}

fn pagemap_entries(count: u64) -> Vec<pb::PagemapEntry> {
    (0..count).map(|i| pb::PagemapEntry::run(0x7f00_0000_0000 + i * 0x2000, 1, PE_PRESENT)).collect()
}

fn write_pagemap(entries: &[pb::PagemapEntry]) -> Vec<u8> {
    let mut writer = ImageWriter::with_sink(Vec::new(), "pagemap-1.img", ImageKind::Pagemap, ByteOrder::native())
        .expect("in-memory sink");
    writer.write_entry(&pb::PagemapHead { pages_id: 1 }).expect("head");
    for entry in entries {
        writer.write_entry(entry).expect("entry");
    }
    writer.into_inner().expect("in-memory sink")
}

/// The pagemap image of 10,000 single-page runs (the 10,000-VMA workload), written and
/// read back.
fn pagemap_framing(c: &mut Criterion) {
    let entries = pagemap_entries(10_000);
    let bytes = write_pagemap(&entries);
    let mut group = c.benchmark_group("pagemap image");
    group.throughput(Throughput::Elements(entries.len() as u64));
    group.bench_function("write 10k entries", |b| b.iter(|| write_pagemap(black_box(&entries))));
    group.bench_function("read 10k entries", |b| {
        b.iter_batched(
            || bytes.clone(),
            |data| {
                let mut reader = ImageReader::from_bytes("pagemap-1.img", data).expect("valid image");
                let _head: pb::PagemapHead = reader.next_entry().expect("head").expect("head present");
                let mut pages = 0;
                while let Some(entry) = reader.next_entry::<pb::PagemapEntry>().expect("entry") {
                    pages += entry.page_count();
                }
                pages
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, pagemap_runs, pagemap_framing);
criterion_main!(benches);
