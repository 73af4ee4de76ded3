//! The Loki API family: push (`/loki/api/v1/push`, JSON or snappy protobuf, optional gzip), OTLP logs
//! (`/v1/logs`, `/otlp/v1/logs`, and the gRPC `LogsService/Export`). The query half of the Loki API is
//! in `loki_query.rs`.
//!
//! Source: <https://grafana.com/docs/loki/latest/reference/loki-http-api/>. Errors are plain text bodies
//! with 400 (bad data), 429, 500 or 503, as Loki answers.

use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use oxeye_model::logs::{LogPushSummary, LogStorage, LogStream};
use oxeye_model::storage::ErrorKind;
use oxeye_proto::otlp::collector::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse};
use prost::Message;

use crate::ServerState;
use crate::error::write_status;

pub(crate) fn routes() -> Router<Arc<ServerState>> {
    Router::new().route("/loki/api/v1/push", post(push)).route("/otlp/v1/logs", post(export_logs_http))
}

/// A Loki API error: status and plain-text body.
struct LokiError {
    status: StatusCode,
    message: String,
}

impl LokiError {
    fn bad_request(message: impl Into<String>) -> Self {
        LokiError { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    fn from_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        LokiError { status: write_status(kind), message: message.into() }
    }
}

impl From<oxeye_model::storage::StorageError> for LokiError {
    fn from(error: oxeye_model::storage::StorageError) -> Self {
        LokiError::from_kind(error.kind(), error.to_string())
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", self.message))
            .into_response()
    }
}

fn log_storage(state: &ServerState) -> Result<Arc<dyn LogStorage>, LokiError> {
    state.log_storage().cloned().ok_or_else(|| LokiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "log storage is starting up (WAL replay in progress)".into(),
    })
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LokiError> + Send + 'static,
) -> Result<T, LokiError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|error| {
        Err(LokiError { status: StatusCode::INTERNAL_SERVER_ERROR, message: format!("query task failed: {error}") })
    })
}

/// PII redaction (crate `oxeye-pipeline`) of every decoded log stream, after decoding and before the WAL:
/// each entry's line (a Loki line, or an OTLP body: a string as is, a map as its JSON object) and its
/// structured metadata values (OTLP attributes and non-label resource attributes) go through the server's
/// [`oxeye_pipeline::Redactor`]. Stream labels are the stream's identity and are left alone.
pub(crate) fn redact_log_streams_before_append(state: &ServerState, mut streams: Vec<LogStream>) -> Vec<LogStream> {
    state.log_redactor().redact_log_streams(&mut streams);
    streams
}

/// Redacts the attributes of an OTLP logs request (resource, scope and log record attributes, at every
/// depth of kvlist and array values) under their original dotted keys, before they are flattened into
/// structured metadata names (`http.request.header.authorization` becomes `http_request_header_authorization`,
/// whose last `.` segment no longer names the sensitive key). Bodies are redacted after the conversion, as
/// lines: a map body becomes its JSON object, which keeps its keys.
pub(crate) fn redact_otlp_log_attributes(redactor: &oxeye_pipeline::Redactor, request: &mut ExportLogsServiceRequest) {
    if !redactor.options().enabled {
        return;
    }
    for resource_logs in &mut request.resource_logs {
        if let Some(resource) = &mut resource_logs.resource {
            redact_key_values(redactor, &mut resource.attributes);
        }
        for scope_logs in &mut resource_logs.scope_logs {
            if let Some(scope) = &mut scope_logs.scope {
                redact_key_values(redactor, &mut scope.attributes);
            }
            for record in &mut scope_logs.log_records {
                redact_key_values(redactor, &mut record.attributes);
            }
        }
    }
}

fn redact_key_values(redactor: &oxeye_pipeline::Redactor, attributes: &mut [oxeye_proto::otlp::common::KeyValue]) {
    for attribute in attributes {
        if let Some(value) = &mut attribute.value {
            redact_any_value(redactor, &attribute.key, value);
        }
    }
}

fn redact_any_value(redactor: &oxeye_pipeline::Redactor, key: &str, value: &mut oxeye_proto::otlp::common::AnyValue) {
    use oxeye_proto::otlp::common::any_value::Value;
    let replace_whole = |value: &mut oxeye_proto::otlp::common::AnyValue| {
        // `redact_attribute` replaces the text of a sensitive key and counts the redaction under its rule.
        let mut text = String::from("value");
        redactor.redact_attribute(key, &mut text);
        value.value = Some(Value::StringValue(text));
    };
    match &mut value.value {
        Some(Value::StringValue(text)) => {
            redactor.redact_attribute(key, text);
        }
        Some(Value::IntValue(integer)) if redactor.redact_integer(Some(key), *integer) => {
            value.value = Some(Value::StringValue(oxeye_pipeline::redaction::REDACTED.to_string()));
        }
        Some(Value::KvlistValue(list)) => {
            if redactor.is_sensitive_key(key) {
                replace_whole(value);
            } else {
                redact_key_values(redactor, &mut list.values);
            }
        }
        Some(Value::ArrayValue(array)) => {
            if redactor.is_sensitive_key(key) {
                replace_whole(value);
            } else {
                for element in &mut array.values {
                    redact_any_value(redactor, key, element);
                }
            }
        }
        Some(Value::BoolValue(_) | Value::DoubleValue(_) | Value::BytesValue(_)) if redactor.is_sensitive_key(key) => {
            replace_whole(value);
        }
        Some(Value::IntValue(_) | Value::BoolValue(_) | Value::DoubleValue(_) | Value::BytesValue(_)) | None => {}
    }
}

/// Writes `oxeye_redactions_total{rule="..."}`: values or text spans each redaction rule replaced in log
/// lines, structured metadata and OTLP bodies since start (every rule listed, zeros included).
pub(crate) fn write_redaction_metrics(writer: &mut crate::MetricsWriter, state: &ServerState) {
    let name = "oxeye_redactions_total";
    writer.family(name, "Values or text spans replaced by PII redaction before the WAL, by rule.", "counter");
    for rule in state.log_redactor().stats().by_rule {
        writer.sample(name, &[("rule", &rule.rule)], rule.redactions as f64);
    }
}

/// Redacts and stores decoded streams: the one path of every log ingest protocol into the log store.
fn store_streams(state: &ServerState, streams: Vec<LogStream>) -> Result<LogPushSummary, LokiError> {
    let storage = log_storage(state)?;
    let streams = redact_log_streams_before_append(state, streams);
    Ok(storage.push(streams)?)
}

fn rejection_message(summary: &LogPushSummary) -> Option<String> {
    (summary.rejected() > 0).then(|| {
        format!(
            "{} entries rejected ({} too old, {} too long, {} invalid stream); first: {}",
            summary.rejected(),
            summary.rejected_too_old,
            summary.rejected_too_long,
            summary.rejected_invalid,
            summary.first_error.as_deref().unwrap_or("")
        )
    })
}

async fn push(State(state): State<Arc<ServerState>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let content_encoding =
        headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok()).map(str::to_string);
    let max_bytes = state.options.max_request_body_bytes;
    let worker_state = state.clone();
    let outcome = blocking(move || {
        let is_protobuf =
            content_type.starts_with("application/x-protobuf") || content_type.starts_with("application/protobuf");
        let streams = if is_protobuf {
            // The protobuf body is a snappy block; a gzip Content-Encoding may wrap it.
            let unwrapped = match content_encoding.as_deref() {
                Some("gzip") | Some("x-gzip") => oxeye_ingest::compression::decode_gzip(&body, max_bytes)
                    .map_err(|error| LokiError::from_kind(error.kind(), error.to_string()))?,
                _ => body.to_vec(),
            };
            oxeye_ingest::loki_push::decode_push_protobuf(&unwrapped, max_bytes)
        } else if content_type.starts_with("application/json") || content_type.is_empty() {
            let decoded =
                oxeye_ingest::compression::decode_content_encoding(content_encoding.as_deref(), &body, max_bytes)
                    .map_err(|error| LokiError::from_kind(error.kind(), error.to_string()))?;
            oxeye_ingest::loki_push::decode_push_json(&decoded)
        } else {
            return Err(LokiError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: format!(
                    "unsupported Content-Type {content_type:?}: use application/json or application/x-protobuf"
                ),
            });
        }
        .map_err(|error| LokiError::from_kind(error.kind(), error.to_string()))?;
        store_streams(&worker_state, streams)
    })
    .await;
    match outcome {
        Ok(summary) => {
            state.metrics.ingest_requests.add(&["loki_push", "204"], 1);
            match rejection_message(&summary) {
                Some(message) => LokiError::bad_request(message).into_response(),
                None => StatusCode::NO_CONTENT.into_response(),
            }
        }
        Err(error) => {
            state.metrics.ingest_requests.add(&["loki_push", error.status.as_str()], 1);
            error.into_response()
        }
    }
}

/// The OTLP/HTTP body format for `is_json`.
fn otlp_format(is_json: bool) -> oxeye_ingest::otlp::OtlpFormat {
    if is_json { oxeye_ingest::otlp::OtlpFormat::Json } else { oxeye_ingest::otlp::OtlpFormat::Protobuf }
}

fn logs_response(summary: &LogPushSummary) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: rejection_message(summary).map(|message| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(summary.rejected()).unwrap_or(i64::MAX),
            error_message: message,
        }),
    }
}

/// `POST /v1/logs` (and Loki's `/otlp/v1/logs`): OTLP/HTTP logs, protobuf or JSON, optional gzip.
pub(crate) async fn export_logs_http(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("").to_string();
    let is_json = content_type.starts_with("application/json");
    let is_protobuf =
        content_type.starts_with("application/x-protobuf") || content_type.starts_with("application/protobuf");
    if !is_json && !is_protobuf {
        return crate::otlp::status_body(
            oxeye_ingest::otlp::OtlpFormat::Json,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("unsupported Content-Type {content_type:?}: use application/x-protobuf or application/json"),
        );
    }
    let content_encoding =
        headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok()).map(str::to_string);
    let max_bytes = state.options.max_request_body_bytes;
    let worker_state = state.clone();
    let outcome = blocking(move || {
        let decoded = oxeye_ingest::compression::decode_content_encoding(content_encoding.as_deref(), &body, max_bytes)
            .map_err(|error| LokiError::from_kind(error.kind(), error.to_string()))?;
        let format =
            if is_json { oxeye_ingest::otlp::OtlpFormat::Json } else { oxeye_ingest::otlp::OtlpFormat::Protobuf };
        let mut request = oxeye_ingest::otlp::decode_logs_request(&decoded, format)
            .map_err(|error| LokiError::from_kind(error.kind(), error.to_string()))?;
        redact_otlp_log_attributes(worker_state.log_redactor(), &mut request);
        store_streams(&worker_state, oxeye_ingest::otlp_logs::otlp_logs_to_streams(&request))
    })
    .await;
    match outcome {
        Ok(summary) => {
            state.metrics.ingest_requests.add(&["otlp_logs_http", "200"], 1);
            let response = logs_response(&summary);
            let partial = response
                .partial_success
                .as_ref()
                .map(|partial| ("rejectedLogRecords", partial.rejected_log_records, partial.error_message.as_str()));
            crate::otlp::success_body(otlp_format(is_json), response.encode_to_vec(), partial)
        }
        Err(error) => {
            state.metrics.ingest_requests.add(&["otlp_logs_http", error.status.as_str()], 1);
            crate::otlp::status_body(otlp_format(is_json), error.status, &error.message)
        }
    }
}

/// The unary `LogsService/Export` method as a tonic service.
#[derive(Clone)]
pub(crate) struct LogsExport {
    pub(crate) state: Arc<ServerState>,
}

impl tonic::server::UnaryService<ExportLogsServiceRequest> for LogsExport {
    type Response = ExportLogsServiceResponse;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Self::Response>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<ExportLogsServiceRequest>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let mut message = request.into_inner();
            let worker_state = state.clone();
            let outcome = blocking(move || {
                redact_otlp_log_attributes(worker_state.log_redactor(), &mut message);
                store_streams(&worker_state, oxeye_ingest::otlp_logs::otlp_logs_to_streams(&message))
            })
            .await;
            match outcome {
                Ok(summary) => {
                    state.metrics.ingest_requests.add(&["otlp_logs_grpc", "OK"], 1);
                    Ok(tonic::Response::new(logs_response(&summary)))
                }
                Err(error) => {
                    let status = match error.status {
                        StatusCode::BAD_REQUEST => tonic::Status::invalid_argument(error.message),
                        StatusCode::TOO_MANY_REQUESTS => tonic::Status::resource_exhausted(error.message),
                        StatusCode::SERVICE_UNAVAILABLE => tonic::Status::unavailable(error.message),
                        _ => tonic::Status::internal(error.message),
                    };
                    state.metrics.ingest_requests.add(&["otlp_logs_grpc", &format!("{:?}", status.code())], 1);
                    Err(status)
                }
            }
        })
    }
}
