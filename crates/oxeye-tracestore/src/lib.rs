//! oxeye's trace store: spans grouped by trace id, durable on acknowledgement, found by id in a few page
//! reads and scanned for search with block summaries that skip what cannot match.
//!
//! In reading order:
//! - [`TraceStoreOptions`]: directory, retention (default 30 days), when the head becomes a block.
//! - [`TraceStore`]: [`TraceStore::push_batches`] writes a WAL record (group commit: it returns once the
//!   record is fsynced) and adds the spans to the **head**, a map of recent traces in memory;
//!   [`TraceStore::drop_head_traces`] writes a tombstone and removes traces from the head (tail sampling);
//!   [`TraceStore::cut_block`] writes the head as an immutable **block** and deletes the WAL it covered;
//!   [`TraceStore::maintain`] cuts old heads and applies retention. It implements
//!   `oxeye_model::traces::{TraceWriter, TraceReader}`, which the server and the pipeline use.
//! - Blocks (`block` module): traces sorted by id in LZ4-compressed pages of a dictionary-encoded trace set
//!   (`encoding` module), a sorted trace-id index (binary search → one page read per block), and a summary
//!   per block (time range, service and span names, duration range, error flag, a bloom filter of string
//!   attributes) used by [`TraceStore::scan`] to skip blocks, and span columns (start, duration, service,
//!   name, kind, status of every span, each compressed apart) that [`TraceStore::scan_span_rows`] reads for
//!   TraceQL metrics without decoding pages.
//!
//! Every byte on disk is described in `docs/format.md`.
//!
//! ```
//! use oxeye_model::traces::{Attribute, Resource, ResourceSpans, ScopeSpans, Span, TraceReader, TraceWriter};
//! let dir = tempfile::tempdir().unwrap();
//! let store = oxeye_tracestore::TraceStore::open(oxeye_tracestore::TraceStoreOptions::new(dir.path())).unwrap();
//! let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
//! let span = Span { trace_id: [1; 16], span_id: [2; 8], name: "ticket.checkout".into(),
//!     start_time_unix_nano: now, end_time_unix_nano: now + 1_000, ..Span::default() };
//! let batch = ResourceSpans {
//!     resource: Resource { attributes: vec![Attribute::string("service.name", "boxoffice")], ..Resource::default() },
//!     scope_spans: vec![ScopeSpans { spans: vec![span], ..ScopeSpans::default() }],
//!     ..ResourceSpans::default()
//! };
//! assert_eq!(store.push(vec![batch]).unwrap().accepted_spans, 1); // fsynced when this returns
//! store.cut_block().unwrap();
//! let trace = store.trace_by_id(&[1; 16], None).unwrap().unwrap();
//! assert_eq!(trace.root().unwrap().1.name, "ticket.checkout");
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod block;
mod encoding;
mod error;
mod options;
mod store;
#[cfg(test)]
mod tests;

pub use block::BlockSummary;
pub use error::TraceStoreError;
pub use options::{
    DEFAULT_MAX_HEAD_AGE, DEFAULT_MAX_HEAD_SPANS, DEFAULT_PAGE_BYTES, DEFAULT_RETENTION,
    DEFAULT_WAL_SEGMENT_SIZE_BYTES, TraceStoreOptions,
};
pub use store::{TraceStore, TraceStoreStats};
