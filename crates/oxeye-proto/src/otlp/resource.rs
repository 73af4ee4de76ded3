//! `opentelemetry.proto.resource.v1`: the entity that produced the telemetry.

use super::common::KeyValue;

/// A resource: attributes such as `service.name`, `service.instance.id`, `host.name`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// `attributes = 1`.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// `dropped_attributes_count = 2`.
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}
