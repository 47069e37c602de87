//! One TCP connection to a broker, pipelined: requests go out in the order they are submitted
//! and answers come back in that order (a protocol rule), matched by correlation id. A request
//! that times out closes the connection, as Kafka clients do, so nothing waits on an answer
//! that may never come.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::transport::Transport;

type Reply = oneshot::Sender<Result<Bytes, ClientError>>;

struct Outgoing {
    frame: Bytes,
    correlation_id: i32,
    reply: Option<Reply>,
}

struct Shared {
    addr: String,
    closed: AtomicBool,
    /// Answers expected, in the order their requests were written.
    pending: Mutex<VecDeque<(i32, Reply)>>,
    /// Why the connection closed, for the requests that fail because of it.
    close_reason: Mutex<Option<String>>,
    /// The reader and writer tasks: aborted on close, which drops (closes) the socket.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Shared {
    fn close(&self, reason: String) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        *self.close_reason.lock().expect("lock") = Some(reason.clone());
        let pending: Vec<(i32, Reply)> = self.pending.lock().expect("lock").drain(..).collect();
        for (_, reply) in pending {
            let _ = reply.send(Err(ClientError::Network {
                addr: self.addr.clone(),
                reason: reason.clone(),
            }));
        }
        for task in self.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    fn error(&self) -> ClientError {
        ClientError::Network {
            addr: self.addr.clone(),
            reason: self
                .close_reason
                .lock()
                .expect("lock")
                .clone()
                .unwrap_or_else(|| "connection closed".into()),
        }
    }
}

pub struct BrokerConnection {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Outgoing>,
    next_correlation_id: AtomicI32,
    client_id: String,
    /// The broker's ApiVersions: api key -> (min, max).
    versions: BTreeMap<i16, (i16, i16)>,
    /// The broker's finalized `transaction.version` feature level (0 when it has none).
    transaction_version: i16,
    tasks: [JoinHandle<()>; 2],
}

const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

impl BrokerConnection {
    /// Connects, asks the broker which API versions it serves, and logs in with SASL when
    /// the config says so.
    pub async fn connect(
        addr: &str,
        config: &ClientConfig,
    ) -> Result<BrokerConnection, ClientError> {
        let connection = Self::open(
            addr,
            &config.client_id,
            config.connect_timeout(),
            config.request_timeout(),
            config.transport.as_ref(),
        )
        .await?;
        if let Some(sasl) = &config.sasl {
            crate::sasl_login::authenticate(&connection, sasl, config.request_timeout()).await?;
        }
        Ok(connection)
    }

    async fn open(
        addr: &str,
        client_id: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
        transport: &dyn Transport,
    ) -> Result<BrokerConnection, ClientError> {
        let network = |reason: String| ClientError::Network {
            addr: addr.to_string(),
            reason,
        };
        let (mut read_half, write_half) =
            tokio::time::timeout(connect_timeout, transport.connect(addr))
                .await
                .map_err(|_| {
                    network(format!(
                        "connect timed out after {} ms",
                        connect_timeout.as_millis()
                    ))
                })?
                .map_err(|e| network(e.to_string()))?;
        let shared = Arc::new(Shared {
            addr: addr.to_string(),
            closed: AtomicBool::new(false),
            pending: Mutex::new(VecDeque::new()),
            close_reason: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();

        let writer_shared = Arc::clone(&shared);
        let writer = tokio::spawn(async move {
            let mut writer = BufWriter::with_capacity(256 * 1024, write_half);
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                // Coalesce what is already queued into one write.
                while let Ok(next) = rx.try_recv() {
                    batch.push(next);
                }
                for out in batch {
                    if writer_shared.closed.load(Ordering::SeqCst) {
                        if let Some(reply) = out.reply {
                            let _ = reply.send(Err(writer_shared.error()));
                        }
                        continue;
                    }
                    if let Some(reply) = out.reply {
                        writer_shared
                            .pending
                            .lock()
                            .expect("lock")
                            .push_back((out.correlation_id, reply));
                    }
                    if let Err(e) = writer.write_all(&out.frame).await {
                        writer_shared.close(format!("write failed: {e}"));
                    }
                }
                if let Err(e) = writer.flush().await {
                    writer_shared.close(format!("write failed: {e}"));
                }
            }
        });

        let reader_shared = Arc::clone(&shared);
        let reader = tokio::spawn(async move {
            loop {
                let mut prefix = [0u8; 4];
                if let Err(e) = read_half.read_exact(&mut prefix).await {
                    reader_shared.close(format!("connection closed by the broker ({e})"));
                    return;
                }
                let size = i32::from_be_bytes(prefix);
                if size < 4 || size as usize > MAX_RESPONSE_BYTES {
                    reader_shared.close(format!("invalid response size {size}"));
                    return;
                }
                let frame = match read_frame(&mut read_half, size as usize).await {
                    Ok(frame) => frame,
                    Err(e) => {
                        reader_shared.close(format!("connection closed by the broker ({e})"));
                        return;
                    }
                };
                let correlation_id = i32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
                let next = reader_shared.pending.lock().expect("lock").pop_front();
                match next {
                    Some((expected, reply)) if expected == correlation_id => {
                        let _ = reply.send(Ok(frame));
                    }
                    Some((expected, reply)) => {
                        reader_shared
                            .pending
                            .lock()
                            .expect("lock")
                            .push_front((expected, reply));
                        reader_shared.close(format!(
                            "answer {correlation_id} arrived where {expected} was expected"
                        ));
                        return;
                    }
                    None => {
                        reader_shared.close(format!("unexpected answer {correlation_id}"));
                        return;
                    }
                }
            }
        });

        shared
            .tasks
            .lock()
            .expect("lock")
            .extend([writer.abort_handle(), reader.abort_handle()]);
        let mut connection = BrokerConnection {
            shared,
            tx,
            next_correlation_id: AtomicI32::new(1),
            client_id: client_id.to_string(),
            versions: BTreeMap::new(),
            transaction_version: 0,
            tasks: [writer, reader],
        };
        (connection.versions, connection.transaction_version) =
            connection.api_versions(request_timeout).await?;
        Ok(connection)
    }

    /// ApiVersions v3, falling back to v0 for brokers that answer UNSUPPORTED_VERSION: the
    /// version ranges, and the finalized `transaction.version` level.
    async fn api_versions(
        &self,
        timeout: Duration,
    ) -> Result<(BTreeMap<i16, (i16, i16)>, i16), ClientError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("tally-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut response: ApiVersionsResponse = self.send(&request, 3, timeout).await?;
        if response.error_code == tally_protocol::ResponseError::UnsupportedVersion.code() {
            response = self
                .send(&ApiVersionsRequest::default(), 0, timeout)
                .await?;
        }
        if response.error_code != 0 {
            return Err(ClientError::broker(
                response.error_code,
                Some("ApiVersions"),
            ));
        }
        // As Java's client: finalized features count only with an epoch of 0 or more.
        let transaction_version = response
            .finalized_features
            .iter()
            .filter(|_| response.finalized_features_epoch >= 0)
            .find(|f| &*f.name == tally_protocol::TRANSACTION_VERSION_FEATURE)
            .map_or(0, |f| f.max_version_level);
        let versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok((versions, transaction_version))
    }

    /// Whether the broker serves transaction version 2 (KIP-890 part 2): the finalized
    /// feature, and the request versions that carry it.
    pub fn supports_transaction_v2(&self) -> bool {
        let serves = |api: ApiKey, v: i16| self.version(api, v, v).is_ok();
        self.transaction_version >= 2
            && serves(ApiKey::EndTxn, 5)
            && serves(ApiKey::Produce, 12)
            && serves(ApiKey::TxnOffsetCommit, 5)
    }

    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    pub fn close(&self, reason: &str) {
        self.shared.close(reason.to_string());
    }

    /// The highest version both sides speak, between `ours_min` and `ours_max`.
    pub fn version(&self, api: ApiKey, ours_min: i16, ours_max: i16) -> Result<i16, ClientError> {
        let (theirs_min, theirs_max) = self
            .versions
            .get(&(api as i16))
            .copied()
            .ok_or_else(|| ClientError::Unsupported(format!("{api:?}")))?;
        let version = theirs_max.min(ours_max);
        if version < theirs_min.max(ours_min) {
            return Err(ClientError::Unsupported(format!(
                "{api:?} at a version this client speaks ({ours_min}-{ours_max}; broker {theirs_min}-{theirs_max})"
            )));
        }
        Ok(version)
    }

    fn encode<R: Request>(
        &self,
        request: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes, ClientError> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut buf = BytesMut::with_capacity(128);
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .and_then(|_| request.encode(&mut buf, version))
            .map_err(|e| ClientError::Protocol(format!("cannot encode request: {e}")))?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        Ok(buf.freeze())
    }

    /// Queues a request; the answer arrives on the returned receiver. Requests submitted from
    /// one task are written in submission order.
    pub fn submit<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<oneshot::Receiver<Result<Bytes, ClientError>>, ClientError> {
        if self.is_closed() {
            return Err(self.shared.error());
        }
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode(request, version, correlation_id)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Outgoing {
                frame,
                correlation_id,
                reply: Some(reply),
            })
            .map_err(|_| self.shared.error())?;
        Ok(rx)
    }

    /// Queues a request that gets no answer (Produce with acks=0).
    pub fn submit_without_answer<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<(), ClientError> {
        if self.is_closed() {
            return Err(self.shared.error());
        }
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode(request, version, correlation_id)?;
        self.tx
            .send(Outgoing {
                frame,
                correlation_id,
                reply: None,
            })
            .map_err(|_| self.shared.error())
    }

    /// Waits for a submitted request's answer and decodes it; a timeout closes the connection.
    pub async fn wait<R: Request>(
        &self,
        rx: oneshot::Receiver<Result<Bytes, ClientError>>,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        let frame = match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                self.close(&format!(
                    "request timed out after {} ms",
                    timeout.as_millis()
                ));
                return Err(ClientError::RequestTimeout {
                    addr: self.shared.addr.clone(),
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
            Ok(Err(_)) => return Err(self.shared.error()),
            Ok(Ok(result)) => result?,
        };
        decode_response::<R>(frame, version)
    }

    pub async fn send<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        let rx = self.submit(request, version)?;
        self.wait::<R>(rx, version, timeout).await
    }
}

/// Decodes an answer frame (without its size prefix): header, then body.
pub fn decode_response<R: Request>(frame: Bytes, version: i16) -> Result<R::Response, ClientError> {
    let mut bytes = frame;
    let header_version = if R::KEY == ApiKey::ApiVersions as i16 {
        0
    } else {
        <R::Response as HeaderVersion>::header_version(version)
    };
    ResponseHeader::decode(&mut bytes, header_version)
        .and_then(|_| R::Response::decode(&mut bytes, version))
        .map_err(|e| ClientError::Protocol(format!("cannot decode answer: {e}")))
        .and_then(|r| {
            if bytes.has_remaining() {
                Err(ClientError::Protocol(format!(
                    "{} bytes left after an answer",
                    bytes.remaining()
                )))
            } else {
                Ok(r)
            }
        })
}

impl Drop for BrokerConnection {
    fn drop(&mut self) {
        self.shared.close("connection dropped".into());
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Reads a frame of `size` bytes into spare capacity rather than a zeroed buffer: zeroing each
/// fetch response's megabytes cost a consumer as much as reading them.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, size: usize) -> std::io::Result<Bytes> {
    let mut frame = BytesMut::with_capacity(size);
    while frame.len() < size {
        let want = (size - frame.len()) as u64;
        if (&mut *r).take(want).read_buf(&mut frame).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(frame.freeze())
}
