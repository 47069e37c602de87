//! The proxy itself: one task per client connection, two directions per connection, faults
//! drawn from a per-connection seeded random source.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::Decodable;
use tally_protocol::{BatchHeader, RequestPeek};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::counters::{FaultCounters, FaultCountsSnapshot};
use crate::events::{ProduceEvent, ProduceOutcome, ProducePartition};
use crate::rng::FaultRng;

/// Which Produce answers to lose (after the broker wrote the batch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DropPolicy {
    Never,
    /// Each answer independently, with this probability.
    Probability(f64),
    /// The first n answers the proxy sees, then none.
    FirstN(u64),
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The broker.
    pub upstream: SocketAddr,
    /// Where clients connect; port 0 picks a free one.
    pub listen: SocketAddr,
    pub seed: u64,
    pub drop_produce_responses: DropPolicy,
    /// Per request: reset the connection instead of forwarding it.
    pub reset_probability: f64,
    /// Extra delay before each answer is forwarded, drawn from this range (ms).
    pub delay_ms: (u64, u64),
    /// Per connection: accept it, then never forward a byte.
    pub stall_probability: f64,
    /// Keep a log of Produce traffic (for demos and small tests; it grows with traffic).
    pub record_events: bool,
    /// Rewrite the broker addresses in Metadata answers to the proxy's own, so clients keep
    /// coming through the proxy even when the broker advertises itself (single broker only).
    pub rewrite_metadata: bool,
}

impl ProxyConfig {
    /// A proxy that forwards everything faithfully.
    pub fn new(upstream: SocketAddr) -> Self {
        ProxyConfig {
            upstream,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 0,
            drop_produce_responses: DropPolicy::Never,
            reset_probability: 0.0,
            delay_ms: (0, 0),
            stall_probability: 0.0,
            record_events: false,
            rewrite_metadata: false,
        }
    }
}

struct Shared {
    config: ProxyConfig,
    local_addr: SocketAddr,
    /// Where connections go; settable after start, so a broker can be started advertising the
    /// proxy's address.
    upstream: Mutex<SocketAddr>,
    counters: FaultCounters,
    events: Mutex<Vec<ProduceEvent>>,
    faults_enabled: AtomicBool,
    first_n_dropped: AtomicU64,
}

/// A running proxy. Dropping it stops accepting and closes nothing else; connections end when
/// either side closes.
pub struct FaultProxy {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

impl FaultProxy {
    pub async fn start(config: ProxyConfig) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            local_addr,
            upstream: Mutex::new(config.upstream),
            config,
            counters: FaultCounters::default(),
            events: Mutex::new(Vec::new()),
            faults_enabled: AtomicBool::new(true),
            first_n_dropped: AtomicU64::new(0),
        });
        let accept_shared = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            let mut next_id = 0u64;
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                next_id += 1;
                FaultCounters::bump(&accept_shared.counters.connections);
                tokio::spawn(connection(Arc::clone(&accept_shared), client, next_id));
            }
        });
        Ok(FaultProxy {
            local_addr,
            shared,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Points new connections at another broker address.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock().expect("upstream lock") = upstream;
    }

    pub fn counters(&self) -> FaultCountsSnapshot {
        self.shared.counters.snapshot()
    }

    /// Produce traffic seen so far (empty unless `record_events`).
    pub fn events(&self) -> Vec<ProduceEvent> {
        self.shared.events.lock().expect("events lock").clone()
    }

    /// Turns fault injection off (healing) or on again; forwarding goes on either way.
    pub fn set_faults_enabled(&self, enabled: bool) {
        self.shared.faults_enabled.store(enabled, Ordering::Relaxed);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Pending {
    api_key: i16,
    api_version: i16,
    expects_answer: bool,
    event: Option<usize>,
}

async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Option<Bytes> {
    let mut prefix = [0u8; 4];
    reader.read_exact(&mut prefix).await.ok()?;
    let size = i32::from_be_bytes(prefix);
    if size < 0 || size as usize > MAX_FRAME_BYTES {
        return None;
    }
    let mut frame = vec![0u8; 4 + size as usize];
    frame[..4].copy_from_slice(&prefix);
    reader.read_exact(&mut frame[4..]).await.ok()?;
    Some(Bytes::from(frame))
}

/// Acks and the partitions' batch headers of a Produce request frame.
fn parse_produce(frame: &Bytes, peek: RequestPeek) -> Option<(i16, Vec<ProducePartition>)> {
    let api_key = ApiKey::Produce;
    let mut body = frame.slice(4..);
    RequestHeader::decode(&mut body, api_key.request_header_version(peek.api_version)).ok()?;
    let request = ProduceRequest::decode(&mut body, peek.api_version).ok()?;
    let mut partitions = Vec::new();
    for topic in &request.topic_data {
        for p in &topic.partition_data {
            let header = p.records.as_ref().and_then(|r| BatchHeader::parse(r).ok());
            partitions.push(ProducePartition {
                topic: topic.name.0.to_string(),
                partition: p.index,
                producer_id: header.map_or(-1, |h| h.producer_id),
                producer_epoch: header.map_or(-1, |h| h.producer_epoch),
                base_sequence: header.map_or(-1, |h| h.base_sequence),
                record_count: header.map_or(0, |h| h.records_count),
                error_code: None,
                base_offset: None,
            });
        }
    }
    Some((request.acks, partitions))
}

fn record_answer(shared: &Shared, index: usize, frame: &Bytes, version: i16) {
    let mut body = frame.slice(4..);
    let header_version = ApiKey::Produce.response_header_version(version);
    if ResponseHeader::decode(&mut body, header_version).is_err() {
        return;
    }
    let Ok(response) = ProduceResponse::decode(&mut body, version) else {
        return;
    };
    let mut events = shared.events.lock().expect("events lock");
    let Some(event) = events.get_mut(index) else {
        return;
    };
    for topic in &response.responses {
        for p in &topic.partition_responses {
            if let Some(slot) = event
                .partitions
                .iter_mut()
                .find(|e| e.topic == topic.name.0.as_str() && e.partition == p.index)
            {
                slot.error_code = Some(p.error_code);
                slot.base_offset = Some(p.base_offset);
            }
        }
    }
}

/// The Metadata answer with every broker's address replaced by the proxy's.
fn rewrite_metadata(frame: &Bytes, version: i16, proxy: SocketAddr) -> Option<Bytes> {
    use bytes::BufMut;
    use kafka_protocol::messages::MetadataResponse;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let api_key = ApiKey::Metadata;
    let header_version = api_key.response_header_version(version);
    let mut body = frame.slice(4..);
    let header = ResponseHeader::decode(&mut body, header_version).ok()?;
    let mut response = MetadataResponse::decode(&mut body, version).ok()?;
    for broker in &mut response.brokers {
        broker.host = StrBytes::from_string(proxy.ip().to_string());
        broker.port = i32::from(proxy.port());
    }
    let mut out = bytes::BytesMut::new();
    out.put_i32(0);
    header.encode(&mut out, header_version).ok()?;
    response.encode(&mut out, version).ok()?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Some(out.freeze())
}

fn set_outcome(shared: &Shared, index: Option<usize>, outcome: ProduceOutcome) {
    if let Some(i) = index {
        if let Some(e) = shared.events.lock().expect("events lock").get_mut(i) {
            e.outcome = outcome;
        }
    }
}

async fn connection(shared: Arc<Shared>, client: TcpStream, id: u64) {
    let config = &shared.config;
    let faults = || shared.faults_enabled.load(Ordering::Relaxed);
    let mut rng_up = FaultRng::new(config.seed, id * 2);
    let mut rng_down = FaultRng::new(config.seed, id * 2 + 1);
    if faults() && rng_up.chance(config.stall_probability) {
        FaultCounters::bump(&shared.counters.connections_stalled);
        // Accept, read and discard, never answer: the client must time out.
        let mut client = client;
        let mut sink = vec![0u8; 64 * 1024];
        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
        return;
    }
    let upstream_addr = *shared.upstream.lock().expect("upstream lock");
    let Ok(upstream) = TcpStream::connect(upstream_addr).await else {
        debug!(
            connection = id,
            "upstream unreachable; closing the client connection"
        );
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let (pending_tx, mut pending_rx) = mpsc::unbounded_channel::<Pending>();

    let up_shared = Arc::clone(&shared);
    let client_to_broker = async move {
        let shared = up_shared;
        while let Some(frame) = read_frame(&mut client_read).await {
            let Some(peek) = RequestPeek::read(&frame[4..]) else {
                return;
            };
            if shared.faults_enabled.load(Ordering::Relaxed)
                && rng_up.chance(shared.config.reset_probability)
            {
                FaultCounters::bump(&shared.counters.connections_reset);
                return;
            }
            let mut expects_answer = true;
            let mut event = None;
            if peek.api_key == ApiKey::Produce as i16 {
                FaultCounters::bump(&shared.counters.produce_requests);
                if let Some((acks, partitions)) = parse_produce(&frame, peek) {
                    expects_answer = acks != 0;
                    if shared.config.record_events {
                        let mut events = shared.events.lock().expect("events lock");
                        events.push(ProduceEvent {
                            connection: id,
                            correlation_id: peek.correlation_id,
                            partitions,
                            outcome: ProduceOutcome::Pending,
                        });
                        event = Some(events.len() - 1);
                    }
                }
            }
            if pending_tx
                .send(Pending {
                    api_key: peek.api_key,
                    api_version: peek.api_version,
                    expects_answer,
                    event,
                })
                .is_err()
            {
                return;
            }
            if upstream_write.write_all(&frame).await.is_err() {
                return;
            }
            FaultCounters::bump(&shared.counters.requests_forwarded);
        }
    };

    let down_shared = Arc::clone(&shared);
    let broker_to_client = async move {
        let shared = down_shared;
        while let Some(frame) = read_frame(&mut upstream_read).await {
            let pending = loop {
                match pending_rx.recv().await {
                    Some(p) if !p.expects_answer => {
                        set_outcome(&shared, p.event, ProduceOutcome::Delivered)
                    }
                    Some(p) => break p,
                    None => return,
                }
            };
            if pending.api_key == ApiKey::Produce as i16 {
                if let Some(index) = pending.event {
                    record_answer(&shared, index, &frame, pending.api_version);
                }
                let drop_it = shared.faults_enabled.load(Ordering::Relaxed)
                    && match shared.config.drop_produce_responses {
                        DropPolicy::Never => false,
                        DropPolicy::Probability(p) => rng_down.chance(p),
                        DropPolicy::FirstN(n) => shared
                            .first_n_dropped
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                                (d < n).then_some(d + 1)
                            })
                            .is_ok(),
                    };
                if drop_it {
                    FaultCounters::bump(&shared.counters.produce_responses_dropped);
                    set_outcome(&shared, pending.event, ProduceOutcome::AnswerDropped);
                    return;
                }
            }
            let frame = if shared.config.rewrite_metadata
                && pending.api_key == ApiKey::Metadata as i16
            {
                rewrite_metadata(&frame, pending.api_version, shared.local_addr).unwrap_or(frame)
            } else {
                frame
            };
            let (low, high) = shared.config.delay_ms;
            if high > 0 && shared.faults_enabled.load(Ordering::Relaxed) {
                FaultCounters::bump(&shared.counters.responses_delayed);
                tokio::time::sleep(Duration::from_millis(rng_down.between(low, high))).await;
            }
            if client_write.write_all(&frame).await.is_err() {
                return;
            }
            set_outcome(&shared, pending.event, ProduceOutcome::Delivered);
        }
    };

    // Whichever direction ends first ends the connection: both sockets close when dropped.
    tokio::select! {
        _ = client_to_broker => {}
        _ = broker_to_client => {}
    }
}
