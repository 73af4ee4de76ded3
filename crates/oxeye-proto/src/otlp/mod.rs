//! OpenTelemetry Protocol (OTLP) messages, package `opentelemetry.proto.*.v1`.
//!
//! Source: <https://github.com/open-telemetry/opentelemetry-proto> (`opentelemetry/proto/**.proto`),
//! stable messages only (profiles are not included).

pub mod collector;
pub mod common;
pub mod logs;
pub mod metrics;
pub mod resource;
pub mod trace;
