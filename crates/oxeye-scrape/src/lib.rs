//! Prometheus-compatible scraping for oxeye.
//!
//! In reading order:
//! - [`config`]: `scrape_configs` entries in Prometheus' YAML shape ([`config::ScrapeConfig`]) with
//!   their defaults and `validate()`.
//! - [`relabel`]: `relabel_configs` and `metric_relabel_configs`.
//! - [`exposition`]: parsers for the Prometheus text format (0.0.4 and 1.0.0) and OpenMetrics 1.0, and
//!   the `Accept`/`Content-Type` negotiation that picks one.
//! - [`ScrapeManager`]: runs one task per target, appends to an
//!   [`oxeye_model::storage::MetricsStorage`], writes the report series and staleness markers, and
//!   reports target status ([`TargetsSnapshot`]) and counters ([`ScrapeStats`]).
//! - [`ScrapeError`]: the crate's one error type.
//!
//! HTTPS targets are scraped with rustls on the `ring` provider, verifying certificates against the
//! platform's roots plus `tls_config.ca_file`; client certificates are not supported.

pub mod config;
mod error;
pub mod exposition;
mod http_client;
mod manager;
pub mod relabel;
mod scrape_loop;
mod stats;
mod target;

pub use error::ScrapeError;
pub use manager::{ScrapeManager, ScrapeManagerOptions};
pub use stats::ScrapeStats;
pub use target::{DroppedTargetStatus, TargetHealth, TargetStatus, TargetsSnapshot};
