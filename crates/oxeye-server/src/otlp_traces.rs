//! OTLP traces ingest over HTTP (`POST /v1/traces`, protobuf or JSON, optional gzip) and gRPC
//! (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
//!
//! Source: <https://opentelemetry.io/docs/specs/otlp/#otlphttp>. Spans go through the trace writer slot
//! ([`ServerState::trace_writer`]), which `serve` fills with the trace store or with a pipeline (tail
//! sampling, span metrics) in front of it. Spans with invalid ids are refused one by one and reported in
//! `ExportTracePartialSuccess`; a malformed body is 400 (gRPC `INVALID_ARGUMENT`) and nothing is stored; no
//! trace writer yet is 503 (gRPC `UNAVAILABLE`), which clients retry.

use std::pin::Pin;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use oxeye_ingest::otlp::OtlpFormat;

use crate::otlp::{status_body, success_body};
use oxeye_model::storage::ErrorKind;
use oxeye_proto::otlp::collector::{ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;

use crate::ServerState;
use crate::error::write_status;

/// What a traces export stored and refused, summed over the decoder and the trace writer.
#[derive(Debug, Default)]
struct TraceExportOutcome {
    rejected_spans: u64,
    first_error: Option<String>,
}

/// An export failure: the HTTP status and its message.
struct ExportFailure {
    status: StatusCode,
    message: String,
}

impl ExportFailure {
    fn from_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        ExportFailure { status: write_status(kind), message: message.into() }
    }
}

/// Converts and stores one decoded request through the trace writer slot.
fn store_trace_request(
    state: &ServerState,
    request: ExportTraceServiceRequest,
) -> Result<TraceExportOutcome, ExportFailure> {
    let writer = state.trace_writer().cloned().ok_or_else(|| ExportFailure {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "trace storage is starting up (WAL replay in progress)".into(),
    })?;
    let conversion = oxeye_ingest::otlp_traces::otlp_traces_to_model(request);
    let mut outcome =
        TraceExportOutcome { rejected_spans: conversion.rejected_spans, first_error: conversion.first_error };
    if conversion.batches.is_empty() {
        return Ok(outcome);
    }
    let summary =
        writer.push(conversion.batches).map_err(|error| ExportFailure::from_kind(error.kind(), error.to_string()))?;
    state.metrics.ingest_samples.add(&["otlp_traces"], summary.accepted_spans);
    outcome.rejected_spans += summary.rejected_spans;
    if outcome.first_error.is_none() {
        outcome.first_error = summary.first_error;
    }
    Ok(outcome)
}

fn response_message(outcome: &TraceExportOutcome) -> ExportTraceServiceResponse {
    let partial_success = (outcome.rejected_spans > 0).then(|| ExportTracePartialSuccess {
        rejected_spans: i64::try_from(outcome.rejected_spans).unwrap_or(i64::MAX),
        error_message: format!(
            "{} spans rejected; first: {}",
            outcome.rejected_spans,
            outcome.first_error.as_deref().unwrap_or("invalid span")
        ),
    });
    ExportTraceServiceResponse { partial_success }
}

/// `POST /v1/traces`.
pub(crate) async fn export_traces_http(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let Some(format) = OtlpFormat::from_content_type(content_type) else {
        state.metrics.ingest_requests.add(&["otlp_traces_http", "415"], 1);
        return status_body(
            OtlpFormat::Json,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("unsupported Content-Type {content_type:?}: use application/x-protobuf or application/json"),
        );
    };
    let content_encoding =
        headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok()).map(str::to_string);
    let max_bytes = state.options.max_request_body_bytes;
    let worker_state = state.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let decoded = oxeye_ingest::compression::decode_content_encoding(content_encoding.as_deref(), &body, max_bytes)
            .map_err(|error| ExportFailure::from_kind(error.kind(), error.to_string()))?;
        let request = oxeye_ingest::otlp::decode_trace_request(&decoded, format)
            .map_err(|error| ExportFailure::from_kind(error.kind(), error.to_string()))?;
        store_trace_request(&worker_state, request)
    })
    .await
    .unwrap_or_else(|error| {
        Err(ExportFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("ingest task failed: {error}"),
        })
    });
    match outcome {
        Ok(outcome) => {
            state.metrics.ingest_requests.add(&["otlp_traces_http", "200"], 1);
            let response = response_message(&outcome);
            let partial = response
                .partial_success
                .as_ref()
                .map(|partial| ("rejectedSpans", partial.rejected_spans, partial.error_message.as_str()));
            success_body(format, response.encode_to_vec(), partial)
        }
        Err(failure) => {
            state.metrics.ingest_requests.add(&["otlp_traces_http", failure.status.as_str()], 1);
            status_body(format, failure.status, &failure.message)
        }
    }
}

/// The unary `TraceService/Export` method as a tonic service.
#[derive(Clone)]
pub(crate) struct TracesExport {
    pub(crate) state: Arc<ServerState>,
}

impl tonic::server::UnaryService<ExportTraceServiceRequest> for TracesExport {
    type Response = ExportTraceServiceResponse;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Self::Response>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<ExportTraceServiceRequest>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let message = request.into_inner();
            let worker_state = state.clone();
            let outcome = tokio::task::spawn_blocking(move || store_trace_request(&worker_state, message))
                .await
                .unwrap_or_else(|error| {
                    Err(ExportFailure {
                        status: StatusCode::INTERNAL_SERVER_ERROR,
                        message: format!("ingest task failed: {error}"),
                    })
                });
            match outcome {
                Ok(outcome) => {
                    state.metrics.ingest_requests.add(&["otlp_traces_grpc", "OK"], 1);
                    Ok(tonic::Response::new(response_message(&outcome)))
                }
                Err(failure) => {
                    let status = match failure.status {
                        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                            tonic::Status::invalid_argument(failure.message)
                        }
                        StatusCode::TOO_MANY_REQUESTS => tonic::Status::resource_exhausted(failure.message),
                        StatusCode::SERVICE_UNAVAILABLE => tonic::Status::unavailable(failure.message),
                        _ => tonic::Status::internal(failure.message),
                    };
                    state.metrics.ingest_requests.add(&["otlp_traces_grpc", &format!("{:?}", status.code())], 1);
                    Err(status)
                }
            }
        })
    }
}
