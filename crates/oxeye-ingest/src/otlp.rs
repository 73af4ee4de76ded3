//! OTLP/HTTP bodies of all three signals: the wire format from `Content-Type` and one decode function per
//! export request, protobuf or JSON. Metrics also have a translation into Prometheus series in
//! [`crate::otlp_metrics`]; traces and logs are decoded here into the `oxeye-proto` messages for their
//! stores to convert.

use crate::IngestError;
use oxeye_proto::otlp::collector::{ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest};
use prost::Message;

/// The wire format of an OTLP/HTTP body, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpFormat {
    /// `application/x-protobuf` (also the gRPC payload).
    Protobuf,
    /// `application/json`: OTLP/JSON.
    Json,
}

impl OtlpFormat {
    /// `application/x-protobuf` (or `application/protobuf`) → [`OtlpFormat::Protobuf`], `application/json`
    /// → [`OtlpFormat::Json`], parameters ignored; `None` for anything else (HTTP 415).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if media_type.eq_ignore_ascii_case("application/x-protobuf")
            || media_type.eq_ignore_ascii_case("application/protobuf")
        {
            Some(OtlpFormat::Protobuf)
        } else if media_type.eq_ignore_ascii_case("application/json") {
            Some(OtlpFormat::Json)
        } else {
            None
        }
    }

    /// The `Content-Type` to answer with (the request's own type, as OTLP/HTTP requires).
    pub fn content_type(self) -> &'static str {
        match self {
            OtlpFormat::Protobuf => "application/x-protobuf",
            OtlpFormat::Json => "application/json",
        }
    }
}

fn decode_protobuf<M: Message + Default>(body: &[u8], message_name: &str) -> Result<M, IngestError> {
    M::decode(body).map_err(|error| {
        let message = error.to_string();
        let reason = message.strip_prefix("failed to decode Protobuf message: ").unwrap_or(&message).to_string();
        IngestError::Protobuf { field: message_name.to_string(), reason }
    })
}

/// Decodes an `ExportMetricsServiceRequest` from an already decompressed body.
///
/// # Errors
/// [`IngestError::Protobuf`] (field `ExportMetricsServiceRequest`, reason from the protobuf decoder, e.g.
/// invalid UTF-8 or a truncated message) or [`IngestError::Json`] for a malformed body.
pub fn decode_metrics_request(body: &[u8], format: OtlpFormat) -> Result<ExportMetricsServiceRequest, IngestError> {
    match format {
        OtlpFormat::Protobuf => decode_protobuf(body, "ExportMetricsServiceRequest"),
        OtlpFormat::Json => crate::otlp_json::decode_metrics_request_json(body),
    }
}

/// Decodes an `ExportTraceServiceRequest` from an already decompressed body.
///
/// # Errors
/// [`IngestError::Protobuf`] (field `ExportTraceServiceRequest`) or [`IngestError::Json`].
pub fn decode_trace_request(body: &[u8], format: OtlpFormat) -> Result<ExportTraceServiceRequest, IngestError> {
    match format {
        OtlpFormat::Protobuf => decode_protobuf(body, "ExportTraceServiceRequest"),
        OtlpFormat::Json => crate::otlp_json::decode_trace_request_json(body),
    }
}

/// Decodes an `ExportLogsServiceRequest` from an already decompressed body.
///
/// # Errors
/// [`IngestError::Protobuf`] (field `ExportLogsServiceRequest`) or [`IngestError::Json`].
pub fn decode_logs_request(body: &[u8], format: OtlpFormat) -> Result<ExportLogsServiceRequest, IngestError> {
    match format {
        OtlpFormat::Protobuf => decode_protobuf(body, "ExportLogsServiceRequest"),
        OtlpFormat::Json => crate::otlp_json::decode_logs_request_json(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_content_type() {
        assert_eq!(OtlpFormat::from_content_type("application/x-protobuf"), Some(OtlpFormat::Protobuf));
        assert_eq!(OtlpFormat::from_content_type("application/json; charset=utf-8"), Some(OtlpFormat::Json));
        assert_eq!(OtlpFormat::from_content_type("text/plain"), None);
        assert_eq!(OtlpFormat::Json.content_type(), "application/json");
    }

    #[test]
    fn protobuf_errors_name_the_message() {
        let error = decode_trace_request(&[0x0a, 0x05, 0x01], OtlpFormat::Protobuf).expect_err("truncated");
        assert!(error.to_string().starts_with("protobuf: "), "{error}");
        assert!(error.to_string().ends_with("for field ExportTraceServiceRequest"), "{error}");
        let json = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"}}]}]}]}"#;
        let logs = decode_logs_request(json, OtlpFormat::Json).expect("json decodes");
        assert_eq!(logs.resource_logs[0].scope_logs[0].log_records.len(), 1);
    }
}
