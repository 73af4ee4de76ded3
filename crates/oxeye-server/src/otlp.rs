//! OTLP metrics ingest over HTTP (`POST /v1/metrics`, protobuf or JSON, optional gzip) and gRPC
//! (`opentelemetry.proto.collector.metrics.v1.MetricsService/Export`, h2c on 4317).
//!
//! Source: <https://opentelemetry.io/docs/specs/otlp/#otlphttp> and `#otlpgrpc`. Success is 200 with an
//! `ExportMetricsServiceResponse` in the request's content type; data points that cannot be stored are
//! reported in `partial_success` (never retried by clients); a malformed body is 400 with a
//! `google.rpc.Status` body (gRPC `INVALID_ARGUMENT`); an oversized body 413.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use oxeye_model::storage::ErrorKind;
use oxeye_proto::google_rpc;
use oxeye_proto::otlp::collector::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;

use crate::ServerState;
use crate::error::write_status;
use crate::ingest::{StoreOutcome, store_otlp_metrics};
use crate::remote_write::ingest_status;

/// The gRPC path of the metrics Export method.
const METRICS_EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

pub(crate) fn http_routes() -> Router<Arc<ServerState>> {
    Router::new()
        .route("/v1/metrics", post(export_metrics_http))
        .route("/v1/logs", post(crate::loki_api::export_logs_http))
        .route("/v1/traces", post(crate::otlp_traces::export_traces_http))
        // Prometheus serves the same receiver here.
        .route("/api/v1/otlp/v1/metrics", post(export_metrics_http))
}

use oxeye_ingest::otlp::OtlpFormat as Encoding;

/// An OTLP/HTTP failure response: `google.rpc.Status` (code from the HTTP status: 400/413/415 →
/// INVALID_ARGUMENT, 429 → RESOURCE_EXHAUSTED, 503 → UNAVAILABLE, else INTERNAL) in the request's format, as
/// <https://opentelemetry.io/docs/specs/otlp/#failures-1> defines; shared by metrics, logs and traces.
pub(crate) fn status_body(encoding: Encoding, status: StatusCode, message: &str) -> Response {
    let code = match status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => 3, // INVALID_ARGUMENT
        StatusCode::TOO_MANY_REQUESTS => 8,                           // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14,                        // UNAVAILABLE
        StatusCode::UNSUPPORTED_MEDIA_TYPE => 3,
        _ => 13, // INTERNAL
    };
    match encoding {
        Encoding::Protobuf => {
            let body = google_rpc::Status { code, message: message.to_string(), details: Vec::new() }.encode_to_vec();
            (status, [(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response()
        }
        Encoding::Json => {
            let body = serde_json::json!({ "code": code, "message": message }).to_string();
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
    }
}

/// An OTLP/HTTP success response (<https://opentelemetry.io/docs/specs/otlp/#full-success-1>): the export
/// response message `protobuf` as is, or for JSON `{}` or `{"partialSuccess":{<rejected field>: "<count>",
/// "errorMessage": ..}}` (64-bit counts as strings, OTLP/JSON). `partial` is (rejected field name, count,
/// message), e.g. `("rejectedSpans", 1, "trace id must be 16 bytes")`.
pub(crate) fn success_body(encoding: Encoding, protobuf: Vec<u8>, partial: Option<(&str, i64, &str)>) -> Response {
    match encoding {
        Encoding::Protobuf => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-protobuf")], protobuf).into_response()
        }
        Encoding::Json => {
            let body = match partial {
                Some((field, rejected, message)) => {
                    serde_json::json!({ "partialSuccess": { field: rejected.to_string(), "errorMessage": message } })
                }
                None => serde_json::json!({}),
            };
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
    }
}

async fn export_metrics_http(State(state): State<Arc<ServerState>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let encoding = if content_type.starts_with("application/json") {
        Encoding::Json
    } else if content_type.starts_with("application/x-protobuf") || content_type.starts_with("application/protobuf") {
        Encoding::Protobuf
    } else {
        let response = status_body(
            Encoding::Json,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("unsupported Content-Type {content_type:?}: use application/x-protobuf or application/json"),
        );
        state.metrics.ingest_requests.add(&["otlp_http", "415"], 1);
        return response;
    };
    let content_encoding =
        headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok()).map(str::to_string);
    let max_bytes = state.options.max_request_body_bytes;
    let worker_state = state.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let decoded = oxeye_ingest::compression::decode_content_encoding(content_encoding.as_deref(), &body, max_bytes)
            .map_err(|error| (ingest_status(&error), error.to_string()))?;
        let request = match encoding {
            Encoding::Protobuf => ExportMetricsServiceRequest::decode(decoded.as_ref()).map_err(|error| {
                (StatusCode::BAD_REQUEST, format!("invalid OTLP protobuf ExportMetricsServiceRequest: {error}"))
            }),
            Encoding::Json => oxeye_ingest::otlp_json::decode_metrics_request_json(&decoded)
                .map_err(|error| (ingest_status(&error), error.to_string())),
        }?;
        store_otlp_metrics(&worker_state, &request, "otlp_http")
            .map_err(|(kind, message)| (write_status(kind), message))
    })
    .await
    .unwrap_or_else(|error| Err((StatusCode::INTERNAL_SERVER_ERROR, format!("ingest task failed: {error}"))));
    match outcome {
        Ok(outcome) => {
            state.metrics.ingest_requests.add(&["otlp_http", "200"], 1);
            let response = response_message(&outcome);
            let partial = response
                .partial_success
                .as_ref()
                .map(|partial| ("rejectedDataPoints", partial.rejected_data_points, partial.error_message.as_str()));
            success_body(encoding, response.encode_to_vec(), partial)
        }
        Err((status, message)) => {
            state.metrics.ingest_requests.add(&["otlp_http", status.as_str()], 1);
            status_body(encoding, status, &message)
        }
    }
}

fn response_message(outcome: &StoreOutcome) -> ExportMetricsServiceResponse {
    let partial_success = (outcome.rejected > 0).then(|| ExportMetricsPartialSuccess {
        rejected_data_points: i64::try_from(outcome.rejected).unwrap_or(i64::MAX),
        error_message: outcome.message.clone(),
    });
    ExportMetricsServiceResponse { partial_success }
}

/// The unary Export method as a tonic service.
#[derive(Clone)]
struct MetricsExport {
    state: Arc<ServerState>,
}

impl tonic::server::UnaryService<ExportMetricsServiceRequest> for MetricsExport {
    type Response = ExportMetricsServiceResponse;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Self::Response>, tonic::Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<ExportMetricsServiceRequest>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let message = request.into_inner();
            let worker_state = state.clone();
            let outcome = tokio::task::spawn_blocking(move || store_otlp_metrics(&worker_state, &message, "otlp_grpc"))
                .await
                .unwrap_or_else(|error| Err((ErrorKind::Internal, format!("ingest task failed: {error}"))));
            match outcome {
                Ok(outcome) => {
                    state.metrics.ingest_requests.add(&["otlp_grpc", "OK"], 1);
                    Ok(tonic::Response::new(response_message(&outcome)))
                }
                Err((kind, message)) => {
                    let status = match kind {
                        ErrorKind::BadData | ErrorKind::Invalid => tonic::Status::invalid_argument(message),
                        ErrorKind::Limit => tonic::Status::resource_exhausted(message),
                        ErrorKind::Unavailable => tonic::Status::unavailable(message),
                        ErrorKind::Internal => tonic::Status::internal(message),
                    };
                    state.metrics.ingest_requests.add(&["otlp_grpc", &format!("{:?}", status.code())], 1);
                    Err(status)
                }
            }
        })
    }
}

/// Routes gRPC requests by path to the unary services; unknown methods get `UNIMPLEMENTED`.
#[derive(Clone)]
struct GrpcRouter {
    state: Arc<ServerState>,
}

impl tower::Service<axum::http::Request<Body>> for GrpcRouter {
    type Response = axum::http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<Body>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let max_bytes = state.options.max_request_body_bytes;
            if request.uri().path() == METRICS_EXPORT_PATH {
                return Ok(unary(MetricsExport { state }, request, max_bytes).await);
            }
            if request.uri().path() == oxeye_proto::otlp::collector::TRACE_SERVICE_EXPORT_PATH {
                return Ok(unary(crate::otlp_traces::TracesExport { state }, request, max_bytes).await);
            }
            if request.uri().path() == oxeye_proto::otlp::collector::LOGS_SERVICE_EXPORT_PATH {
                return Ok(unary(crate::loki_api::LogsExport { state }, request, max_bytes).await);
            }
            let status = tonic::Status::unimplemented(format!("unknown method {}", request.uri().path()));
            Ok(status.into_http::<Body>())
        })
    }
}

/// Runs one unary Export call. A request body that does not decode is the client's fault, so its status
/// becomes `INVALID_ARGUMENT` (OTLP: permanent, not retried) instead of tonic's `INTERNAL`, which clients
/// would retry forever.
async fn unary<Service, Message>(
    service: Service,
    request: axum::http::Request<Body>,
    max_bytes: usize,
) -> axum::http::Response<Body>
where
    Service: tonic::server::UnaryService<Message>,
    Service::Response: prost::Message + Send + 'static,
    Message: prost::Message + Default + Send + 'static,
{
    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Service::Response, Message>::default())
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(max_bytes);
    let mut response = grpc.unary(service, request).await.map(Body::new);
    let headers = response.headers_mut();
    let is_internal = headers.get("grpc-status").is_some_and(|status| status == "13");
    let is_decode_error = headers
        .get("grpc-message")
        .and_then(|message| message.to_str().ok())
        .is_some_and(|message| message.contains("decode"));
    if is_internal && is_decode_error {
        headers.insert("grpc-status", axum::http::HeaderValue::from_static("3"));
    }
    response
}

/// Serves OTLP/gRPC (h2c) on `listener` until `stop` resolves.
pub(crate) async fn serve_grpc(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    stop: impl Future<Output = ()> + Send + 'static,
    address: SocketAddr,
) -> Result<(), crate::ServeError> {
    let app = Router::new().fallback_service(GrpcRouter { state });
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|error| crate::ServeError::Serve { address, message: error.to_string() })
}
