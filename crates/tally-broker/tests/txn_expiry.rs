//! `transactional.id.expiration.ms`: a transactional id left idle that long is forgotten (a
//! tombstone in `__transaction_state`), and stays forgotten after a restart; one with an open
//! transaction is not forgotten (its transaction times out first).

use std::time::{Duration, Instant};

use kafka_protocol::messages::{
    DescribeTransactionsRequest, InitProducerIdRequest, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use tally_testkit::WireClient;

mod common;

const SETTINGS: &[(&str, &str)] = &[
    ("transactional.id.expiration.ms", "300"),
    (
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "50",
    ),
];
const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

fn describe(c: &mut WireClient, id: &'static str) -> i16 {
    let r = c
        .send(
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(StrBytes::from_static_str(id))]),
            0,
        )
        .unwrap();
    r.transaction_states[0].error_code
}

#[test]
fn an_idle_transactional_id_is_forgotten_for_good() {
    let runtime = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(&runtime, dir.path(), SETTINGS);
    let mut c = WireClient::connect(running.local_addr).unwrap();
    let r = c
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("idle"))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .unwrap();
    assert_eq!(r.error_code, 0);
    assert_eq!(
        describe(&mut c, "idle"),
        0,
        "known right after InitProducerId"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while describe(&mut c, "idle") != TRANSACTIONAL_ID_NOT_FOUND {
        assert!(Instant::now() < deadline, "the idle id was never forgotten");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(c);
    runtime.block_on(running.shutdown());
    let running = common::start(&runtime, dir.path(), SETTINGS);
    let mut c = WireClient::connect(running.local_addr).unwrap();
    assert_eq!(
        describe(&mut c, "idle"),
        TRANSACTIONAL_ID_NOT_FOUND,
        "the tombstone keeps it forgotten after a restart"
    );
    drop(c);
    runtime.block_on(running.shutdown());
}

/// The transaction log carries an id with an i16 length: 32,767 bytes are stored intact and
/// survive a restart, 32,768 are refused with INVALID_REQUEST (never stored cut).
#[test]
fn transactional_ids_at_the_length_boundary() {
    let runtime = common::runtime();
    let dir = tempfile::tempdir().unwrap();
    let running = common::start(&runtime, dir.path(), &[]);
    let mut c = WireClient::connect(running.local_addr).unwrap();
    let init = |c: &mut WireClient, id: &str| {
        c.send(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_string(id.into()))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .unwrap()
    };
    let longest = "x".repeat(32_767);
    assert_eq!(init(&mut c, &longest).error_code, 0);
    for too_long in [32_768usize, 65_536, 1 << 20] {
        assert_eq!(
            init(&mut c, &"y".repeat(too_long)).error_code,
            42,
            "{too_long} bytes"
        );
    }
    drop(c);
    runtime.block_on(running.shutdown());
    let running = common::start(&runtime, dir.path(), &[]);
    let mut c = WireClient::connect(running.local_addr).unwrap();
    let r = c
        .send(
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
                StrBytes::from_string(longest.clone()),
            )]),
            0,
        )
        .unwrap();
    assert_eq!(r.transaction_states[0].error_code, 0, "stored intact");
    assert_eq!(r.transaction_states[0].transactional_id.0.len(), 32_767);
    drop(c);
    runtime.block_on(running.shutdown());
}
