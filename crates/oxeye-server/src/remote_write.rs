//! Prometheus remote_write receiver: `POST /api/v1/write`, snappy block-compressed protobuf.
//!
//! Source: <https://prometheus.io/docs/specs/prw/remote_write_spec/> and Prometheus'
//! `storage/remote/write_handler.go`: 204 on success; 400 with a plain-text reason for data that can never
//! be stored (malformed body, invalid labels, out-of-order or too-old samples), in which case nothing of the
//! request is stored; 415 for an unsupported remote-write message type; 5xx when the store fails, which
//! senders retry.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::ServerState;
use crate::error::write_status;
use crate::ingest::{refusal_message, store_write_request};
use oxeye_ingest::remote_write::RemoteWriteVersion;

pub(crate) fn routes() -> Router<Arc<ServerState>> {
    Router::new().route("/api/v1/write", post(write))
}

async fn write(State(state): State<Arc<ServerState>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    let Some(version) = oxeye_ingest::remote_write::version_from_content_type(content_type) else {
        state.metrics.ingest_requests.add(&["remote_write", "415"], 1);
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported Content-Type {:?}: send application/x-protobuf with proto=prometheus.WriteRequest or \
                 proto=io.prometheus.write.v2.Request\n",
                content_type.unwrap_or("")
            ),
        )
            .into_response();
    };
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok())
        && !encoding.eq_ignore_ascii_case("snappy")
    {
        state.metrics.ingest_requests.add(&["remote_write", "415"], 1);
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {encoding:?}: remote write bodies are snappy block compressed\n"),
        )
            .into_response();
    }
    let max_bytes = state.options.max_request_body_bytes;
    let worker_state = state.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut buffer = DECODE_BUFFER.take();
        let outcome = decode_and_store(&worker_state, &body, version, max_bytes, &mut buffer);
        if buffer.len() <= MAX_KEPT_DECODE_BUFFER_BYTES {
            DECODE_BUFFER.set(buffer);
        }
        outcome
    })
    .await
    .unwrap_or_else(|error| Err((StatusCode::INTERNAL_SERVER_ERROR, format!("ingest task failed: {error}"))));
    match outcome {
        Ok((samples, exemplars)) => {
            state.metrics.ingest_requests.add(&["remote_write", "204"], 1);
            let mut response = StatusCode::NO_CONTENT.into_response();
            if version == RemoteWriteVersion::V2 {
                let headers = response.headers_mut();
                for (name, value) in [
                    ("x-prometheus-remote-write-samples-written", samples),
                    ("x-prometheus-remote-write-histograms-written", 0),
                    ("x-prometheus-remote-write-exemplars-written", exemplars),
                ] {
                    headers.insert(name, HeaderValue::from(value));
                }
            }
            response
        }
        Err((status, message)) => {
            state.metrics.ingest_requests.add(&["remote_write", status.as_str()], 1);
            (status, format!("{message}\n")).into_response()
        }
    }
}

thread_local! {
    /// The blocking thread's snappy output buffer, reused by its next request (see
    /// `oxeye_ingest::compression::decode_snappy_reusing`).
    static DECODE_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Decode buffers up to this size are kept for the thread's next request; a rare huge request does not
/// pin its memory.
const MAX_KEPT_DECODE_BUFFER_BYTES: usize = 8 << 20;

/// Decompresses, decodes and stores one request (blocking). Returns `(samples, exemplars)` stored.
fn decode_and_store(
    state: &ServerState,
    body: &[u8],
    version: RemoteWriteVersion,
    max_bytes: usize,
    buffer: &mut Vec<u8>,
) -> Result<(u64, u64), (StatusCode, String)> {
    let decoded = oxeye_ingest::compression::decode_snappy_reusing(body, max_bytes, buffer)
        .map_err(|error| (ingest_status(&error), error.to_string()))?;
    // The appender exists before decoding so that the decoder can find known series by their raw label
    // bytes (see `Appender::hold_protobuf_labels_batch`). A store that is not ready yet still lets a
    // malformed request get its 400 first.
    let mut appender = state.storage().ok().map(|storage| storage.appender());
    let view = match (version, appender.as_mut()) {
        (RemoteWriteVersion::V1, Some(appender)) => {
            oxeye_ingest::remote_write::decode_write_request_with_known_series(decoded, &mut |keys, found| {
                appender.hold_protobuf_labels_batch(keys, found)
            })
        }
        (RemoteWriteVersion::V1, None) => oxeye_ingest::remote_write::decode_write_request(decoded),
        (RemoteWriteVersion::V2, _) => oxeye_ingest::remote_write::decode_write_request_v2(decoded),
    }
    .map_err(|error| (ingest_status(&error), error.to_string()))?;
    if let Some(first) = view.rejected().first() {
        let more = view.rejected().len() as u64 - 1;
        let message = refusal_message(first, more, "invalid series");
        state.metrics.ingest_rejected_samples.add(&["remote_write", "invalid"], view.rejected_samples());
        return Err((StatusCode::BAD_REQUEST, message));
    }
    let appender = match appender {
        Some(appender) => appender,
        None => {
            let error = state.storage().err().map(|error| error.message).unwrap_or_default();
            return Err((write_status(oxeye_model::storage::ErrorKind::Unavailable), error));
        }
    };
    store_write_request(state, appender, &view).map_err(|(kind, message)| (write_status(kind), message))
}

/// The status for a decoding error: 413 over the size cap, 415 for an unknown encoding, 400 otherwise.
pub(crate) fn ingest_status(error: &oxeye_ingest::IngestError) -> StatusCode {
    match error {
        oxeye_ingest::IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        oxeye_ingest::IngestError::UnsupportedEncoding { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        other => write_status(other.kind()),
    }
}
