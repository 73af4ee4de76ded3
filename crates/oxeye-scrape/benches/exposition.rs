//! Parser throughput on a django-prometheus-shaped exposition of 100k samples.
//!
//! Run: `cargo bench -p oxeye-scrape --bench exposition`. Prints samples per second for parsing alone
//! and for parsing plus building each sample's `Labels`, in each format. Anchor (performance-anchors.md):
//! Prometheus parses text exposition at ≥1M samples/s per core.

use std::hint::black_box;
use std::time::Instant;

use oxeye_scrape::exposition::{ExpositionFormat, parse};

/// A body shaped like django-prometheus output: a counter by method/view/status and a latency
/// histogram by view/method, over many views.
fn synthetic_body(views: usize, openmetrics: bool) -> String {
    let mut body = String::new();
    let counter_family = if openmetrics { "django_http_requests" } else { "django_http_requests_total" };
    body.push_str(&format!("# HELP {counter_family} Total requests by method, view and status.\n"));
    body.push_str(&format!("# TYPE {counter_family} counter\n"));
    for view in 0..views {
        for (method, status) in [("GET", "200"), ("POST", "201"), ("GET", "404"), ("POST", "500")] {
            body.push_str(&format!(
                "django_http_requests_total{{method=\"{method}\",status=\"{status}\",view=\"app:view_{view}\"}} {}.0\n",
                view * 7 + 1
            ));
        }
    }
    let histogram = "django_http_requests_latency_seconds_by_view_method";
    body.push_str(&format!("# HELP {histogram} Histogram of request processing time labelled by view.\n"));
    body.push_str(&format!("# TYPE {histogram} histogram\n"));
    let bounds = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf"];
    for view in 0..views {
        for (index, bound) in bounds.iter().enumerate() {
            body.push_str(&format!(
                "{histogram}_bucket{{le=\"{bound}\",method=\"GET\",view=\"app:view_{view}\"}} {}.0\n",
                index * 3
            ));
        }
        body.push_str(&format!("{histogram}_count{{method=\"GET\",view=\"app:view_{view}\"}} 33.0\n"));
        body.push_str(&format!("{histogram}_sum{{method=\"GET\",view=\"app:view_{view}\"}} 15.814\n"));
    }
    if openmetrics {
        body.push_str("# EOF\n");
    }
    body
}

fn measure(name: &str, body: &str, format: ExpositionFormat) {
    let samples = parse(body.as_bytes(), format).map(|exposition| exposition.samples.len()).unwrap_or(0);
    assert!(samples > 0, "{name}: the synthetic body does not parse");
    let rounds = 20;
    for _ in 0..3 {
        black_box(parse(black_box(body.as_bytes()), format).map(|exposition| exposition.samples.len()).ok());
    }
    let started = Instant::now();
    for _ in 0..rounds {
        black_box(parse(black_box(body.as_bytes()), format).map(|exposition| exposition.samples.len()).ok());
    }
    let parse_rate = (samples * rounds) as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..rounds {
        if let Ok(exposition) = parse(black_box(body.as_bytes()), format) {
            for sample in &exposition.samples {
                black_box(sample.to_labels());
            }
        }
    }
    let labels_rate = (samples * rounds) as f64 / started.elapsed().as_secs_f64();
    println!(
        "{name}: {samples} samples, {} bytes; parse {:.2}M samples/s; parse + Labels {:.2}M samples/s",
        body.len(),
        parse_rate / 1e6,
        labels_rate / 1e6
    );
}

fn main() {
    let views = 5_000;
    measure("text 0.0.4", &synthetic_body(views, false), ExpositionFormat::PrometheusText004);
    measure("openmetrics 1.0.0", &synthetic_body(views, true), ExpositionFormat::OpenMetrics100);
}
