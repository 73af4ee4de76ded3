//! Query latency on a Django-shaped fixture (the dashboards of the seeds): request counters by view,
//! method and status, and a request-duration histogram, scraped every 15 s for 6 hours.
//!
//! Run: `cargo bench -p oxeye-promql --bench engine` (prints the median of several runs per query).

use std::time::{Duration, Instant};

use oxeye_model::{Labels, Sample};
use oxeye_promql::testing::MemoryQuerier;
use oxeye_promql::{Engine, EngineOptions};

const SCRAPE_INTERVAL_MS: i64 = 15_000;
const HOURS: i64 = 6;

fn fixture() -> (MemoryQuerier, usize) {
    let mut store = MemoryQuerier::new();
    let mut series_count = 0;
    let samples_per_series = HOURS * 3_600_000 / SCRAPE_INTERVAL_MS;
    let views: Vec<String> = (0..40).map(|index| format!("app.views.view_{index}")).collect();
    for (view_index, view) in views.iter().enumerate() {
        for method in ["GET", "POST"] {
            for status in ["200", "302", "404", "500"] {
                let labels = Labels::from_pairs([
                    ("__name__", "django_http_responses_total_by_status_view_method_total"),
                    ("job", "django"),
                    ("instance", "web-1:8000"),
                    ("view", view.as_str()),
                    ("method", method),
                    ("status", status),
                ]);
                let rate = (view_index % 7 + 1) as f64 * if status == "200" { 3.0 } else { 0.1 };
                for index in 0..samples_per_series {
                    let value = (index as f64 * rate * 15.0).floor();
                    store.add_sample(&labels, Sample { timestamp_ms: index * SCRAPE_INTERVAL_MS, value });
                }
                series_count += 1;
            }
        }
        for bound in ["0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"] {
            let labels = Labels::from_pairs([
                ("__name__", "django_http_requests_latency_seconds_by_view_method_bucket"),
                ("job", "django"),
                ("instance", "web-1:8000"),
                ("view", view.as_str()),
                ("method", "GET"),
                ("le", bound),
            ]);
            let share = match bound.parse::<f64>() {
                Ok(upper) => (upper * 4.0).min(1.0),
                Err(_) => 1.0,
            };
            for index in 0..samples_per_series {
                let value = (index as f64 * 45.0 * share).floor();
                store.add_sample(&labels, Sample { timestamp_ms: index * SCRAPE_INTERVAL_MS, value });
            }
            series_count += 1;
        }
    }
    (store, series_count)
}

fn median(mut durations: Vec<Duration>) -> Duration {
    durations.sort();
    durations[durations.len() / 2]
}

fn main() {
    let (store, series_count) = fixture();
    let engine = Engine::new(EngineOptions::default());
    let end_ms = HOURS * 3_600_000;
    println!("fixture: {series_count} series, {} samples each", end_ms / SCRAPE_INTERVAL_MS);
    let queries = [
        "sum(rate(django_http_responses_total_by_status_view_method_total[5m]))",
        "sum by (status) (rate(django_http_responses_total_by_status_view_method_total{status=~\"5..\"}[5m]))",
        "topk(5, sum by (view) (rate(django_http_responses_total_by_status_view_method_total[5m])))",
        "histogram_quantile(0.95, sum by (le) (rate(django_http_requests_latency_seconds_by_view_method_bucket[5m])))",
        "sum(rate(django_http_responses_total_by_status_view_method_total{status=\"500\"}[5m])) / sum(rate(django_http_responses_total_by_status_view_method_total[5m]))",
        "max_over_time(sum(rate(django_http_responses_total_by_status_view_method_total[1m]))[30m:1m])",
    ];
    // The store's own share: selecting the counter series for one 5 minute window and for 3 hours.
    for (label, mint_ms) in [("select 5m", end_ms - 300_000), ("select 3h", end_ms - 3 * 3_600_000 - 300_000)] {
        let matchers =
            [oxeye_model::Matcher::equal("__name__", "django_http_responses_total_by_status_view_method_total")];
        let mut timings = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let selected = oxeye_model::storage::Querier::select(&store, mint_ms, end_ms, &matchers);
            timings.push(started.elapsed());
            assert!(selected.is_ok());
        }
        println!("{label:>26} {:>10.3?}  (MemoryQuerier, included in the query times)", median(timings));
    }
    // BENCH_ITERATIONS raises the repetitions (e.g. to profile the engine rather than the fixture).
    let iterations: usize = std::env::var("BENCH_ITERATIONS").ok().and_then(|text| text.parse().ok()).unwrap_or(5);
    for query in queries {
        let mut instant = Vec::new();
        let mut range = Vec::new();
        for _ in 0..iterations {
            let started = Instant::now();
            let result = engine.instant_query(&store, query, end_ms);
            instant.push(started.elapsed());
            assert!(result.is_ok(), "{query}: {result:?}");
            if std::env::var_os("BENCH_INSTANT_ONLY").is_some() {
                range.push(Duration::ZERO);
                continue;
            }
            let started = Instant::now();
            let result = engine.range_query(&store, query, end_ms - 3 * 3_600_000, end_ms, 60_000);
            range.push(started.elapsed());
            assert!(result.is_ok(), "{query}: {result:?}");
        }
        println!("instant {:>10.3?}  range 3h/60s {:>10.3?}  {query}", median(instant), median(range));
    }
}
