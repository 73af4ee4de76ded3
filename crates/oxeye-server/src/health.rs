//! Liveness and readiness: `/healthz` and `/-/healthy` answer 200 while the process serves; `/readyz` and
//! `/-/ready` answer 200 once the WAL is replayed and the storage takes queries, 503 before.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::ServerState;

pub(crate) fn routes() -> Router<Arc<ServerState>> {
    Router::new()
        .route("/healthz", get(healthy))
        .route("/-/healthy", get(healthy))
        .route("/readyz", get(ready))
        .route("/-/ready", get(ready))
}

async fn healthy() -> (StatusCode, &'static str) {
    (StatusCode::OK, "OK\n")
}

async fn ready(State(state): State<Arc<ServerState>>) -> (StatusCode, &'static str) {
    if state.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: WAL replay in progress\n")
    }
}
