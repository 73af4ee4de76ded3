//! oxeye's network front: one HTTP listener for every API, plus OTLP on its standard ports.
//!
//! In reading order:
//! - [`ServerOptions`]: listeners and limits, built by the binary from the configuration file.
//! - [`ServerState`]: what handlers share: the metrics storage (set once the WAL is replayed, so
//!   `/readyz` and the APIs answer 503 until then), the PromQL engine, the scrape manager and self-metrics.
//! - [`router`]: the axum router of every HTTP API, testable in-process with `tower::ServiceExt::oneshot`.
//! - [`serve`]: binds the listeners and runs until the shutdown future resolves, then drains.
//!
//! Only this crate knows HTTP: handlers map each library error's `kind()` to a status code and to the
//! error body of the API family it belongs to (Prometheus envelope, plain text for remote_write,
//! `google.rpc.Status` for OTLP).
//!
//! ```no_run
//! # async fn example(state: std::sync::Arc<oxeye_server::ServerState>) {
//! let app = oxeye_server::router(state);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```

mod correlation_api;
mod error;
mod health;
mod ingest;
mod loki_api;
mod loki_query;
mod loki_tail;
mod otlp;
mod otlp_traces;
mod params;
mod prometheus_api;
mod query_json;
mod query_stats;
mod remote_write;
pub mod self_metrics;
mod tempo_api;
mod traceql_api;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use oxeye_model::logs::LogStorage;
use oxeye_model::storage::MetricsStorage;
use oxeye_model::traces::{TraceReader, TraceWriter};
use oxeye_promql::Engine;
use oxeye_scrape::ScrapeManager;

pub use error::ApiError;
pub use self_metrics::{MetricsWriter, SelfMetrics};

/// Listeners and limits of the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The listener for every HTTP API.
    pub listen: SocketAddr,
    /// OTLP/HTTP on its own port (4318), if on; the main listener serves `/v1/*` too.
    pub otlp_http_listen: Option<SocketAddr>,
    /// OTLP/gRPC (h2c, 4317), if on.
    pub otlp_grpc_listen: Option<SocketAddr>,
    /// The largest request body, compressed or decompressed, in bytes; larger gets 413.
    pub max_request_body_bytes: usize,
    /// The version string reported by buildinfo endpoints.
    pub version: String,
    /// Time retention as configured (e.g. `30d`), for `/api/v1/status/runtimeinfo`.
    pub storage_retention: String,
    /// Effective settings by Prometheus flag name (`storage.tsdb.path`...), for `/api/v1/status/flags`.
    pub flags: Vec<(String, String)>,
    /// The effective configuration as YAML, for `/api/v1/status/config`.
    pub config_yaml: String,
}

/// A function that appends store-specific metrics (head series, WAL fsync latency...) to `/metrics`.
pub type StorageMetricsFn = Box<dyn Fn(&mut MetricsWriter) + Send + Sync>;

/// What every handler shares.
pub struct ServerState {
    /// Listeners and limits.
    pub options: ServerOptions,
    storage: OnceLock<Arc<dyn MetricsStorage>>,
    scrape_manager: OnceLock<Arc<ScrapeManager>>,
    storage_metrics: OnceLock<StorageMetricsFn>,
    log_storage: OnceLock<Arc<dyn LogStorage>>,
    trace_writer: OnceLock<Arc<dyn TraceWriter>>,
    trace_reader: OnceLock<Arc<dyn TraceReader>>,
    log_redactor: OnceLock<oxeye_pipeline::Redactor>,
    extra_metrics: std::sync::Mutex<Vec<StorageMetricsFn>>,
    /// The PromQL engine.
    pub engine: Engine,
    /// oxeye's own counters and histograms.
    pub metrics: SelfMetrics,
    /// When the process started.
    pub started_at: SystemTime,
}

impl ServerState {
    /// A state that is not ready yet: the APIs answer 503 until [`ServerState::set_storage`] is called.
    pub fn new(options: ServerOptions, engine: Engine) -> Arc<Self> {
        Arc::new(ServerState {
            options,
            storage: OnceLock::new(),
            scrape_manager: OnceLock::new(),
            storage_metrics: OnceLock::new(),
            log_storage: OnceLock::new(),
            trace_writer: OnceLock::new(),
            trace_reader: OnceLock::new(),
            log_redactor: OnceLock::new(),
            extra_metrics: std::sync::Mutex::new(Vec::new()),
            engine,
            metrics: SelfMetrics::default(),
            started_at: SystemTime::now(),
        })
    }

    /// Marks the server ready with its storage (after WAL replay). Later calls are ignored.
    pub fn set_storage(&self, storage: Arc<dyn MetricsStorage>, storage_metrics: StorageMetricsFn) {
        let _ = self.storage.set(storage);
        let _ = self.storage_metrics.set(storage_metrics);
    }

    /// Attaches the log store (after its WAL replay); the Loki API answers 503 until then. Later calls
    /// are ignored.
    pub fn set_log_storage(&self, storage: Arc<dyn LogStorage>) {
        let _ = self.log_storage.set(storage);
    }

    /// Sets the redaction rules every log ingest path applies before the WAL. Until called (and when never
    /// called), the seeds' default rules apply ([`oxeye_pipeline::RedactionOptions::default`]). Later calls
    /// are ignored.
    pub fn set_log_redactor(&self, redactor: oxeye_pipeline::Redactor) {
        let _ = self.log_redactor.set(redactor);
    }

    /// The redactor log pushes go through: the one set by [`ServerState::set_log_redactor`], else the defaults.
    pub fn log_redactor(&self) -> &oxeye_pipeline::Redactor {
        self.log_redactor.get_or_init(oxeye_pipeline::Redactor::default_rules)
    }

    /// Adds a source of families to `/metrics` (a store's or a pipeline stage's counters), written after the
    /// storage's in the order added.
    pub fn add_metrics_source(&self, source: StorageMetricsFn) {
        self.extra_metrics.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(source);
    }

    /// Sets where OTLP trace exports go (`POST /v1/traces`, gRPC `TraceService/Export`): the trace store's
    /// writer, or a pipeline (tail sampling, span metrics) wrapping it. Until called, trace exports answer
    /// 503 / `UNAVAILABLE`. Later calls are ignored.
    pub fn set_trace_writer(&self, writer: Arc<dyn TraceWriter>) {
        let _ = self.trace_writer.set(writer);
    }

    /// The trace writer, once set.
    pub fn trace_writer(&self) -> Option<&Arc<dyn TraceWriter>> {
        self.trace_writer.get()
    }

    /// Sets what the Tempo API reads traces from (by id, search). Until called, those endpoints answer 503.
    /// Later calls are ignored.
    pub fn set_trace_reader(&self, reader: Arc<dyn TraceReader>) {
        let _ = self.trace_reader.set(reader);
    }

    /// The trace reader, once set.
    pub fn trace_reader(&self) -> Option<&Arc<dyn TraceReader>> {
        self.trace_reader.get()
    }

    /// The log store, once set.
    pub fn log_storage(&self) -> Option<&Arc<dyn LogStorage>> {
        self.log_storage.get()
    }

    /// Attaches the scrape manager whose targets `/api/v1/targets` reports. Later calls are ignored.
    pub fn set_scrape_manager(&self, manager: Arc<ScrapeManager>) {
        let _ = self.scrape_manager.set(manager);
    }

    /// The storage, or a 503 `unavailable` error while the WAL is still being replayed.
    pub fn storage(&self) -> Result<&Arc<dyn MetricsStorage>, ApiError> {
        self.storage.get().ok_or_else(|| ApiError::unavailable("storage is starting up (WAL replay in progress)"))
    }

    /// True once the storage is set.
    pub fn is_ready(&self) -> bool {
        self.storage.get().is_some()
    }

    fn scrape_manager(&self) -> Option<&Arc<ScrapeManager>> {
        self.scrape_manager.get()
    }
}

/// The router of every HTTP API: Prometheus `/api/v1/*`, remote_write, OTLP/HTTP `/v1/metrics`, health,
/// `/metrics`.
pub fn router(state: Arc<ServerState>) -> Router {
    let limit = state.options.max_request_body_bytes;
    Router::new()
        .merge(health::routes())
        .merge(prometheus_api::routes())
        .merge(remote_write::routes())
        .merge(loki_api::routes())
        .merge(tempo_api::routes())
        .merge(traceql_api::routes())
        .merge(correlation_api::routes())
        .merge(loki_query::routes())
        .merge(otlp::http_routes())
        .merge(self_metrics::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The router served on the dedicated OTLP/HTTP port: `/v1/*` only.
pub fn otlp_http_router(state: Arc<ServerState>) -> Router {
    let limit = state.options.max_request_body_bytes;
    otlp::http_routes().layer(DefaultBodyLimit::max(limit)).with_state(state)
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be bound; names the address.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A listener failed while serving.
    #[error("server on {address} failed: {message}")]
    Serve {
        /// The address.
        address: SocketAddr,
        /// What failed.
        message: String,
    },
}

/// Bound listeners, ready to serve. Binding first lets the binary report "listening" before storage
/// start-up and fail early on a taken port.
pub struct Listeners {
    main: tokio::net::TcpListener,
    otlp_http: Option<tokio::net::TcpListener>,
    otlp_grpc: Option<tokio::net::TcpListener>,
}

impl Listeners {
    /// Binds every configured listener.
    ///
    /// # Errors
    /// [`ServeError::Bind`] naming the address that could not be bound.
    pub async fn bind(options: &ServerOptions) -> Result<Self, ServeError> {
        async fn bind_one(address: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
            tokio::net::TcpListener::bind(address).await.map_err(|source| ServeError::Bind { address, source })
        }
        let main = bind_one(options.listen).await?;
        let otlp_http = match options.otlp_http_listen {
            Some(address) => Some(bind_one(address).await?),
            None => None,
        };
        let otlp_grpc = match options.otlp_grpc_listen {
            Some(address) => Some(bind_one(address).await?),
            None => None,
        };
        Ok(Listeners { main, otlp_http, otlp_grpc })
    }

    /// The main listener's bound address (useful with port 0).
    pub fn main_address(&self) -> Option<SocketAddr> {
        self.main.local_addr().ok()
    }
}

/// Serves every listener until `shutdown` resolves, then stops accepting and lets in-flight requests
/// finish.
///
/// # Errors
/// [`ServeError::Serve`] when a listener fails.
pub async fn serve(
    listeners: Listeners,
    state: Arc<ServerState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_sender.send(true);
    });
    let wait_for_stop = |mut receiver: tokio::sync::watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stopped| *stopped).await;
    };

    let mut tasks = tokio::task::JoinSet::new();
    let main_address = listeners.main.local_addr().unwrap_or(state.options.listen);
    let main_app = router(state.clone());
    let main_stop = wait_for_stop(stop_receiver.clone());
    tasks.spawn(async move {
        axum::serve(listeners.main, main_app)
            .with_graceful_shutdown(main_stop)
            .await
            .map_err(|error| ServeError::Serve { address: main_address, message: error.to_string() })
    });
    if let Some(listener) = listeners.otlp_http {
        let address = listener.local_addr().unwrap_or(main_address);
        let app = otlp_http_router(state.clone());
        let stop = wait_for_stop(stop_receiver.clone());
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
                .map_err(|error| ServeError::Serve { address, message: error.to_string() })
        });
    }
    if let Some(listener) = listeners.otlp_grpc {
        let address = listener.local_addr().unwrap_or(main_address);
        let stop = wait_for_stop(stop_receiver.clone());
        tasks.spawn(otlp::serve_grpc(listener, state.clone(), stop, address));
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(join_error) => {
                first_error.get_or_insert(ServeError::Serve { address: main_address, message: join_error.to_string() });
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
