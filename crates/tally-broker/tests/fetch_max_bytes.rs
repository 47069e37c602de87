//! `fetch.max.bytes` caps what one Fetch response carries, whatever the request asks: a
//! consumer asking for 10 MB gets whole batches up to the cap (and always at least one).

use tally_testkit::{BatchSpec, WireClient};

mod common;

#[test]
fn a_fetch_carries_at_most_fetch_max_bytes() {
    let runtime = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(&runtime, dir.path(), &[("fetch.max.bytes", "2048")]);
    let mut client = WireClient::connect(running.local_addr).unwrap();
    client.create_topic("capped", 1).unwrap();
    let mut sizes = Vec::new();
    for _ in 0..6 {
        let mut spec = BatchSpec::new(-1, -1, -1, 1);
        spec.values = vec![vec![7u8; 600]];
        let batch = spec.encode();
        sizes.push(batch.len());
        assert_eq!(client.produce(9, "capped", 0, batch).unwrap().error_code, 0);
    }
    let (code, hw, records) = client.fetch_once("capped", 0, 0, 10_000_000).unwrap();
    assert_eq!((code, hw), (0, 6));
    // Whole batches while they fit under 2048 bytes: three of them.
    let fitting: usize = sizes
        .iter()
        .scan(0, |sum, s| {
            *sum += s;
            (*sum <= 2048).then_some(*s)
        })
        .sum();
    assert_eq!(records.len(), fitting);
    assert!(records.len() < sizes.iter().sum::<usize>());
    // A batch larger than the cap still comes back whole (the consumer can always progress).
    let (_, _, first) = client.fetch_once("capped", 0, 0, 1).unwrap();
    assert_eq!(first.len(), sizes[0]);
    runtime.block_on(running.shutdown());
}
