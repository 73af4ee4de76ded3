//! The scrape manager: one Tokio task per target, grouped in scrape pools by `job_name`; reloads keep
//! unchanged targets running; shutdown and removal write staleness markers.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oxeye_model::Labels;
use oxeye_model::storage::MetricsStorage;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ScrapeError;
use crate::config::{ScrapeConfig, ScrapeGlobals, validate_scrape_configs};
use crate::http_client::build_client;
use crate::scrape_loop::{
    self, Authentication, JobSettings, LoopCommand, LoopContext, LoopMemory, TargetShared, TargetState,
};
use crate::stats::{ScrapeStats, StatsCounters};
use crate::target::{DroppedTargetStatus, TargetStatus, TargetsSnapshot, build_targets, global_url};

/// How the manager runs, beyond the scrape configs themselves.
#[derive(Debug, Clone)]
pub struct ScrapeManagerOptions {
    /// Defaults for jobs that set no `scrape_interval`/`scrape_timeout` (the config file's `global`).
    pub globals: ScrapeGlobals,
    /// This server's host name: replaces loopback hosts in `globalUrl` and seeds the start-offset
    /// jitter so that several servers scraping one target spread out. `None` keeps URLs as they are.
    pub hostname: Option<String>,
    /// Fail a scrape whose body exceeds this many bytes (after decompression) unless the job sets
    /// `body_size_limit`; `None` for no limit.
    pub body_size_limit_bytes: Option<u64>,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl Default for ScrapeManagerOptions {
    fn default() -> Self {
        ScrapeManagerOptions {
            globals: ScrapeGlobals::default(),
            hostname: None,
            body_size_limit_bytes: None,
            user_agent: format!("oxeye/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A running target: its shared status, the signal that stops it, and its task.
struct RunningTarget {
    identity: u64,
    shared: Arc<TargetShared>,
    stop: watch::Sender<LoopCommand>,
    handle: JoinHandle<LoopMemory>,
}

/// The targets of one scrape config.
struct ScrapePool {
    config: ScrapeConfig,
    /// Kept so reused targets and the pool share one connection pool.
    _client: reqwest::Client,
    targets: Vec<RunningTarget>,
    dropped: Vec<Labels>,
}

/// Scrapes the targets of a list of Prometheus `scrape_configs` into a metrics storage.
///
/// Each target runs in its own Tokio task that scrapes every `scrape_interval`, starting at an offset
/// derived from the target's labels so that targets spread across the interval as in Prometheus.
/// Per scrape it writes the scraped samples (with `job`, `instance` and the static labels), the report
/// series `up`, `scrape_duration_seconds`, `scrape_samples_scraped`,
/// `scrape_samples_post_metric_relabeling` and `scrape_series_added`, and stale markers
/// ([`oxeye_model::STALE_NAN`]) for series of the previous scrape that are gone. A failed scrape writes
/// `up 0` and stale markers for all series of the previous scrape; a removed target and a stopping
/// manager write stale markers for all of the target's series.
///
/// ```no_run
/// # async fn example(storage: std::sync::Arc<dyn oxeye_model::storage::MetricsStorage>) {
/// use oxeye_scrape::{ScrapeManager, ScrapeManagerOptions, config::ScrapeConfig};
/// let configs: Vec<ScrapeConfig> = serde_json::from_str(
///     r#"[{"job_name": "django", "static_configs": [{"targets": ["localhost:8000"]}]}]"#,
/// ).unwrap();
/// let manager = ScrapeManager::new(configs, storage, ScrapeManagerOptions::default()).unwrap();
/// for target in manager.targets().active_targets {
///     println!("{} {}", target.scrape_url, target.health.as_str());
/// }
/// manager.shutdown().await;
/// # }
/// ```
pub struct ScrapeManager {
    storage: Arc<dyn MetricsStorage>,
    options: ScrapeManagerOptions,
    stats: Arc<StatsCounters>,
    runtime: tokio::runtime::Handle,
    pools: Mutex<Vec<ScrapePool>>,
}

impl ScrapeManager {
    /// Validates `configs` and starts scraping. Must be called inside a Tokio runtime (the targets'
    /// tasks are spawned on it).
    ///
    /// # Errors
    /// [`ScrapeError::InvalidConfig`] for the first invalid config (see [`ScrapeConfig::validate`]), a
    /// repeated `job_name` or an unreadable `tls_config.ca_file`; [`ScrapeError::NoRuntime`] outside a
    /// Tokio runtime; [`ScrapeError::Client`] when the HTTP client (TLS) cannot be set up.
    pub fn new(
        configs: Vec<ScrapeConfig>,
        storage: Arc<dyn MetricsStorage>,
        options: ScrapeManagerOptions,
    ) -> Result<ScrapeManager, ScrapeError> {
        validate_scrape_configs(&configs, &options.globals)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ScrapeError::NoRuntime)?;
        let manager = ScrapeManager {
            storage,
            options,
            stats: Arc::new(StatsCounters::default()),
            runtime,
            pools: Mutex::new(Vec::new()),
        };
        let mut pools = Vec::with_capacity(configs.len());
        for config in configs {
            pools.push(manager.start_pool(config, &mut HashMap::new(), &mut HashMap::new())?);
        }
        *manager.pools.lock().unwrap_or_else(PoisonError::into_inner) = pools;
        Ok(manager)
    }

    /// Replaces the scrape configs. Targets of unchanged jobs keep running untouched. When a job's
    /// config changed, its targets restart with the new settings; a target whose labels and URL stay the
    /// same hands its staleness state to its new loop (no stale markers, as on a Prometheus reload).
    /// Removed targets are stopped and write stale markers.
    ///
    /// # Errors
    /// As [`ScrapeManager::new`] for invalid configs; the running configuration is then unchanged.
    pub async fn apply_configs(&self, configs: Vec<ScrapeConfig>) -> Result<(), ScrapeError> {
        validate_scrape_configs(&configs, &self.options.globals)?;
        // Build every new pool's client first, so a bad tls_config leaves the running setup alone.
        for config in &configs {
            build_client(config, &self.options.user_agent)?;
        }
        let removed = {
            let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
            let mut reusable: HashMap<(String, u64), RunningTarget> = HashMap::new();
            let mut handed_over: HashMap<(String, u64), RunningTarget> = HashMap::new();
            let mut removed = Vec::new();
            for pool in pools.drain(..) {
                let is_unchanged = configs.contains(&pool.config);
                let job_remains = configs.iter().any(|config| config.job_name == pool.config.job_name);
                for target in pool.targets {
                    let key = (pool.config.job_name.clone(), target.identity);
                    if is_unchanged {
                        reusable.insert(key, target);
                    } else if job_remains {
                        handed_over.insert(key, target);
                    } else {
                        removed.push(target);
                    }
                }
            }
            let mut new_pools = Vec::with_capacity(configs.len());
            for config in configs {
                let mut reusable_for_job = take_job(&mut reusable, &config.job_name);
                let mut handed_over_for_job = take_job(&mut handed_over, &config.job_name);
                let pool = self.start_pool(config, &mut reusable_for_job, &mut handed_over_for_job)?;
                removed.extend(reusable_for_job.into_values());
                removed.extend(handed_over_for_job.into_values());
                new_pools.push(pool);
            }
            removed.extend(reusable.into_values());
            removed.extend(handed_over.into_values());
            *pools = new_pools;
            removed
        };
        stop_targets(removed).await;
        Ok(())
    }

    /// The status of every active and dropped target, for `/api/v1/targets`. Active targets are ordered
    /// by scrape pool, then labels.
    pub fn targets(&self) -> TargetsSnapshot {
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        let mut snapshot = TargetsSnapshot::default();
        for pool in pools.iter() {
            for target in &pool.targets {
                let state = target.shared.state.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let scrape_target = &target.shared.target;
                snapshot.active_targets.push(TargetStatus {
                    discovered_labels: scrape_target.discovered_labels.clone(),
                    labels: scrape_target.labels.clone(),
                    scrape_pool: target.shared.scrape_pool.clone(),
                    scrape_url: scrape_target.scrape_url.to_string(),
                    global_url: target.shared.global_url.clone(),
                    last_error: state.last_error,
                    last_scrape_timestamp_ms: state.last_scrape_timestamp_ms,
                    last_scrape_duration_seconds: state.last_scrape_duration_seconds,
                    health: state.health,
                    scrape_interval_ms: scrape_target.interval_ms,
                    scrape_timeout_ms: scrape_target.timeout_ms,
                });
            }
            for discovered_labels in &pool.dropped {
                snapshot.dropped_targets.push(DroppedTargetStatus {
                    discovered_labels: discovered_labels.clone(),
                    scrape_pool: pool.config.job_name.clone(),
                });
            }
        }
        snapshot.active_targets.sort_by(|left, right| {
            left.scrape_pool.cmp(&right.scrape_pool).then_with(|| left.labels.cmp(&right.labels))
        });
        snapshot
    }

    /// Counters since the manager started.
    pub fn stats(&self) -> ScrapeStats {
        self.stats.snapshot()
    }

    /// Stops every target and waits until each has written its stale markers. Idempotent; the manager
    /// scrapes nothing afterwards (until [`ScrapeManager::apply_configs`]).
    pub async fn shutdown(&self) {
        let targets: Vec<RunningTarget> = {
            let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
            pools.drain(..).flat_map(|pool| pool.targets).collect()
        };
        stop_targets(targets).await;
    }

    /// Builds a pool for `config`: running targets from `reusable` (same config) continue as they are,
    /// targets in `handed_over` (same job, changed config) are replaced by new loops that take over their
    /// memory, and the others start afresh. Entries used are removed from the maps.
    fn start_pool(
        &self,
        config: ScrapeConfig,
        reusable: &mut HashMap<u64, RunningTarget>,
        handed_over: &mut HashMap<u64, RunningTarget>,
    ) -> Result<ScrapePool, ScrapeError> {
        let relabel_rules = config.relabel_rules()?;
        let client = build_client(&config, &self.options.user_agent)?;
        let body_size_limit_bytes = match config.body_size_limit {
            Some(limit) if limit.bytes > 0 => Some(limit.bytes),
            _ => self.options.body_size_limit_bytes,
        };
        let job = Arc::new(JobSettings {
            job_name: config.job_name.clone(),
            honor_labels: config.honor_labels,
            honor_timestamps: config.honor_timestamps(),
            track_timestamps_staleness: config.track_timestamps_staleness,
            sample_limit: config.sample_limit,
            label_limit: config.label_limit,
            label_name_length_limit: config.label_name_length_limit,
            label_value_length_limit: config.label_value_length_limit,
            body_size_limit_bytes,
            accept_header: config.accept_header(),
            fallback_format: config.fallback_format(),
            enable_compression: config.enable_compression(),
            metric_relabel_rules: config.metric_relabel_rules()?,
            authentication: authentication_of(&config),
        });
        let (active, dropped) = build_targets(&config, &self.options.globals, &relabel_rules);
        let mut targets = Vec::with_capacity(active.len());
        for scrape_target in active {
            let identity = scrape_target.identity_hash();
            if let Some(running) = reusable.remove(&identity) {
                targets.push(running);
                continue;
            }
            if targets.iter().any(|running: &RunningTarget| running.identity == identity) {
                // The same target listed twice in one job is scraped once, as in Prometheus.
                continue;
            }
            let start_offset = self.start_offset(identity, scrape_target.interval_ms);
            let (predecessor, initial_state) = match handed_over.remove(&identity) {
                Some(previous) => {
                    let _ = previous.stop.send(LoopCommand::HandOver);
                    let state = previous.shared.state.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    (Some(previous.handle), state)
                }
                None => (None, TargetState::default()),
            };
            let shared = Arc::new(TargetShared {
                global_url: global_url(&scrape_target.scrape_url, self.options.hostname.as_deref()),
                scrape_pool: config.job_name.clone(),
                target: scrape_target,
                state: Mutex::new(initial_state),
            });
            let context = Arc::new(LoopContext {
                storage: Arc::clone(&self.storage),
                client: client.clone(),
                job: Arc::clone(&job),
                target: Arc::clone(&shared),
                stats: Arc::clone(&self.stats),
                start_offset,
            });
            let (stop, stop_receiver) = watch::channel(LoopCommand::Run);
            let handle = self.runtime.spawn(scrape_loop::run(context, stop_receiver, predecessor));
            targets.push(RunningTarget { identity, shared, stop, handle });
        }
        Ok(ScrapePool { config, _client: client, targets, dropped })
    }

    /// Prometheus' offset: the target's hash (mixed with the host name) modulo the interval, counted
    /// from the next interval-aligned instant, so restarts keep each target's phase.
    fn start_offset(&self, identity: u64, interval_ms: i64) -> Duration {
        let interval_ms = interval_ms.unsigned_abs().max(1);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.options.hostname.hash(&mut hasher);
        let jitter_seed = hasher.finish();
        let now_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as u64).unwrap_or(0);
        let until_aligned = interval_ms - now_ms % interval_ms;
        let mut offset = until_aligned + (identity ^ jitter_seed) % interval_ms;
        if offset >= interval_ms {
            offset -= interval_ms;
        }
        Duration::from_millis(offset)
    }
}

impl Drop for ScrapeManager {
    fn drop(&mut self) {
        // Dropping the stop senders ends each loop, which then writes its stale markers on its own.
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        for pool in pools.drain(..) {
            for target in pool.targets {
                let _ = target.stop.send(LoopCommand::Stop);
            }
        }
    }
}

/// Removes and returns the entries of `job_name` from a map keyed by `(job_name, identity)`.
fn take_job(targets: &mut HashMap<(String, u64), RunningTarget>, job_name: &str) -> HashMap<u64, RunningTarget> {
    let keys: Vec<(String, u64)> = targets.keys().filter(|(job, _)| job == job_name).cloned().collect();
    keys.into_iter().filter_map(|key| targets.remove(&key).map(|target| (key.1, target))).collect()
}

async fn stop_targets(targets: Vec<RunningTarget>) {
    for target in &targets {
        let _ = target.stop.send(LoopCommand::Stop);
    }
    for target in targets {
        if let Err(join_error) = target.handle.await {
            tracing::warn!(url = %target.shared.target.scrape_url, %join_error, "scrape loop ended abnormally");
        }
    }
}

fn authentication_of(config: &ScrapeConfig) -> Authentication {
    if let Some(basic_auth) = &config.basic_auth {
        return Authentication::Basic {
            username: basic_auth.username.clone(),
            password: basic_auth.password.as_ref().map(|password| password.expose().to_string()),
            password_file: basic_auth.password_file.clone(),
        };
    }
    if let Some(authorization) = &config.authorization {
        return Authentication::Header {
            scheme: authorization.auth_type.clone().unwrap_or_else(|| "Bearer".to_string()),
            credentials: authorization.credentials.as_ref().map(|credentials| credentials.expose().to_string()),
            credentials_file: authorization.credentials_file.clone(),
        };
    }
    if config.bearer_token.is_some() || config.bearer_token_file.is_some() {
        return Authentication::Header {
            scheme: "Bearer".to_string(),
            credentials: config.bearer_token.as_ref().map(|token| token.expose().to_string()),
            credentials_file: config.bearer_token_file.clone(),
        };
    }
    Authentication::None
}
