//! Prometheus-compatible scraping for oxeye.
//!
//! In reading order:
//! - [`exposition`]: parsers for the Prometheus text format (0.0.4 and 1.0.0) and OpenMetrics 1.0, and
//!   the `Accept`/`Content-Type` negotiation that picks one.
//! - [`ScrapeError`]: the crate's one error type.

mod error;
pub mod exposition;

pub use error::ScrapeError;
