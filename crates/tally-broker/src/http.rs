//! The broker's HTTP listener (`http.listeners`, default `127.0.0.1:9644`, empty for none):
//! `/metrics` in the Prometheus (OpenMetrics) text format, `/healthz` (the process is alive),
//! `/readyz` (recovery finished and clients served; 503 before), and the web console: the page
//! at `/`, its data at `/api/overview` (JSON) and `/api/events` (the same, as server-sent
//! events every second). It is bound before recovery starts, so that probes can watch a long
//! recovery.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::console;

/// How often `/api/events` sends the overview.
const EVENT_INTERVAL: Duration = Duration::from_secs(1);

/// Set once the broker has recovered and serves clients.
pub struct HttpState {
    broker: OnceLock<Arc<Broker>>,
    started: Instant,
}

impl Default for HttpState {
    fn default() -> Self {
        HttpState {
            broker: OnceLock::new(),
            started: Instant::now(),
        }
    }
}

impl HttpState {
    pub fn set_ready(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }
}

/// A bound HTTP listener serving in the background.
pub struct HttpServer {
    pub local_addr: SocketAddr,
    pub state: Arc<HttpState>,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<HttpServer> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(HttpState::default());
        let app = router(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(HttpServer {
            local_addr,
            state,
            task,
        })
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(|| async { Html(console::CONSOLE_HTML) }))
        .route("/api/overview", get(overview))
        .route("/api/events", get(events))
        .with_state(state)
}

const RECOVERING: (StatusCode, &str) = (StatusCode::SERVICE_UNAVAILABLE, "recovering\n");

async fn readyz(State(state): State<Arc<HttpState>>) -> (StatusCode, &'static str) {
    match state.broker.get() {
        Some(b) if !b.is_shutting_down() => (StatusCode::OK, "ready\n"),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
        None => RECOVERING,
    }
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let Some(broker) = state.broker.get().cloned() else {
        return RECOVERING.into_response();
    };
    // Reads /proc and walks every partition: off the async workers.
    match tokio::task::spawn_blocking(move || crate::metrics::render(&broker)).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn overview(State(state): State<Arc<HttpState>>) -> Response {
    let Some(broker) = state.broker.get().cloned() else {
        return RECOVERING.into_response();
    };
    let overview = console::overview(&broker, state.started).await;
    match serde_json::to_string(&overview) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The overview now and then every [`EVENT_INTERVAL`], until the broker shuts down or the
/// client goes away (axum drops the stream).
async fn events(State(state): State<Arc<HttpState>>) -> Response {
    let Some(broker) = state.broker.get().cloned() else {
        return RECOVERING.into_response();
    };
    let started = state.started;
    let stream = futures_util::stream::unfold((broker, true), move |(broker, first)| async move {
        if !first {
            tokio::time::sleep(EVENT_INTERVAL).await;
        }
        if broker.is_shutting_down() {
            return None;
        }
        let overview = console::overview(&broker, started).await;
        let json = serde_json::to_string(&overview).unwrap_or_default();
        let event = Event::default().event("overview").data(json);
        Some((Ok::<_, Infallible>(event), (broker, false)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readyz_is_503_until_the_broker_is_ready() {
        let state = Arc::new(HttpState::default());
        assert_eq!(
            readyz(State(Arc::clone(&state))).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let metrics = metrics(State(Arc::clone(&state))).await;
        assert_eq!(metrics.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
