//! The scrape manager against an in-process HTTP server serving real prometheus_client output, a
//! target that serves garbage, and a target behind basic auth, writing into an in-memory storage.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use oxeye_model::storage::{Appender, CommitSummary, MetricsStorage, Querier, Series, SeriesExemplars, StorageError};
use oxeye_model::{Exemplar, Labels, Matcher, MetricMetadata, MetricType, Sample, is_stale_nan};
use oxeye_scrape::config::ScrapeConfig;
use oxeye_scrape::exposition::ACCEPT_HEADER;
use oxeye_scrape::{ScrapeManager, ScrapeManagerOptions, TargetHealth, TargetStatus};

// ---------------------------------------------------------------------------------------------------
// An in-memory MetricsStorage: refuses out-of-order samples like the real head does.

#[derive(Default)]
struct MemoryState {
    series: BTreeMap<Labels, Vec<Sample>>,
    exemplars: BTreeMap<Labels, Vec<Exemplar>>,
    metadata: BTreeMap<String, MetricMetadata>,
}

#[derive(Default, Clone)]
struct MemoryStorage {
    state: Arc<Mutex<MemoryState>>,
}

struct MemoryAppender {
    state: Arc<Mutex<MemoryState>>,
    samples: Vec<(Labels, Sample)>,
    exemplars: Vec<(Labels, Exemplar)>,
    metadata: Vec<(String, MetricMetadata)>,
}

impl Appender for MemoryAppender {
    fn append(&mut self, labels: &Labels, sample: Sample) -> Result<(), StorageError> {
        let state = self.state.lock().unwrap();
        let committed_newest = state.series.get(labels).and_then(|samples| samples.last()).map(|s| s.timestamp_ms);
        let batch_newest =
            self.samples.iter().rev().find(|(series, _)| series == labels).map(|(_, sample)| sample.timestamp_ms);
        if let Some(newest) = batch_newest.or(committed_newest)
            && sample.timestamp_ms <= newest
        {
            return Err(StorageError::OutOfOrderSample {
                series: labels.to_string(),
                timestamp_ms: sample.timestamp_ms,
                newest_timestamp_ms: newest,
            });
        }
        drop(state);
        self.samples.push((labels.clone(), sample));
        Ok(())
    }

    fn append_exemplar(&mut self, labels: &Labels, exemplar: Exemplar) -> Result<(), StorageError> {
        self.exemplars.push((labels.clone(), exemplar));
        Ok(())
    }

    fn update_metadata(&mut self, metric_family_name: &str, metadata: MetricMetadata) {
        self.metadata.push((metric_family_name.to_string(), metadata));
    }

    fn commit(self: Box<Self>) -> Result<CommitSummary, StorageError> {
        let mut state = self.state.lock().unwrap();
        let mut summary = CommitSummary::default();
        for (labels, sample) in self.samples {
            let samples = state.series.entry(labels).or_default();
            if samples.is_empty() {
                summary.series_created += 1;
            }
            samples.push(sample);
            summary.samples += 1;
        }
        for (labels, exemplar) in self.exemplars {
            state.exemplars.entry(labels).or_default().push(exemplar);
            summary.exemplars += 1;
        }
        for (name, metadata) in self.metadata {
            state.metadata.insert(name, metadata);
        }
        Ok(summary)
    }

    fn rollback(self: Box<Self>) {}
}

impl Querier for MemoryStorage {
    fn select(&self, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .series
            .iter()
            .filter(|(labels, _)| matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or(""))))
            .map(|(labels, samples)| Series {
                labels: labels.clone(),
                samples: samples
                    .iter()
                    .filter(|s| s.timestamp_ms >= mint_ms && s.timestamp_ms <= maxt_ms)
                    .copied()
                    .collect(),
            })
            .filter(|series| !series.samples.is_empty())
            .collect())
    }

    fn series(&self, mint_ms: i64, maxt_ms: i64, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
        Ok(self.select(mint_ms, maxt_ms, matchers)?.into_iter().map(|series| series.labels).collect())
    }

    fn label_names(&self, _: i64, _: i64, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }

    fn label_values(&self, _: i64, _: i64, _: &str, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
}

impl MetricsStorage for MemoryStorage {
    fn appender(&self) -> Box<dyn Appender> {
        Box::new(MemoryAppender {
            state: Arc::clone(&self.state),
            samples: Vec::new(),
            exemplars: Vec::new(),
            metadata: Vec::new(),
        })
    }

    fn metadata(&self, name: Option<&str>, _limit: Option<usize>) -> Vec<(String, MetricMetadata)> {
        let state = self.state.lock().unwrap();
        state
            .metadata
            .iter()
            .filter(|(n, _)| name.is_none_or(|w| w == *n))
            .map(|(n, m)| (n.clone(), m.clone()))
            .collect()
    }

    fn exemplars(&self, _: i64, _: i64, _: &[Vec<Matcher>]) -> Result<Vec<SeriesExemplars>, StorageError> {
        Ok(Vec::new())
    }
}

impl MemoryStorage {
    /// All samples of the series whose labels contain every `(name, value)` pair.
    fn samples_matching(&self, pairs: &[(&str, &str)]) -> Vec<(Labels, Vec<Sample>)> {
        let state = self.state.lock().unwrap();
        state
            .series
            .iter()
            .filter(|(labels, _)| pairs.iter().all(|(name, value)| labels.get(name) == Some(*value)))
            .map(|(labels, samples)| (labels.clone(), samples.clone()))
            .collect()
    }

    fn last_sample(&self, pairs: &[(&str, &str)]) -> Option<Sample> {
        let matching = self.samples_matching(pairs);
        assert!(matching.len() <= 1, "{pairs:?} matches {} series", matching.len());
        matching.first().and_then(|(_, samples)| samples.last().copied())
    }
}

// ---------------------------------------------------------------------------------------------------
// The test server.

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[derive(Clone, Default)]
struct ServerState {
    django_body: Arc<Mutex<String>>,
    seen_headers: Arc<Mutex<Vec<HeaderMap>>>,
}

const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8";

async fn start_server(state: ServerState) -> std::net::SocketAddr {
    let django_state = state.clone();
    let secure_state = state.clone();
    let router = Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let state = django_state.clone();
                async move {
                    state.seen_headers.lock().unwrap().push(headers);
                    let body = state.django_body.lock().unwrap().clone();
                    ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body)
                }
            }),
        )
        .route(
            "/garbage",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], "# HELP ok fine\nok 1\nthis is garbage\n")
            }),
        )
        .route(
            "/secure",
            get(move |headers: HeaderMap| {
                let state = secure_state.clone();
                async move {
                    // "prometheus:s3cret" in base64.
                    let authorized = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
                        == Some("Basic cHJvbWV0aGV1czpzM2NyZXQ=");
                    state.seen_headers.lock().unwrap().push(headers);
                    if !authorized {
                        return (StatusCode::UNAUTHORIZED, "no").into_response();
                    }
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                        fixture("django_text_0.0.4.txt"),
                    )
                        .into_response()
                }
            }),
        );
    let router = router
        .route(
            "/plain",
            get(|| async {
                let body = fixture("django_text_0.0.4.txt") + "conflict{job=\"scraped\",instance=\"elsewhere\"} 1\n";
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
            }),
        )
        .route(
            "/octet-stream",
            get(|| async {
                ([(header::CONTENT_TYPE, "application/octet-stream")], "seconds_stamped 1 1700000000.5\n# EOF\n")
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

fn configs(address: std::net::SocketAddr, jobs: &[&str]) -> Vec<ScrapeConfig> {
    let all = format!(
        r#"
- job_name: django
  scrape_interval: 400ms
  scrape_timeout: 400ms
  static_configs:
    - targets: ["{address}"]
      labels: {{env: test}}
- job_name: garbage
  scrape_interval: 400ms
  scrape_timeout: 400ms
  metrics_path: /garbage
  static_configs:
    - targets: ["{address}"]
- job_name: secure
  scrape_interval: 400ms
  scrape_timeout: 400ms
  metrics_path: /secure
  basic_auth: {{username: prometheus, password: s3cret}}
  static_configs:
    - targets: ["{address}"]
"#
    );
    let parsed: Vec<ScrapeConfig> = serde_saphyr::from_str(&all).unwrap();
    parsed.into_iter().filter(|config| jobs.contains(&config.job_name.as_str())).collect()
}

/// Polls `condition` until it holds; fails the test after 30 s (a hang guard, not a timing assertion).
async fn wait_until(description: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {description}");
}

fn target<'a>(targets: &'a [TargetStatus], job: &str) -> &'a TargetStatus {
    targets.iter().find(|target| target.scrape_pool == job).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_targets_reports_health_and_marks_stale_series() {
    let server_state = ServerState::default();
    *server_state.django_body.lock().unwrap() = fixture("django_openmetrics_1.0.0.txt");
    let address = start_server(server_state.clone()).await;
    let instance = address.to_string();
    let storage = MemoryStorage::default();
    let options = ScrapeManagerOptions { hostname: Some("oxeye-test-host".to_string()), ..Default::default() };
    let manager =
        ScrapeManager::new(configs(address, &["django", "garbage", "secure"]), Arc::new(storage.clone()), options)
            .unwrap();

    // Every target scraped at least once.
    wait_until("all three targets were scraped", || {
        let snapshot = manager.targets();
        snapshot.active_targets.len() == 3
            && snapshot.active_targets.iter().all(|target| target.health != TargetHealth::Unknown)
    })
    .await;
    let snapshot = manager.targets();
    let django = target(&snapshot.active_targets, "django");
    assert_eq!(django.health, TargetHealth::Up, "{}", django.last_error);
    assert_eq!(django.last_error, "");
    assert_eq!(
        django.labels,
        Labels::from_pairs([("env", "test"), ("instance", instance.as_str()), ("job", "django")])
    );
    assert_eq!(django.discovered_labels.get("__address__"), Some(instance.as_str()));
    assert_eq!(django.scrape_url, format!("http://{address}/metrics"));
    assert_eq!(django.global_url, format!("http://oxeye-test-host:{}/metrics", address.port()));
    assert_eq!((django.scrape_interval_ms, django.scrape_timeout_ms), (400, 400));
    assert!(django.last_scrape_timestamp_ms.is_some());
    let garbage = target(&snapshot.active_targets, "garbage");
    assert_eq!(garbage.health, TargetHealth::Down);
    assert!(garbage.last_error.starts_with("line 3: "), "{}", garbage.last_error);
    assert!(garbage.last_error.contains("this is garbage"), "{}", garbage.last_error);
    let secure = target(&snapshot.active_targets, "secure");
    assert_eq!(secure.health, TargetHealth::Up, "{}", secure.last_error);

    // up, job/instance, static labels and the scraped series.
    assert_eq!(
        storage.last_sample(&[("__name__", "up"), ("job", "django"), ("instance", &instance)]).unwrap().value,
        1.0
    );
    assert_eq!(storage.last_sample(&[("__name__", "up"), ("job", "garbage")]).unwrap().value, 0.0);
    assert_eq!(storage.last_sample(&[("__name__", "up"), ("job", "secure")]).unwrap().value, 1.0);
    let requests = storage.last_sample(&[
        ("__name__", "django_http_requests_total"),
        ("job", "django"),
        ("instance", &instance),
        ("env", "test"),
        ("method", "GET"),
        ("status", "200"),
        ("view", "events:list"),
    ]);
    assert_eq!(requests.unwrap().value, 1027.0);
    let expected_samples =
        fixture("django_openmetrics_1.0.0.txt").lines().filter(|line| !line.starts_with('#')).count();
    let scraped = storage.last_sample(&[("__name__", "scrape_samples_scraped"), ("job", "django")]).unwrap();
    assert_eq!(scraped.value, expected_samples as f64);
    let post_relabel = storage.last_sample(&[("__name__", "scrape_samples_post_metric_relabeling"), ("job", "django")]);
    assert_eq!(post_relabel.unwrap().value, expected_samples as f64);
    assert!(storage.last_sample(&[("__name__", "scrape_duration_seconds"), ("job", "django")]).unwrap().value >= 0.0);
    let first_series_added = storage.samples_matching(&[("__name__", "scrape_series_added"), ("job", "django")]);
    assert_eq!(first_series_added[0].1[0].value, expected_samples as f64);
    assert_eq!(storage.last_sample(&[("__name__", "scrape_samples_scraped"), ("job", "garbage")]).unwrap().value, 0.0);

    // Metadata and exemplars.
    let metadata = storage.metadata(Some("django_http_requests"), None);
    assert_eq!(metadata[0].1.metric_type, MetricType::Counter);
    assert_eq!(metadata[0].1.help, "Total requests by method, view and status.");
    {
        let state = storage.state.lock().unwrap();
        let exemplar_series: Vec<&Labels> = state.exemplars.keys().collect();
        assert!(
            exemplar_series.iter().any(|labels| labels.metric_name() == Some("revel_tickets_sold_total")
                && labels.get("job") == Some("django")),
            "{exemplar_series:?}"
        );
    }

    // What the scraper sent.
    let headers = server_state.seen_headers.lock().unwrap()[0].clone();
    assert_eq!(headers.get(header::ACCEPT).unwrap(), ACCEPT_HEADER);
    assert_eq!(headers.get("x-prometheus-scrape-timeout-seconds").unwrap(), "0.4");
    assert!(headers.get(header::ACCEPT_ENCODING).unwrap().to_str().unwrap().contains("gzip"));
    assert!(headers.get(header::USER_AGENT).unwrap().to_str().unwrap().starts_with("oxeye/"));

    // A series disappears: it gets a stale marker; the others do not.
    let sold_series = [("__name__", "revel_tickets_sold_total"), ("job", "django"), ("tier_id", "4")];
    let without_sold: String = fixture("django_openmetrics_1.0.0.txt")
        .lines()
        .filter(|line| !line.contains("revel_tickets_sold"))
        .map(|line| format!("{line}\n"))
        .collect();
    *server_state.django_body.lock().unwrap() = without_sold;
    wait_until("the vanished series is marked stale", || {
        storage.last_sample(&sold_series).is_some_and(|sample| is_stale_nan(sample.value))
    })
    .await;
    let still_there = storage.last_sample(&[("__name__", "django_http_requests_active"), ("job", "django")]).unwrap();
    assert_eq!(still_there.value, 3.0);
    assert!(
        storage.samples_matching(&[("__name__", "django_http_requests_active"), ("job", "django")])[0]
            .1
            .iter()
            .all(|sample| !is_stale_nan(sample.value))
    );

    // The django target starts serving garbage: down, every previous series stale, the others unaffected.
    *server_state.django_body.lock().unwrap() = "django_http_requests_active{ 3\n# EOF\n".to_string();
    wait_until("the django target is down", || {
        target(&manager.targets().active_targets, "django").health == TargetHealth::Down
    })
    .await;
    let down = manager.targets();
    assert!(target(&down.active_targets, "django").last_error.starts_with("line 1: "));
    assert_eq!(target(&down.active_targets, "secure").health, TargetHealth::Up);
    assert!(is_stale_nan(
        storage.last_sample(&[("__name__", "django_http_requests_active"), ("job", "django")]).unwrap().value
    ));
    assert_eq!(storage.last_sample(&[("__name__", "up"), ("job", "django")]).unwrap().value, 0.0);

    // A removed target's series and report series get stale markers.
    manager.apply_configs(configs(address, &["django", "garbage"])).await.unwrap();
    assert_eq!(manager.targets().active_targets.len(), 2);
    assert!(is_stale_nan(storage.last_sample(&[("__name__", "up"), ("job", "secure")]).unwrap().value));
    assert!(is_stale_nan(
        storage.last_sample(&[("__name__", "django_http_requests_active"), ("job", "secure")]).unwrap().value
    ));

    // Shutdown: everything left is marked stale and nothing is scraped any more.
    let stats = manager.stats();
    assert!(stats.scrapes_total >= 4);
    assert!(stats.scrapes_failed_total >= 2);
    assert!(stats.samples_appended_total > 0);
    assert!(stats.stale_markers_total > 0);
    assert!(stats.exemplars_appended_total > 0);
    manager.shutdown().await;
    assert!(manager.targets().active_targets.is_empty());
    assert!(is_stale_nan(storage.last_sample(&[("__name__", "up"), ("job", "django")]).unwrap().value));
    assert!(is_stale_nan(storage.last_sample(&[("__name__", "up"), ("job", "garbage")]).unwrap().value));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_unauthorized_targets_are_down_with_their_error() {
    let server_state = ServerState::default();
    let address = start_server(server_state).await;
    let mut secure = configs(address, &["secure"]);
    secure[0].basic_auth = None;
    let refused: Vec<ScrapeConfig> = serde_saphyr::from_str(
        "- job_name: refused\n  scrape_interval: 400ms\n  scrape_timeout: 400ms\n  static_configs: [{targets: ['127.0.0.1:1']}]\n",
    )
    .unwrap();
    secure.extend(refused);
    let storage = MemoryStorage::default();
    let manager = ScrapeManager::new(secure, Arc::new(storage.clone()), ScrapeManagerOptions::default()).unwrap();
    wait_until("both targets were scraped", || {
        manager.targets().active_targets.iter().filter(|target| target.health == TargetHealth::Down).count() == 2
    })
    .await;
    let snapshot = manager.targets();
    assert_eq!(target(&snapshot.active_targets, "secure").last_error, "server returned HTTP status 401 Unauthorized");
    assert!(target(&snapshot.active_targets, "refused").last_error.starts_with("http request failed"));
    assert_eq!(storage.last_sample(&[("__name__", "up"), ("job", "refused")]).unwrap().value, 0.0);
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_are_refused_with_job_and_field() {
    let configs: Vec<ScrapeConfig> =
        serde_saphyr::from_str("- job_name: slow\n  scrape_interval: 1s\n  scrape_timeout: 2s\n").unwrap();
    let error =
        ScrapeManager::new(configs, Arc::new(MemoryStorage::default()), ScrapeManagerOptions::default()).err().unwrap();
    let message = error.to_string();
    assert!(message.contains("\"slow\"") && message.contains("scrape_timeout"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_relabelling_honor_labels_limits_and_fallback_protocol() {
    let address = start_server(ServerState::default()).await;
    let yaml = format!(
        r#"
- job_name: relabelled
  scrape_interval: 400ms
  metrics_path: /plain
  metric_relabel_configs:
    - {{action: drop, source_labels: [__name__], regex: ".*_created"}}
  static_configs: [{{targets: ["{address}"]}}]
- job_name: honored
  scrape_interval: 400ms
  metrics_path: /plain
  honor_labels: true
  static_configs: [{{targets: ["{address}"]}}]
- job_name: limited
  scrape_interval: 400ms
  metrics_path: /plain
  label_limit: 3
  static_configs: [{{targets: ["{address}"]}}]
- job_name: fallback
  scrape_interval: 400ms
  metrics_path: /octet-stream
  fallback_scrape_protocol: OpenMetricsText1.0.0
  static_configs: [{{targets: ["{address}"]}}]
- job_name: no-fallback
  scrape_interval: 400ms
  metrics_path: /octet-stream
  static_configs: [{{targets: ["{address}"]}}]
"#
    );
    let configs: Vec<ScrapeConfig> = serde_saphyr::from_str(&yaml).unwrap();
    let storage = MemoryStorage::default();
    let manager = ScrapeManager::new(configs, Arc::new(storage.clone()), ScrapeManagerOptions::default()).unwrap();
    wait_until("all targets were scraped", || {
        manager.targets().active_targets.iter().all(|target| target.health != TargetHealth::Unknown)
    })
    .await;
    let snapshot = manager.targets();
    assert_eq!(target(&snapshot.active_targets, "relabelled").health, TargetHealth::Up);
    assert_eq!(target(&snapshot.active_targets, "honored").health, TargetHealth::Up);
    let limited = target(&snapshot.active_targets, "limited");
    assert_eq!(limited.health, TargetHealth::Down);
    assert!(limited.last_error.contains("label_limit exceeded"), "{}", limited.last_error);
    assert_eq!(target(&snapshot.active_targets, "fallback").health, TargetHealth::Up);
    let no_fallback = target(&snapshot.active_targets, "no-fallback");
    assert_eq!(no_fallback.health, TargetHealth::Down);
    assert!(no_fallback.last_error.contains("invalid timestamp"), "{}", no_fallback.last_error);

    // metric_relabel_configs dropped the _created series, counted in the report series.
    assert!(
        storage.samples_matching(&[("job", "relabelled"), ("__name__", "django_http_requests_created")]).is_empty()
    );
    let scraped = storage.last_sample(&[("__name__", "scrape_samples_scraped"), ("job", "relabelled")]).unwrap().value;
    let kept = storage
        .last_sample(&[("__name__", "scrape_samples_post_metric_relabeling"), ("job", "relabelled")])
        .unwrap()
        .value;
    let created_lines = fixture("django_text_0.0.4.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && line.split(['{', ' ']).next().unwrap().ends_with("_created"))
        .count();
    assert!(created_lines > 0);
    assert_eq!(scraped - kept, created_lines as f64);

    // Conflicting scraped labels: exported_* by default, kept with honor_labels.
    let conflict = storage.samples_matching(&[("__name__", "conflict"), ("job", "relabelled")]);
    assert_eq!(conflict[0].0.get("exported_job"), Some("scraped"));
    assert_eq!(conflict[0].0.get("exported_instance"), Some("elsewhere"));
    assert_eq!(conflict[0].0.get("instance"), Some(address.to_string().as_str()));
    let honored = storage.samples_matching(&[("__name__", "conflict"), ("job", "scraped")]);
    assert_eq!(honored[0].0.get("instance"), Some("elsewhere"));
    assert_eq!(honored[0].0.get("exported_job"), None);

    // The fallback parser read OpenMetrics' second timestamps.
    let stamped = storage.last_sample(&[("__name__", "seconds_stamped"), ("job", "fallback")]).unwrap();
    assert_eq!(stamped.timestamp_ms, 1_700_000_000_500);
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_job_config_keeps_its_targets_series_without_stale_markers() {
    let server_state = ServerState::default();
    *server_state.django_body.lock().unwrap() = fixture("django_openmetrics_1.0.0.txt");
    let address = start_server(server_state).await;
    let storage = MemoryStorage::default();
    let manager =
        ScrapeManager::new(configs(address, &["django"]), Arc::new(storage.clone()), ScrapeManagerOptions::default())
            .unwrap();
    let up_series = [("__name__", "up"), ("job", "django")];
    let up_count = |storage: &MemoryStorage| storage.samples_matching(&up_series).first().map_or(0, |(_, s)| s.len());
    wait_until("the first scrape", || up_count(&storage) >= 1).await;

    // Same target, different timeout: the loop restarts and takes over the staleness state.
    let mut changed = configs(address, &["django"]);
    changed[0].scrape_timeout = Some(oxeye_scrape::config::ConfigDuration::from_millis(350));
    manager.apply_configs(changed).await.unwrap();
    let scrapes_before = up_count(&storage);
    wait_until("two scrapes after the reload", || up_count(&storage) >= scrapes_before + 2).await;
    let snapshot = manager.targets();
    assert_eq!(snapshot.active_targets.len(), 1);
    assert_eq!(snapshot.active_targets[0].scrape_timeout_ms, 350);
    for pairs in [&up_series[..], &[("__name__", "django_http_requests_active"), ("job", "django")][..]] {
        let (_, samples) = &storage.samples_matching(pairs)[0];
        assert!(samples.iter().all(|sample| !is_stale_nan(sample.value)), "{pairs:?} got a stale marker");
    }
    // The series seen before the reload are not counted as added again.
    let series_added = storage.samples_matching(&[("__name__", "scrape_series_added"), ("job", "django")]);
    assert_eq!(series_added[0].1.last().unwrap().value, 0.0);

    // Removing the job marks its series stale.
    manager.apply_configs(Vec::new()).await.unwrap();
    assert!(manager.targets().active_targets.is_empty());
    assert!(is_stale_nan(storage.last_sample(&up_series).unwrap().value));
    manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_label_order_is_the_same_series_and_explicit_timestamps_are_not_marked_stale() {
    let server_state = ServerState::default();
    let first_body = "# TYPE revel_events_active gauge\nrevel_events_active{organization_id=\"17\",kind=\"concert\"} 4\nrevel_backfill 7 1700000000\n# EOF\n";
    *server_state.django_body.lock().unwrap() = first_body.to_string();
    let address = start_server(server_state.clone()).await;
    let storage = MemoryStorage::default();
    let manager =
        ScrapeManager::new(configs(address, &["django"]), Arc::new(storage.clone()), ScrapeManagerOptions::default())
            .unwrap();
    let active = [("__name__", "revel_events_active"), ("job", "django")];
    let sample_count = |storage: &MemoryStorage| storage.samples_matching(&active).first().map_or(0, |(_, s)| s.len());
    wait_until("the first scrape", || sample_count(&storage) >= 1).await;

    // Same labels written in another order, and the explicitly timestamped series is gone.
    *server_state.django_body.lock().unwrap() =
        "# TYPE revel_events_active gauge\nrevel_events_active{kind=\"concert\",organization_id=\"17\"} 5\n# EOF\n"
            .to_string();
    wait_until("a scrape of the rewritten body", || {
        storage.last_sample(&active).is_some_and(|sample| sample.value == 5.0)
    })
    .await;
    let (_, samples) = &storage.samples_matching(&active)[0];
    assert!(samples.iter().all(|sample| !is_stale_nan(sample.value)));
    assert_eq!(storage.samples_matching(&active).len(), 1);
    let backfill = storage.samples_matching(&[("__name__", "revel_backfill"), ("job", "django")]);
    assert_eq!(backfill[0].1, vec![Sample { timestamp_ms: 1_700_000_000_000, value: 7.0 }]);
    manager.shutdown().await;
    // Shutdown marks the tracked series stale, never the explicitly timestamped one.
    assert!(is_stale_nan(storage.last_sample(&active).unwrap().value));
    let backfill = storage.samples_matching(&[("__name__", "revel_backfill"), ("job", "django")]);
    assert_eq!(backfill[0].1.len(), 1);
}
