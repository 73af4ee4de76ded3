//! `oxeye serve`: start-up and shutdown wiring.
//!
//! Start-up order: bind the listeners (so `/healthz` answers and a taken port fails at once), open the
//! TSDB on a blocking thread (WAL replay; `/readyz` is 503 until it is done), start the scrape manager
//! and the maintenance loop. Shutdown on SIGTERM or SIGINT: stop accepting and drain requests, stop
//! scraping (writing staleness markers), then close the TSDB (flush and fsync), and exit 0.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use oxeye_model::storage::MetricsStorage;
use oxeye_promql::{Engine, EngineOptions};
use oxeye_scrape::config::{ConfigDuration, ScrapeConfig, ScrapeGlobals};
use oxeye_scrape::{ScrapeManager, ScrapeManagerOptions};
use oxeye_server::{Listeners, MetricsWriter, ServerOptions, ServerState};
use oxeye_tsdb::{Tsdb, TsdbOptions, TsdbStats};

use oxeye_model::duration::format_duration_ms;

use crate::config::ServeSettings;

/// Runs the server until SIGTERM or SIGINT.
///
/// # Errors
/// When a listener cannot be bound, the TSDB cannot be opened or closed, or a scrape config is invalid.
pub async fn run(settings: ServeSettings, config_yaml: String, config_path: String) -> anyhow::Result<()> {
    let started = Instant::now();
    // Registered before anything else: a SIGTERM during start-up (WAL replay can take seconds) then waits for
    // start-up to finish and shuts down cleanly, instead of killing the process by the signal's default action.
    let shutdown = shutdown_signal();
    let engine = Engine::new(EngineOptions {
        lookback_delta_ms: settings.lookback_delta_ms,
        max_samples: usize::try_from(settings.max_samples).unwrap_or(usize::MAX),
        timeout: settings.query_timeout,
    });
    let server_options = ServerOptions {
        listen: settings.listen,
        otlp_http_listen: settings.otlp_http_listen,
        otlp_grpc_listen: settings.otlp_grpc_listen,
        max_request_body_bytes: usize::try_from(settings.max_request_body_bytes).unwrap_or(usize::MAX),
        version: env!("CARGO_PKG_VERSION").to_string(),
        storage_retention: format_duration_ms(settings.retention_ms),
        flags: flags(&settings, &config_path),
        config_yaml,
    };
    let listeners = Listeners::bind(&server_options).await?;
    let listen_address = listeners.main_address().unwrap_or(settings.listen);
    let state = ServerState::new(server_options, engine);
    let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
    let server_stop = {
        let mut receiver = stop_receiver.clone();
        async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
    };
    let server = tokio::spawn(oxeye_server::serve(listeners, state.clone(), server_stop));
    tracing::info!(
        listen = %listen_address,
        otlp_http = ?settings.otlp_http_listen,
        otlp_grpc = ?settings.otlp_grpc_listen,
        "listening"
    );

    // Each store owns a subdirectory: the TSDB treats any directory holding a meta.json as a block.
    let mut tsdb_options = TsdbOptions::new(settings.data_dir.join("metrics"));
    tsdb_options.retention_ms = settings.retention_ms;
    tsdb_options.retention_size_bytes = settings.retention_size_bytes;
    tsdb_options.block_duration_ms = settings.block_duration_ms;
    let open_started = Instant::now();
    let tsdb = tokio::task::spawn_blocking(move || Tsdb::open(tsdb_options))
        .await
        .context("storage start-up task failed")?
        .with_context(|| format!("cannot open the data directory {}", settings.data_dir.display()))?;
    let logs = crate::serve_logs::start(&settings, &state).await?;
    let traces = crate::serve_traces::start(&settings, &state).await?;
    // OTLP trace ingest pushes through the pipeline: redaction, span metrics into the TSDB, tail sampling.
    let trace_pipeline =
        crate::serve_trace_pipeline::start(settings.trace_pipeline.clone(), traces.writer(), tsdb.clone(), &state)?;
    state.set_trace_writer(trace_pipeline.writer());
    let storage: Arc<dyn MetricsStorage> = tsdb.clone();
    let stats_source = tsdb.clone();
    state.set_storage(storage.clone(), Box::new(move |writer| write_tsdb_metrics(writer, &stats_source.stats())));
    tracing::info!(
        startup_ms = started.elapsed().as_millis() as u64,
        wal_replay_ms = open_started.elapsed().as_millis() as u64,
        head_series = tsdb.stats().head_series,
        "ready"
    );

    let scrape_configs = scrape_configs(&settings, listen_address)?;
    let globals = ScrapeGlobals {
        scrape_interval: ConfigDuration::from_millis(settings.global_scrape_interval_ms),
        scrape_timeout: ConfigDuration::from_millis(settings.global_scrape_timeout_ms),
    };
    let scrape_options = ScrapeManagerOptions { globals, ..ScrapeManagerOptions::default() };
    let manager =
        Arc::new(ScrapeManager::new(scrape_configs, storage, scrape_options).context("invalid scrape configuration")?);
    state.set_scrape_manager(manager.clone());

    let maintenance = {
        let maintenance_interval = settings.maintenance_interval;
        let tsdb = tsdb.clone();
        let mut receiver = stop_receiver.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(maintenance_interval);
            interval.tick().await;
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = receiver.wait_for(|stopped| *stopped) => return,
                }
                let worker = tsdb.clone();
                match tokio::task::spawn_blocking(move || worker.run_maintenance()).await {
                    Ok(Ok(report)) => tracing::debug!(?report, "maintenance done"),
                    Ok(Err(error)) => tracing::warn!(%error, "maintenance failed; retrying next round"),
                    Err(error) => tracing::warn!(%error, "maintenance task failed"),
                }
            }
        })
    };

    shutdown.await;
    tracing::info!("shutting down: draining requests, stopping scrapes, flushing storage");
    let _ = stop_sender.send(true);
    let served = server.await.context("server task failed")?;
    manager.shutdown().await;
    // Last sampling decisions and span metrics flush, before the trace store and the TSDB close.
    trace_pipeline.close().await?;
    let _ = maintenance.await;
    let closing = tsdb.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .context("storage shutdown task failed")?
        .context("cannot close the storage cleanly")?;
    logs.close().await?;
    traces.close().await?;
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// The self-scrape job plus the user's scrape configs.
fn scrape_configs(settings: &ServeSettings, listen: std::net::SocketAddr) -> anyhow::Result<Vec<ScrapeConfig>> {
    let mut configs = Vec::new();
    if let Some(interval_ms) = settings.self_scrape_interval_ms {
        let host = if listen.ip().is_unspecified() {
            if listen.is_ipv4() { "127.0.0.1".to_string() } else { "[::1]".to_string() }
        } else if listen.is_ipv6() {
            format!("[{}]", listen.ip())
        } else {
            listen.ip().to_string()
        };
        let interval = format_duration_ms(interval_ms);
        let self_job = serde_json::json!({
            "job_name": "oxeye",
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "static_configs": [{ "targets": [format!("{host}:{}", listen.port())] }],
        });
        configs.push(serde_json::from_value(self_job).context("building the self-scrape job")?);
    }
    for (index, raw) in settings.scrape_configs.iter().enumerate() {
        let config: ScrapeConfig =
            serde_json::from_value(raw.clone()).with_context(|| format!("config field scrape_configs[{index}]"))?;
        configs.push(config);
    }
    Ok(configs)
}

/// The effective settings under the names of the Prometheus flags they correspond to.
fn flags(settings: &ServeSettings, config_path: &str) -> Vec<(String, String)> {
    vec![
        ("config.file".into(), config_path.to_string()),
        ("web.listen-address".into(), settings.listen.to_string()),
        ("storage.tsdb.path".into(), settings.data_dir.display().to_string()),
        ("storage.tsdb.retention.time".into(), format_duration_ms(settings.retention_ms)),
        (
            "storage.tsdb.retention.size".into(),
            settings.retention_size_bytes.map(|bytes| format!("{bytes}B")).unwrap_or_else(|| "0B".into()),
        ),
        ("storage.tsdb.min-block-duration".into(), format_duration_ms(settings.block_duration_ms)),
        ("query.lookback-delta".into(), format_duration_ms(settings.lookback_delta_ms)),
        (
            "query.timeout".into(),
            format_duration_ms(i64::try_from(settings.query_timeout.as_millis()).unwrap_or(i64::MAX)),
        ),
        ("query.max-samples".into(), settings.max_samples.to_string()),
    ]
}

fn write_tsdb_metrics(writer: &mut MetricsWriter, stats: &TsdbStats) {
    let gauge = "gauge";
    let counter = "counter";
    writer.single("oxeye_tsdb_head_series", "Series in the head.", gauge, stats.head_series as f64);
    writer.single(
        "oxeye_tsdb_head_series_created_total",
        "Series created in the head.",
        counter,
        stats.head_series_created_total as f64,
    );
    writer.single(
        "oxeye_tsdb_head_samples_appended_total",
        "Samples appended to the head.",
        counter,
        stats.head_samples_appended_total as f64,
    );
    writer.single(
        "oxeye_tsdb_out_of_order_samples_total",
        "Samples refused as out of order.",
        counter,
        stats.out_of_order_samples_total as f64,
    );
    writer.single(
        "oxeye_tsdb_out_of_bounds_samples_total",
        "Samples refused as too old for the head.",
        counter,
        stats.out_of_bounds_samples_total as f64,
    );
    writer.single("oxeye_tsdb_commits_total", "Appender commits.", counter, stats.commits_total as f64);
    writer.single("oxeye_tsdb_blocks_loaded", "Persisted blocks.", gauge, stats.blocks as f64);
    writer.single("oxeye_tsdb_blocks_bytes", "Bytes of persisted blocks on disk.", gauge, stats.blocks_bytes as f64);
    writer.single("oxeye_tsdb_wal_bytes", "Bytes of WAL segments on disk.", gauge, stats.wal_bytes as f64);
    writer.single(
        "oxeye_tsdb_wal_replay_duration_seconds",
        "Time the WAL replay took at start-up, in seconds.",
        gauge,
        stats.wal_replay_seconds,
    );
    writer.single(
        "oxeye_tsdb_compactions_total",
        "Block compactions (head and blocks).",
        counter,
        (stats.compactions_total + stats.head_compactions_total) as f64,
    );
    writer.single("oxeye_tsdb_exemplars", "Exemplars held.", gauge, stats.exemplars as f64);
    let wal = &stats.wal;
    writer.single("oxeye_wal_records_total", "Records appended to the WAL.", counter, wal.records_total as f64);
    writer.single(
        "oxeye_wal_fsyncs_total",
        "Group commits (one write and fsync each).",
        counter,
        wal.fsyncs_total as f64,
    );
    writer.family("oxeye_wal_fsync_duration_seconds", "WAL fsync latency in seconds.", "histogram");
    let bounds = oxeye_wal::FSYNC_LATENCY_BUCKETS_SECONDS;
    let snapshot = oxeye_server::self_metrics::HistogramSnapshot {
        buckets: bounds.iter().copied().zip(wal.fsync_latency_cumulative_counts.iter().copied()).collect(),
        sum: wal.fsync_seconds_total,
        count: wal.fsyncs_total,
    };
    writer.histogram("oxeye_wal_fsync_duration_seconds", &[], &snapshot);
}

/// Listens for SIGTERM and SIGINT (Ctrl-C) from the moment it is called (the handlers are registered before
/// it returns, not when the future is first polled); the future resolves on the first of them. A handler that
/// cannot be registered is logged as a warning and never fires.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        async fn recv(registered: std::io::Result<Signal>, name: &'static str) {
            match registered {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::warn!(%error, signal = name, "cannot listen for the signal");
                    std::future::pending::<()>().await;
                }
            }
        }
        let terminate = recv(signal(SignalKind::terminate()), "SIGTERM");
        let interrupt = recv(signal(SignalKind::interrupt()), "SIGINT");
        async move {
            tokio::select! {
                () = terminate => {}
                () = interrupt => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
