//! What the Raft log store keeps across a restart, a crash and a power cut: the entries (with
//! their terms and Kafka offsets), the vote, the purge point; and that the segment files hold
//! the clients' batches as sent, which is what Fetch reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{EntryPayload, RaftLogReader};
use tally_log::{storage, LogConfig};
use tally_protocol::BatchHeader;
use tally_raft::{Entry, LogId, RaftBatch, SegmentLogStore, Vote};
use tally_testkit::BatchSpec;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2_000,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn data(term: u64, index: u64, records: usize) -> Entry {
    let batch = BatchSpec::new(9, 0, index as i32 * 10, records).encode();
    Entry::new_normal(LogId::new_term_index(term, index), RaftBatch(batch))
}

/// Blank and membership entries, then 38 data batches of 1 to 5 records over two terms.
fn entries() -> Vec<Entry> {
    let voters: BTreeSet<u64> = [1, 2, 3].into();
    let nodes: BTreeMap<u64, openraft::impls::BasicNode> = voters
        .iter()
        .map(|id| {
            (
                *id,
                openraft::impls::BasicNode::new(format!("127.0.0.{id}:9193")),
            )
        })
        .collect();
    let membership = openraft::Membership::new(vec![voters], nodes).unwrap();
    let mut out = vec![
        Entry::new_blank(LogId::new_term_index(1, 1)),
        Entry::new_membership(LogId::new_term_index(1, 2), membership),
    ];
    out.extend((3..=20).map(|i| data(1, i, 1 + (i as usize % 5))));
    out.push(Entry::new_blank(LogId::new_term_index(2, 21)));
    out.extend((22..=40).map(|i| data(2, i, 1 + (i as usize % 3))));
    out
}

async fn append(store: &mut SegmentLogStore, entries: Vec<Entry>) {
    store.append(entries, IOFlushed::noop()).await.unwrap();
}

struct Seen {
    state: (Option<LogId>, Option<LogId>),
    entries: Vec<Entry>,
    vote: Option<Vote>,
    log_end_offset: i64,
}

/// What the store holds, its entries read from the segment files: the entries appended and not
/// yet applied are served from memory (and carry the offsets they came with), so they are
/// marked applied first.
async fn seen(store: &mut SegmentLogStore) -> Seen {
    store.applied_upto(u64::MAX);
    let s = store.get_log_state().await.unwrap();
    Seen {
        state: (s.last_purged_log_id, s.last_log_id),
        entries: store.try_get_log_entries(0..u64::MAX).await.unwrap(),
        vote: store.read_vote().await.unwrap(),
        log_end_offset: store.log_reader().log_end_offset(),
    }
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count()
}

fn open(dir: &Path) -> SegmentLogStore {
    SegmentLogStore::open(dir, config()).unwrap()
}

#[tokio::test]
async fn entries_vote_and_purge_point_survive_a_restart_and_a_crash() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        append(&mut store, entries()).await;
        store.save_vote(&Vote::new(2, 1)).await.unwrap();
        store
            .save_committed(Some(LogId::new_term_index(2, 35)))
            .await
            .unwrap();
        store.purge(LogId::new_term_index(1, 10)).await.unwrap();
        store
            .truncate_after(Some(LogId::new_term_index(2, 38)))
            .await
            .unwrap();
        assert!(segment_files(dir.path()) > 2, "several segments");
        let before = seen(&mut store).await;
        assert_eq!(
            before.state,
            (
                Some(LogId::new_term_index(1, 10)),
                Some(LogId::new_term_index(2, 38))
            )
        );
        assert_eq!(before.entries.len(), 28);
        assert_eq!(before.entries[0].index(), 11);
        if clean {
            store.close().unwrap();
        }
        drop(store);

        let mut store = open(dir.path());
        let after = seen(&mut store).await;
        assert_eq!(after.state, before.state, "clean={clean}");
        assert_eq!(after.entries, before.entries, "clean={clean}");
        assert_eq!(after.vote, before.vote, "clean={clean}");
        assert_eq!(after.log_end_offset, before.log_end_offset, "clean={clean}");
        assert_eq!(
            store.read_committed().await.unwrap(),
            Some(LogId::new_term_index(2, 35))
        );
        // The log goes on where it was cut, at the Kafka offset after entry 38.
        append(&mut store, vec![data(3, 39, 2)]).await;
        let (base, end) = store.offsets_of(39).unwrap();
        assert_eq!(
            (base, end),
            (before.log_end_offset, before.log_end_offset + 2)
        );
    }
}

/// What Fetch reads below the store: every data entry is the client's batch, untouched under
/// its CRC, at contiguous Kafka offsets, its leader epoch the entry's term.
#[tokio::test]
async fn the_segments_hold_the_clients_batches_at_contiguous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let sent = entries();
    append(&mut store, sent.clone()).await;
    let reader = store.log_reader().clone();
    let mut offset = 0;
    for entry in &sent {
        let read = reader.read(offset, 1 << 20, i64::MAX, true).unwrap();
        let header = BatchHeader::parse_whole(&read.records).unwrap();
        let bytes = read.records.slice(..header.size_in_bytes());
        header.verify_crc(&bytes).unwrap();
        assert_eq!(header.base_offset, offset);
        assert_eq!(
            header.partition_leader_epoch as u64,
            entry.log_id.leader_id.term
        );
        match &entry.payload {
            EntryPayload::Normal(RaftBatch(original)) => {
                assert!(!header.is_control());
                assert_eq!(&bytes[21..], &original[21..]);
            }
            _ => assert!(
                header.is_control(),
                "raft's own entries are control batches"
            ),
        }
        assert_eq!(
            store.offsets_of(entry.index()),
            Some((offset, header.last_offset() + 1))
        );
        offset = header.last_offset() + 1;
    }
    assert_eq!(offset, reader.log_end_offset());
}

/// Appends are fsynced before the store says they are done, and the vote before
/// `save_vote` returns: a power cut (which keeps only fsynced data and directory entries)
/// loses none of them.
#[tokio::test]
async fn appended_entries_and_the_vote_survive_a_power_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("p0");
    std::fs::create_dir(&root).unwrap();
    storage::track(&root);
    let mut store = open(&root);
    let all = entries();
    append(&mut store, all[..25].to_vec()).await;
    store.save_vote(&Vote::new(2, 3)).await.unwrap();
    append(&mut store, all[25..].to_vec()).await;
    store.purge(LogId::new_term_index(1, 4)).await.unwrap();
    let before = seen(&mut store).await;
    drop(store);
    let report = storage::power_cut(&root).unwrap();
    storage::untrack(&root);
    let mut store = open(&root);
    let after = seen(&mut store).await;
    assert_eq!(after.state, before.state, "{report:?}");
    assert_eq!(after.entries, before.entries);
    assert_eq!(after.vote, Some(Vote::new(2, 3)));
}

/// A batch torn by a crash while it was written (never acknowledged) is cut on open, and
/// the entries before it are all there.
#[tokio::test]
async fn a_torn_last_entry_is_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let all = entries();
    append(&mut store, all.clone()).await;
    drop(store);
    let active = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .unwrap();
    let len = std::fs::metadata(&active).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap();
    f.set_len(len - 7).unwrap();
    let mut store = open(dir.path());
    let after = seen(&mut store).await;
    assert_eq!(after.state.1, Some(LogId::new_term_index(2, 39)));
    let got: Vec<_> = after.entries.iter().map(summary).collect();
    let sent: Vec<_> = all[..all.len() - 1].iter().map(summary).collect();
    assert!(got == sent, "entries differ from those sent");
}

/// An entry's log id and payload, a data batch by its bytes under the CRC (the store sets
/// the base offset and leader epoch in front of them).
fn summary(e: &Entry) -> (LogId, String) {
    let payload = match &e.payload {
        EntryPayload::Normal(RaftBatch(b)) => format!("data {:?}", &b[21..]),
        other => format!("{other}"),
    };
    (e.log_id, payload)
}

/// The entries served from memory right after their append are the ones the segments hold,
/// but for the two fields the log sets as it writes (base offset, leader epoch): whether they
/// come all from memory, all from the segments, or split between the two.
#[tokio::test]
async fn entries_from_memory_are_the_ones_in_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let all = entries();
    append(&mut store, all.clone()).await;
    let from_memory = store.try_get_log_entries(0..u64::MAX).await.unwrap();
    assert_eq!(from_memory, all, "as appended");
    store.applied_upto(20);
    let split = store.try_get_log_entries(5..30).await.unwrap();
    store.applied_upto(u64::MAX);
    let from_segments = store.try_get_log_entries(0..u64::MAX).await.unwrap();
    // Indexes 5..=20 from the segments, 21..=29 from memory (index i is at position i - 1).
    let expected: Vec<Entry> = from_segments[4..20]
        .iter()
        .chain(&from_memory[20..29])
        .cloned()
        .collect();
    assert_eq!(split, expected, "split where the applied entries end");

    let without_offsets = |entries: &[Entry]| -> Vec<Entry> {
        entries
            .iter()
            .map(|e| match &e.payload {
                EntryPayload::Normal(RaftBatch(b)) => {
                    let mut b = b.to_vec();
                    b[..8].fill(0);
                    b[12..16].fill(0);
                    Entry::new_normal(e.log_id, RaftBatch(b.into()))
                }
                _ => e.clone(),
            })
            .collect()
    };
    assert_eq!(from_segments.len(), all.len());
    assert_eq!(
        without_offsets(&from_segments),
        without_offsets(&from_memory)
    );
    let mut next = 0;
    for e in &from_segments {
        if let EntryPayload::Normal(RaftBatch(b)) = &e.payload {
            let h = BatchHeader::parse(b).unwrap();
            assert_eq!(h.base_offset, next, "the segments' offsets are the log's");
            assert_eq!(h.partition_leader_epoch as u64, e.log_id.leader_id.term);
            next = h.last_offset() + 1;
        } else {
            next += 1;
        }
    }
}
