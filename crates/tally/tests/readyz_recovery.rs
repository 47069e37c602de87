//! `/readyz` during a real recovery: after a SIGKILL the broker restarts on the same data with
//! a slow disk (`TALLY_PAUSE` holds each segment scan of the recovery for a while). Its HTTP
//! listener is up at once: `/healthz` answers 200 and `/readyz` 503 while the partitions are
//! recovered, then `/readyz` turns 200 and clients are served.

use std::path::Path;
use std::time::{Duration, Instant};

use tally_testkit::{http_get, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

#[test]
fn readyz_is_503_while_a_restart_recovers_then_200() {
    let mut broker = BrokerProcess::start(Path::new(TALLY), &[]);
    WireClient::connect(broker.addr)
        .unwrap()
        .create_topic("recovering", 4)
        .unwrap();
    broker.kill9();
    broker.set_env(&[
        ("TALLY_PAUSE", "log.recovery.after_segment:400"),
        // The HTTP address is logged at debug level as soon as it is bound.
        ("RUST_LOG", "info,tally_broker::server=debug"),
    ]);
    broker.restart_in_background();

    let deadline = Instant::now() + Duration::from_secs(30);
    let http = loop {
        if let Some(addr) = broker.http_addr_while_starting() {
            break addr;
        }
        assert!(
            Instant::now() < deadline,
            "no HTTP listener:\n{}",
            broker.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http_get(http, "/readyz").unwrap();
        if seen.last() != Some(&(status, body.clone())) {
            seen.push((status, body.clone()));
        }
        if status == 503 {
            assert_eq!(
                http_get(http, "/healthz").unwrap().0,
                200,
                "alive meanwhile"
            );
            // The broker may finish recovering between the two requests: a 200 from
            // /metrics must then come with a ready /readyz.
            let metrics = http_get(http, "/metrics").unwrap().0;
            if metrics == 200 {
                assert_eq!(
                    http_get(http, "/readyz").unwrap().0,
                    200,
                    "metrics served while recovering"
                );
            } else {
                assert_eq!(metrics, 503);
            }
        }
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        seen,
        vec![
            (503, "recovering\n".to_string()),
            (200, "ready\n".to_string())
        ]
    );
    broker.wait_until_ready();
    WireClient::connect(broker.addr)
        .unwrap()
        .create_topic("after", 1)
        .unwrap();
}
