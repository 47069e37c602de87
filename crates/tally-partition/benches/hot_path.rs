//! Micro-benchmarks of the produce and fetch hot path, on batches shaped like a producer's:
//! 160 records of 100 bytes (16 KiB, the default batch.size) from one idempotent producer.
//!
//!     cargo bench -p tally-partition --bench hot_path

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tally_partition::{validate_client_batch, Partition, PartitionConfig, ProducerTable};
use tally_protocol::record_batch::set_base_offset;
use tally_protocol::BatchHeader;
use tally_testkit::BatchSpec;

const RECORDS: usize = 160;

fn producer_batch(pid: i64, sequence: i32) -> Bytes {
    let mut spec = BatchSpec::new(pid, 0, sequence, RECORDS);
    spec.values = (0..RECORDS)
        .map(|i| vec![b'A' + (i % 26) as u8; 100])
        .collect();
    spec.encode()
}

fn header_benches(c: &mut Criterion) {
    let batch = producer_batch(1000, 0);
    let mut group = c.benchmark_group("batch_header");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("parse_and_crc", |b| {
        b.iter(|| {
            let header = BatchHeader::parse(black_box(&batch)).unwrap();
            header.verify_crc(&batch).unwrap();
            header
        })
    });
    group.bench_function("validate_client_batch", |b| {
        b.iter(|| validate_client_batch(black_box(&batch), 1 << 20).unwrap())
    });
    group.finish();
    // Patching writes 8 bytes at a fixed place, whatever the batch size: no throughput.
    let mut group = c.benchmark_group("batch_patch");
    let mut owned = batch.to_vec();
    group.bench_function("patch_base_offset", |b| {
        let mut offset = 0i64;
        b.iter(|| {
            offset += RECORDS as i64;
            set_base_offset(black_box(&mut owned), offset);
        })
    });
    group.finish();
}

fn producer_table_benches(c: &mut Criterion) {
    // A table with 1000 producers, each with five cached batches.
    let mut table = ProducerTable::new(100_000);
    let mut offset = 0i64;
    for pid in 0..1000i64 {
        for seq in 0..5 {
            let mut b = producer_batch(pid, seq * RECORDS as i32).to_vec();
            set_base_offset(&mut b, offset);
            offset += RECORDS as i64;
            table.apply_batch(&BatchHeader::parse(&b).unwrap(), None, 0);
        }
    }
    let next = BatchHeader::parse(&producer_batch(500, 5 * RECORDS as i32)).unwrap();
    let retry = BatchHeader::parse(&producer_batch(500, 2 * RECORDS as i32)).unwrap();
    let gap = BatchHeader::parse(&producer_batch(500, 9 * RECORDS as i32)).unwrap();
    let mut group = c.benchmark_group("producer_table");
    group.bench_function("check_next_in_sequence", |b| {
        b.iter(|| table.check(black_box(&next), false).unwrap())
    });
    group.bench_function("check_duplicate", |b| {
        b.iter(|| table.check(black_box(&retry), false).unwrap())
    });
    group.bench_function("check_gap", |b| {
        b.iter(|| table.check(black_box(&gap), false).unwrap_err())
    });
    group.finish();
}

fn partition_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (mut partition, _) = Partition::open(dir.path(), PartitionConfig::default(), 0).unwrap();
    let template = producer_batch(7, 0);
    let mut group = c.benchmark_group("partition");
    group.throughput(Throughput::Bytes(template.len() as u64));
    let mut sequence = 0i32;
    // Page-cache writes, as the broker's default (no fsync per append).
    group.bench_function("append_16KiB_batch", |b| {
        b.iter_batched(
            || {
                let mut batch = producer_batch(7, sequence).to_vec();
                sequence = sequence.wrapping_add(RECORDS as i32) & i32::MAX;
                batch.shrink_to_fit();
                batch
            },
            |batch| partition.append_client_batch(&batch, 0).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let end = partition.log_end_offset();
    let mut group = c.benchmark_group("fetch");
    group.throughput(Throughput::Bytes(1 << 20));
    group.bench_function("read_1MiB", |b| {
        let mut offset = 0i64;
        b.iter(|| {
            let read = partition.read(offset, 1 << 20, true).unwrap();
            offset = (offset + 64 * RECORDS as i64) % (end - 64 * RECORDS as i64).max(1);
            read
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    header_benches,
    producer_table_benches,
    partition_benches
);
criterion_main!(benches);
