//! One client connection: a reader that takes frames off the socket and a responder that
//! writes the answers, strictly in request order.
//!
//! Produce requests pipeline: the reader checks a Produce's batches and queues them on their
//! partitions' writers, then reads the next request while the writers work; the responder
//! waits for each answer in turn. Because the reader queues in arrival order, a pipelining
//! idempotent producer's batches reach each partition in sequence order. Any other request
//! waits until everything before it has been answered and is then handled alone, so it sees
//! the effects of every earlier request (as with Kafka, which mutes the socket per request).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use tally_protocol::frame::frame_len;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info};

use crate::broker::Broker;
use crate::dispatch::{self, Decoded, Outcome};
use crate::handlers::sasl::{self, After};
use crate::security::SaslSession;

/// Answers a connection may owe at once before the reader stops reading (back-pressure).
const MAX_PIPELINED: usize = 32;

type Answer = Pin<Box<dyn Future<Output = Outcome> + Send>>;

enum Pending {
    Answer(Answer),
    /// Fired once everything before it has been answered.
    Barrier(oneshot::Sender<()>),
    /// Everything before it is out: keep the connection open this long, then close. A
    /// client that reads an answer and the close in one go may drop the answer (kafka-python
    /// does), so a refused client gets time to read it and close first.
    Linger(Duration),
}

/// How long a connection refused at authentication stays open after its answer.
const REFUSED_LINGER: Duration = Duration::from_millis(500);

/// Serves one connection given as its two halves (a TCP stream's, or a simulated one's).
/// `session` says whether it must authenticate first (a SASL listener) and who it is.
pub async fn run_connection<R, W>(
    broker: Arc<Broker>,
    read_half: R,
    write_half: W,
    peer: String,
    shutdown: watch::Receiver<bool>,
    session: SaslSession,
    listener: Arc<str>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel(MAX_PIPELINED);
    let (closed_tx, closed_rx) = oneshot::channel::<()>();
    let responder = respond(write_half, rx, peer.clone(), closed_tx);
    let reader = read_requests(
        &broker, read_half, tx, &peer, shutdown, closed_rx, session, listener,
    );
    // Both run on this connection's task: the reader stops when the responder has closed,
    // and the responder finishes every answer the reader queued before it stopped.
    tokio::join!(reader, responder);
}

impl Broker {
    /// Serves one client connection, given as the two halves of any stream.
    pub async fn serve_connection<R, W>(
        self: Arc<Self>,
        read_half: R,
        write_half: W,
        peer: String,
        shutdown: watch::Receiver<bool>,
    ) where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let session = SaslSession::not_sasl(crate::security::ANONYMOUS.to_string());
        let listener: Arc<str> = Arc::from(self.advertised.name.as_str());
        run_connection(
            self, read_half, write_half, peer, shutdown, session, listener,
        )
        .await;
    }
}

#[allow(clippy::too_many_arguments)] // the connection's halves, its channels, and who it is
async fn read_requests<R: AsyncRead + Unpin>(
    broker: &Arc<Broker>,
    read_half: R,
    tx: mpsc::Sender<Pending>,
    peer: &str,
    mut shutdown: watch::Receiver<bool>,
    mut closed: oneshot::Receiver<()>,
    mut session: SaslSession,
    listener: Arc<str>,
) {
    let mut principal: Arc<str> = Arc::from(session.principal());
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let max_bytes = broker.config.socket_request_max_bytes();
    // Frames are read into one reused buffer: each frame is split off it, and its memory comes
    // back once the last batch that points into it has been written.
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut produce_in_flight = false;
    loop {
        let mut prefix = [0u8; 4];
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = &mut closed => return,
            read = reader.read_exact(&mut prefix) => {
                if read.is_err() {
                    debug!(%peer, "connection closed by client");
                    return;
                }
            }
        }
        let len = match frame_len(prefix, max_bytes) {
            Ok(len) => len,
            Err(e) => {
                info!(%peer, error = %e, "closing connection");
                return;
            }
        };
        buf.reserve(len);
        while buf.len() < len {
            let want = (len - buf.len()) as u64;
            match (&mut reader).take(want).read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    debug!(%peer, "connection closed in the middle of a request");
                    return;
                }
                Ok(_) => {}
            }
        }
        let frame = buf.split_to(len).freeze();
        let started = Instant::now();
        let mut decoded = match dispatch::decode(frame, peer) {
            Ok(d) => d,
            Err(outcome) => {
                if !queue(&tx, Pending::Answer(Box::pin(async { outcome }))).await {
                    return;
                }
                continue;
            }
        };
        let (api_key, version) = (decoded.api_key, decoded.ctx.api_version);
        if sasl::intercepts(&session, api_key) {
            if !drain(&tx, &mut produce_in_flight).await {
                return;
            }
            match answer_sasl(broker, &tx, session, decoded).await {
                Some(next) => session = next,
                None => return,
            }
            principal = Arc::from(session.principal());
            continue;
        }
        decoded.ctx.principal = Arc::clone(&principal);
        decoded.ctx.listener = Arc::clone(&listener);
        if let RequestKind::Produce(request) = decoded.request {
            let answer = dispatch::submit_produce(broker, decoded.ctx, request).await;
            let metrics = Arc::clone(&broker.metrics);
            let answer = async move {
                let outcome = answer.await;
                metrics.observe_request(api_key, version, started.elapsed());
                outcome
            };
            produce_in_flight = true;
            if !queue(&tx, Pending::Answer(Box::pin(answer))).await {
                return;
            }
        } else {
            if !drain(&tx, &mut produce_in_flight).await {
                return;
            }
            let outcome = dispatch::handle(broker, decoded).await;
            broker
                .metrics
                .observe_request(api_key, version, started.elapsed());
            if !queue(&tx, Pending::Answer(Box::pin(async { outcome }))).await {
                return;
            }
        }
        if broker.is_shutting_down() {
            return;
        }
    }
}

/// Waits until every pipelined Produce before this request has been answered. False when
/// the connection is closing.
async fn drain(tx: &mpsc::Sender<Pending>, produce_in_flight: &mut bool) -> bool {
    if *produce_in_flight {
        let (done_tx, done_rx) = oneshot::channel();
        if !queue(tx, Pending::Barrier(done_tx)).await || done_rx.await.is_err() {
            return false;
        }
        *produce_in_flight = false;
    }
    true
}

/// Queues the answer to a request the SASL exchange intercepts (a failed login's after the
/// failure delay). The session goes on, or `None`: the connection closes after the answer.
async fn answer_sasl(
    broker: &Arc<Broker>,
    tx: &mpsc::Sender<Pending>,
    session: SaslSession,
    decoded: Decoded,
) -> Option<SaslSession> {
    let (session, answer, after) = sasl_exchange(broker, session, decoded).await;
    let delay = broker.config.failed_authentication_delay();
    let answer: Answer = match after {
        After::DelayThenClose => Box::pin(async move {
            tokio::time::sleep(delay).await;
            answer
        }),
        _ => Box::pin(async { answer }),
    };
    if !queue(tx, Pending::Answer(answer)).await {
        return None;
    }
    if after != After::GoOn {
        queue(tx, Pending::Linger(REFUSED_LINGER)).await;
        return None;
    }
    Some(session)
}

/// A SASL request, or any request but ApiVersions before the connection authenticated: the
/// answer, and what the connection does after it.
async fn sasl_exchange(
    broker: &Arc<Broker>,
    mut session: SaslSession,
    decoded: Decoded,
) -> (SaslSession, Outcome, After) {
    let Decoded {
        api_key,
        ctx,
        request,
    } = decoded;
    let (version, correlation_id) = (ctx.api_version, ctx.correlation_id);
    let (response, after) = match request {
        RequestKind::SaslHandshake(r) => {
            let (response, after) = sasl::handshake(&mut session, &r);
            (ResponseKind::SaslHandshake(response), after)
        }
        RequestKind::SaslAuthenticate(r) => {
            let (next, response, after) = sasl::authenticate(broker, session, r).await;
            session = next;
            (ResponseKind::SaslAuthenticate(response), after)
        }
        _ => {
            // Kafka closes such a connection without an answer.
            let reason = format!("{api_key:?} before SASL authentication");
            return (session, Outcome::Close(reason), After::Close);
        }
    };
    let outcome = dispatch::encode(api_key, version, correlation_id, &response);
    (session, outcome, after)
}

/// False when the responder has gone (the connection is closing).
async fn queue(tx: &mpsc::Sender<Pending>, pending: Pending) -> bool {
    tx.send(pending).await.is_ok()
}

async fn respond<W: AsyncWrite + Unpin>(
    write_half: W,
    mut rx: mpsc::Receiver<Pending>,
    peer: String,
    _closed: oneshot::Sender<()>,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
    while let Some(pending) = rx.recv().await {
        let answer = match pending {
            Pending::Barrier(done) => {
                if writer.flush().await.is_err() {
                    return;
                }
                let _ = done.send(());
                continue;
            }
            Pending::Linger(time) => {
                let _ = writer.flush().await;
                tokio::time::sleep(time).await;
                return;
            }
            Pending::Answer(answer) => answer,
        };
        match answer.await {
            Outcome::Respond(bytes) => {
                if writer.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Outcome::NoResponse => {}
            Outcome::Close(reason) => {
                info!(%peer, %reason, "closing connection");
                let _ = writer.flush().await;
                return;
            }
        }
        // Out now: the next answer may wait on a writer, and this one must not wait with it.
        if writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
}
