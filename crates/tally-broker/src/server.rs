//! The accept loop: one task per connection, at most `max.connections` at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::broker::Broker;
use crate::connection::run_connection;

pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(broker.config.max_connections()));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    warn!(%peer, limit = broker.config.max_connections(), "connection refused: max.connections reached");
                    drop(stream);
                    continue;
                };
                debug!(%peer, "connection accepted");
                let broker = Arc::clone(&broker);
                let shutdown = shutdown.clone();
                let _ = stream.set_nodelay(true);
                connections.spawn(async move {
                    let (read_half, write_half) = stream.into_split();
                    run_connection(broker, read_half, write_half, peer.to_string(), shutdown).await;
                    drop(permit);
                });
                // Reap finished connection tasks so the set does not grow without bound.
                while connections.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    // Let requests in progress finish; idle connections notice the shutdown and close.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.abort_all();
}
