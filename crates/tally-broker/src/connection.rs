//! One client connection: read a frame, handle it, write the answer, in order. Requests on a
//! connection are handled strictly one at a time (as Kafka does by muting the socket), which
//! is what keeps a pipelining idempotent producer's batches in sequence.

use std::sync::Arc;

use bytes::BytesMut;
use tally_protocol::frame::frame_len;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::watch;
use tracing::{debug, info};

use crate::broker::Broker;
use crate::dispatch::{handle_frame, Outcome};

/// Serves one connection given as its two halves (a TCP stream's, or a simulated one's).
pub async fn run_connection<R, W>(
    broker: Arc<Broker>,
    read_half: R,
    write_half: W,
    peer: String,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::with_capacity(64 * 1024, read_half);
    let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
    let max_bytes = broker.config.socket_request_max_bytes();
    loop {
        let mut prefix = [0u8; 4];
        tokio::select! {
            _ = shutdown.changed() => return,
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
        let mut body = BytesMut::zeroed(len);
        if reader.read_exact(&mut body).await.is_err() {
            debug!(%peer, "connection closed in the middle of a request");
            return;
        }
        match handle_frame(&broker, body.freeze(), &peer).await {
            Outcome::Respond(bytes) => {
                if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
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
        if broker.is_shutting_down() {
            return;
        }
    }
}
