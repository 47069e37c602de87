//! A SASL listener under abuse: 1,000 failed logins from one client while another client
//! produces (every produce is answered, every login refused with SASL_AUTHENTICATION_FAILED),
//! and mutated SASL frames and tokens (PLAIN, SCRAM first and final messages), each of which
//! gets an answer or a closed connection, never a panic or a hang; the broker then still
//! logs in the right password.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;
use tally_protocol::scram::{ScramClient, ScramMechanism};
use tally_testkit::{batch, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// `delay_ms`: connection.failed.authentication.delay.ms (the fuzz run does not need it).
fn sasl_broker(delay_ms: u32) -> BrokerProcess {
    let delay = format!("connection.failed.authentication.delay.ms={delay_ms}");
    BrokerProcess::start_with_scheme(
        Path::new(TALLY),
        "SASL_PLAINTEXT://",
        &["--set", &delay],
        &[(
            "TALLY_SASL_BOOTSTRAP_USERS",
            "admin:admin-pw,writer:writer-pw",
        )],
    )
}

fn login(addr: SocketAddr, mechanism: &str, user: &str, password: &str) -> WireClient {
    let mut c = WireClient::connect(addr).unwrap();
    c.authenticate(mechanism, user, password)
        .unwrap()
        .expect("the right password logs in");
    c
}

#[test]
fn a_thousand_failed_logins_do_not_stop_another_client() {
    let broker = sasl_broker(100);
    let addr: SocketAddr = broker.bootstrap().parse().unwrap();
    let mut writer = login(addr, "SCRAM-SHA-512", "writer", "writer-pw");
    writer.create_topic("busy", 1).unwrap();
    let (pid, epoch) = writer.init_producer_id().unwrap();

    const ATTEMPTS: usize = 1000;
    const THREADS: usize = 20;
    let refused = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..THREADS)
        .map(|t| {
            let refused = Arc::clone(&refused);
            std::thread::spawn(move || {
                for i in 0..ATTEMPTS / THREADS {
                    let mut c = WireClient::connect(addr).unwrap();
                    let mechanism = if (t + i) % 2 == 0 {
                        "SCRAM-SHA-512"
                    } else {
                        "PLAIN"
                    };
                    let answer = c.authenticate(mechanism, "writer", &format!("guess-{t}-{i}"));
                    if let Ok(Err((SASL_AUTHENTICATION_FAILED, _))) = answer {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Meanwhile the writer's batches are all answered, in order.
    let mut sequence = 0;
    let mut answered = 0;
    while attackers.iter().any(|a| !a.is_finished()) {
        let answer = writer
            .produce(9, "busy", 0, batch(pid, epoch, sequence, 5))
            .unwrap();
        assert_eq!(
            answer.error_code, 0,
            "the writer was refused during the attack"
        );
        sequence += 5;
        answered += 1;
    }
    for a in attackers {
        a.join().unwrap();
    }
    assert_eq!(
        refused.load(Ordering::Relaxed),
        ATTEMPTS,
        "every guess was refused"
    );
    assert!(answered > 0);
    assert_eq!(
        writer.list_offset("busy", 0, -1).unwrap(),
        i64::from(sequence)
    );
    eprintln!("{answered} produce requests answered during {ATTEMPTS} failed logins");
}

/// The first SaslAuthenticate token of each mechanism, and SCRAM's final message.
fn tokens() -> Vec<(&'static str, Vec<u8>)> {
    let mut scram = ScramClient::new(ScramMechanism::Sha512, "admin", "admin-pw", "fuzznonce");
    let first = scram.first_message();
    let server_first = b"r=fuzznonceXYZ,s=c2FsdA==,i=4096".to_vec();
    let last = scram.final_message(&server_first).unwrap();
    vec![
        ("PLAIN", b"\0admin\0admin-pw".to_vec()),
        ("SCRAM-SHA-512", first),
        ("SCRAM-SHA-512", last),
        ("SCRAM-SHA-256", b"n,a=admin,n=admin,r=abc".to_vec()),
    ]
}

fn mutate(
    mut bytes: Vec<u8>,
    flips: &[(usize, u8)],
    keep: Option<usize>,
    random: Option<Vec<u8>>,
) -> Vec<u8> {
    if let Some(random) = random {
        return random;
    }
    for (at, mask) in flips {
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] ^= mask;
        }
    }
    if let Some(keep) = keep {
        bytes.truncate(keep % (bytes.len() + 1));
    }
    bytes
}

/// One connection: handshake, then the token (and for SCRAM's first message, the real final
/// message after it). Ok when every request got an answer or the connection was closed.
fn exchange(
    addr: SocketAddr,
    mechanism: &str,
    token: Vec<u8>,
    whole_frame: Option<&[(usize, u8)]>,
) -> Result<(), String> {
    let mut c = WireClient::connect(addr).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(10)));
    let handshake = SaslHandshakeRequest::default()
        .with_mechanism(StrBytes::from_string(mechanism.to_string()));
    c.send(&handshake, 1)
        .map_err(|e| format!("handshake: {e}"))?;
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    match whole_frame {
        None => match c.send(&request, 2) {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("closed") => Ok(()),
            Err(e) => Err(format!("authenticate: {e}")),
        },
        Some(flips) => {
            // The SaslAuthenticate frame itself mutated: an answer or a close.
            let mut body = WireClient::encode(&request, 2, 7).unwrap();
            for (at, mask) in flips {
                let i = at % body.len();
                body[i] ^= mask;
            }
            let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut frame = (body.len() as i32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            let _ = s.write_all(&frame);
            let _ = s.shutdown(std::net::Shutdown::Write);
            // One whole answer, or the close (a refused login's connection lingers a while
            // after its answer: no need to wait for that).
            let mut size = [0u8; 4];
            match s.read_exact(&mut size) {
                Ok(()) => {
                    let len = i32::from_be_bytes(size).max(0) as usize;
                    let mut body = vec![0u8; len];
                    s.read_exact(&mut body)
                        .map_err(|e| format!("a cut answer: {e}"))
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    Ok(())
                }
                Err(e) => Err(format!("no answer and no close: {e}")),
            }
        }
    }
}

#[test]
fn mutated_sasl_tokens_and_frames_never_break_the_broker() {
    let broker = sasl_broker(0);
    let addr: SocketAddr = broker.bootstrap().parse().unwrap();
    let tokens = tokens();
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&0x5a51_f022u64.to_le_bytes());
    let rng = proptest::test_runner::TestRng::from_seed(
        proptest::test_runner::RngAlgorithm::ChaCha,
        &seed,
    );
    let config = ProptestConfig {
        cases: 1500,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(config, rng);
    let strategy = (
        0..tokens.len(),
        proptest::collection::vec((any::<usize>(), 1u8..=255), 0..4),
        proptest::option::of(any::<usize>()),
        proptest::option::weighted(0.2, proptest::collection::vec(any::<u8>(), 0..120)),
        proptest::option::weighted(
            0.2,
            proptest::collection::vec((any::<usize>(), 1u8..=255), 1..3),
        ),
    );
    runner
        .run(&strategy, |(which, flips, keep, random, frame_flips)| {
            let (mechanism, token) = tokens[which].clone();
            let token = mutate(token, &flips, keep, random);
            let result = exchange(addr, mechanism, token.clone(), frame_flips.as_deref());
            prop_assert!(
                result.is_ok(),
                "{:?} for {mechanism} token {:?}",
                result,
                token
            );
            Ok(())
        })
        .unwrap();
    let logs = broker.logs();
    assert!(!logs.contains("panicked"), "the broker panicked:\n{logs}");
    // Still serving the right password.
    let mut c = login(addr, "SCRAM-SHA-256", "admin", "admin-pw");
    c.create_topic("after-fuzz", 1).unwrap();
}
