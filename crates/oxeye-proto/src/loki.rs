//! Loki's push protocol (`logproto.PushRequest`, from Loki's `pkg/push/push.proto`), written from its field
//! numbers: the body of `POST /loki/api/v1/push` with `Content-Type: application/x-protobuf`, snappy
//! block compressed.

/// `PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    /// `streams = 1`.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `StreamAdapter`: one stream and its entries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// `labels = 1`: the label set as selector text, `{job="x", env="y"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// `entries = 2`.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// `hash = 3`: ignored by receivers.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Timestamp {
    /// `seconds = 1` since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// `nanos = 2`, 0..1e9.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `EntryAdapter`: one log entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    /// `timestamp = 1`.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    /// `line = 2`.
    #[prost(string, tag = "2")]
    pub line: String,
    /// `structuredMetadata = 3`.
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
    /// `parsed = 4` (read path only).
    #[prost(message, repeated, tag = "4")]
    pub parsed: Vec<LabelPairAdapter>,
}

/// `LabelPairAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    /// `name = 1`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `value = 2`.
    #[prost(string, tag = "2")]
    pub value: String,
}
