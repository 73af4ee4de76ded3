//! The synthetic fleet: Django apps instrumented with django-prometheus, scraped every 15 s.
//!
//! Each scrape target is one Django process (a Kubernetes pod) of one of three apps shaped after the seeds
//! (an event-ticketing app "revel", a CRM and a SaaS backend). A target exposes what django-prometheus and
//! prometheus_client expose — request counters and latency histograms over views × methods × status
//! codes, request/response body-size histograms, database, cache and model counters, `_created` series
//! for every counter and histogram, Python GC and process metrics — plus the app's business counters and
//! the five series Prometheus adds per scrape (`up`, `scrape_duration_seconds`, ...). About 1,000 series a
//! target; the fleet has as many targets as it takes to reach the requested number of active series (the
//! last target is cut short).
//!
//! Values evolve as real ones do: counters grow by Poisson-distributed integer increments (many rarely or
//! never move), histogram buckets stay cumulative and consistent with `_count`, `_sum` is a float,
//! `_created` and info series are constant, memory gauges walk in 4 KiB pages, CPU seconds grow by
//! hundredths, scrape durations are noisy floats. Everything comes from one seed.

use std::collections::BTreeMap;

use crate::rng::{Rng, normal_cdf};

/// Seconds between two scrapes of a target.
pub const SCRAPE_INTERVAL_MS: i64 = 15_000;

/// django-prometheus' default latency buckets (`PROMETHEUS_LATENCY_BUCKETS`), `+Inf` last.
const LATENCY_BUCKETS: [f64; 17] =
    [0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 75.0, f64::INFINITY];

/// prometheus_client's default histogram buckets, `+Inf` last.
const DEFAULT_BUCKETS: [f64; 15] =
    [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, f64::INFINITY];

/// One view of an app and the HTTP methods it serves.
struct View {
    name: &'static str,
    methods: &'static [&'static str],
}

/// One Django app of the fleet.
struct App {
    job: &'static str,
    namespace: &'static str,
    views: &'static [View],
    models: &'static [&'static str],
    business: fn(&mut FleetBuilder, &mut Rng),
}

const fn view(name: &'static str, methods: &'static [&'static str]) -> View {
    View { name, methods }
}

const APPS: [App; 3] = [
    App {
        job: "revel-web",
        namespace: "revel",
        views: &[
            view("events:event_list", &["GET"]),
            view("events:event_detail", &["GET"]),
            view("events:ticket_checkout", &["GET", "POST"]),
            view("events:rsvp", &["POST"]),
            view("api:event-list", &["GET", "POST"]),
            view("api:event-detail", &["GET", "PUT", "PATCH", "DELETE"]),
            view("api:ticket-list", &["GET"]),
            view("api:ticket-detail", &["GET", "PATCH"]),
            view("api:checkin", &["POST"]),
            view("api:questionnaire-submit", &["POST"]),
            view("accounts:login", &["GET", "POST"]),
            view("accounts:logout", &["POST"]),
            view("stripe:webhook", &["POST"]),
            view("admin:index", &["GET"]),
            view("healthcheck", &["GET"]),
            view("<unnamed view>", &["GET"]),
        ],
        models: &[
            "event",
            "ticket",
            "tickettier",
            "payment",
            "rsvp",
            "questionnairesubmission",
            "user",
            "organization",
        ],
        business: revel_business,
    },
    App {
        job: "crm-web",
        namespace: "crm",
        views: &[
            view("leads:lead-list", &["GET", "POST"]),
            view("leads:lead-detail", &["GET", "PUT", "PATCH", "DELETE"]),
            view("contacts:contact-list", &["GET", "POST"]),
            view("contacts:contact-detail", &["GET", "PATCH"]),
            view("deals:pipeline", &["GET"]),
            view("deals:deal-detail", &["GET", "PATCH"]),
            view("workflows:run", &["POST"]),
            view("reports:dashboard", &["GET"]),
            view("search", &["GET"]),
            view("accounts:login", &["GET", "POST"]),
            view("admin:index", &["GET"]),
            view("healthcheck", &["GET"]),
            view("api-docs", &["GET"]),
        ],
        models: &["lead", "contact", "deal", "activity", "workflowrun", "user"],
        business: crm_business,
    },
    App {
        job: "vasdj-api",
        namespace: "vasdj",
        views: &[
            view("auth:register", &["POST"]),
            view("auth:login", &["POST"]),
            view("auth:token-refresh", &["POST"]),
            view("organizations:org-list", &["GET", "POST"]),
            view("organizations:org-detail", &["GET", "PATCH", "DELETE"]),
            view("organizations:member-list", &["GET", "POST"]),
            view("billing:subscription", &["GET", "POST"]),
            view("billing:invoice-list", &["GET"]),
            view("users:me", &["GET", "PATCH"]),
            view("feature-flags", &["GET"]),
            view("health", &["GET"]),
            view("admin:index", &["GET"]),
        ],
        models: &["user", "organization", "membership", "subscription", "invoice", "auditlog", "apikey"],
        business: saas_business,
    },
];

/// Status codes a method answers with, and their shares.
fn statuses_for(method: &str) -> &'static [(&'static str, f64)] {
    match method {
        "GET" => &[("200", 0.93), ("304", 0.03), ("404", 0.035), ("500", 0.005)],
        "POST" => &[("200", 0.45), ("201", 0.40), ("302", 0.05), ("400", 0.07), ("403", 0.025), ("500", 0.005)],
        "DELETE" => &[("204", 0.95), ("404", 0.045), ("500", 0.005)],
        _ => &[("200", 0.90), ("400", 0.08), ("404", 0.015), ("500", 0.005)],
    }
}

/// A histogram family: `bucket_count` cumulative `_bucket` series from `first_bucket`, then `_sum` and
/// `_count`, and the bucket masses of its value distribution.
#[derive(Debug, Clone)]
struct HistogramFamily {
    first_bucket: u32,
    sum: u32,
    count: u32,
    /// Probability that one observation falls in bucket i (not cumulative).
    mass: Vec<f64>,
    /// A typical observed value in bucket i, for `_sum`.
    representative: Vec<f64>,
}

/// How one or more series change every scrape.
#[derive(Debug, Clone)]
enum Updater {
    /// An integer counter growing by Poisson(`rate_per_scrape`).
    Counter { series: u32, rate_per_scrape: f64 },
    /// A float counter (CPU seconds) growing by about `mean_per_scrape`, in multiples of `quantum`.
    FloatCounter { series: u32, mean_per_scrape: f64, quantum: f64 },
    /// A gauge walking by multiples of `step` between `min` and `max`.
    Walk { series: u32, step: f64, min: f64, max: f64 },
    /// A gauge redrawn uniformly in [low, high) every scrape.
    Noise { series: u32, low: f64, high: f64 },
    /// A histogram observing Poisson(`rate_per_scrape`) values.
    Histogram { family: u32, rate_per_scrape: f64 },
    /// Requests to one view and method: its latency histogram sets the request count `n`; `exact` series
    /// grow by `n`, `scaled` ones by Poisson(n × factor), `split` pairs (view-level series, aggregate
    /// series) share `n` by status, and `histograms` observe Poisson(n) values each.
    Traffic {
        rate_per_scrape: f64,
        latency: u32,
        exact: Vec<u32>,
        scaled: Vec<(u32, f64)>,
        split: Vec<(u32, u32, f64)>,
        histograms: Vec<u32>,
    },
}

/// The fleet: series labels, the targets they belong to, their current values and how they evolve.
#[derive(Debug)]
pub struct Fleet {
    /// Label pairs of each series, sorted by name (`__name__` first), for series `0..active`.
    pub labels: Vec<Vec<(String, String)>>,
    /// The target (index into `target_offsets_ms`) of each series.
    pub series_target: Vec<u32>,
    /// Each target's scrape offset within the interval, milliseconds in [0, 15000).
    pub target_offsets_ms: Vec<i64>,
    /// Series per metric family (metric name without `_bucket`/`_sum`/`_count`/`_created`/`_total`), for the
    /// docs.
    pub families: BTreeMap<String, u64>,
    values: Vec<f64>,
    updaters: Vec<Updater>,
    histograms: Vec<HistogramFamily>,
    rng: Rng,
    active: usize,
}

impl Fleet {
    /// Builds a fleet of at least `active_series` series from `seed`, with counters initialised as if each
    /// process had been up for a random while, and process start times before `now_seconds`. Only the
    /// first `active_series` series are kept and sent.
    pub fn build(active_series: usize, seed: u64, now_seconds: f64) -> Fleet {
        let mut builder = FleetBuilder::new(seed);
        let mut target_index = 0usize;
        while builder.values.len() < active_series {
            let app = &APPS[target_index % APPS.len()];
            builder.add_target(app, target_index, now_seconds);
            target_index += 1;
        }
        let mut labels = builder.labels;
        labels.truncate(active_series);
        let mut families = BTreeMap::new();
        for pairs in &labels {
            let name = pairs.iter().find(|(key, _)| key == "__name__").map(|(_, value)| value.as_str()).unwrap_or("");
            *families.entry(family_name(name).to_string()).or_insert(0u64) += 1;
        }
        let mut series_target = builder.series_target;
        series_target.truncate(active_series);
        Fleet {
            labels,
            series_target,
            target_offsets_ms: builder.target_offsets_ms,
            families,
            values: builder.values,
            updaters: builder.updaters,
            histograms: builder.histograms,
            rng: builder.rng,
            active: active_series,
        }
    }

    /// Number of active series (those sent).
    pub fn active_series(&self) -> usize {
        self.active
    }

    /// Number of scrape targets.
    pub fn targets(&self) -> usize {
        self.target_offsets_ms.len()
    }

    /// Current values of the active series.
    pub fn values(&self) -> &[f64] {
        &self.values[..self.active]
    }

    /// Advances every series by one scrape interval.
    pub fn step(&mut self) {
        let mut updaters = std::mem::take(&mut self.updaters);
        for updater in &updaters {
            apply(updater, 1.0, &mut self.values, &self.histograms, &mut self.rng);
        }
        std::mem::swap(&mut self.updaters, &mut updaters);
    }
}

/// The family a sample name belongs to, for counting.
fn family_name(name: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count", "_created", "_total"] {
        if let Some(stripped) = name.strip_suffix(suffix) {
            return stripped;
        }
    }
    name
}

fn apply(updater: &Updater, scale: f64, values: &mut [f64], histograms: &[HistogramFamily], rng: &mut Rng) {
    match updater {
        Updater::Counter { series, rate_per_scrape } => {
            values[*series as usize] += rng.poisson(rate_per_scrape * scale) as f64;
        }
        Updater::FloatCounter { series, mean_per_scrape, quantum } => {
            let increment = mean_per_scrape * scale * rng.uniform(0.5, 1.5);
            let value = values[*series as usize] + (increment / quantum).round() * quantum;
            // Keep the decimal look of a value printed with two decimals.
            values[*series as usize] = (value / quantum).round() * quantum;
        }
        Updater::Walk { series, step, min, max } => {
            if scale == 1.0 && rng.unit() < 0.5 {
                let moves = rng.below(9) as f64 - 4.0;
                let next = values[*series as usize] + moves * step;
                values[*series as usize] = next.clamp(*min, *max);
            }
        }
        Updater::Noise { series, low, high } => {
            values[*series as usize] = rng.uniform(*low, *high);
        }
        Updater::Histogram { family, rate_per_scrape } => {
            observe(&histograms[*family as usize], rate_per_scrape * scale, values, rng);
        }
        Updater::Traffic { rate_per_scrape, latency, exact, scaled, split, histograms: others } => {
            let requests = observe(&histograms[*latency as usize], rate_per_scrape * scale, values, rng);
            let requests_f = requests as f64;
            for series in exact {
                values[*series as usize] += requests_f;
            }
            for (series, factor) in scaled {
                values[*series as usize] += rng.poisson(requests_f * factor) as f64;
            }
            let mut remaining = requests;
            for (index, (view_series, aggregate_series, share)) in split.iter().enumerate() {
                let taken =
                    if index + 1 == split.len() { remaining } else { rng.poisson(requests_f * share).min(remaining) };
                remaining -= taken;
                values[*view_series as usize] += taken as f64;
                values[*aggregate_series as usize] += taken as f64;
            }
            for family in others {
                observe(&histograms[*family as usize], requests_f, values, rng);
            }
        }
    }
}

/// Adds Poisson(`mean`) observations to a histogram family; returns how many.
fn observe(family: &HistogramFamily, mean: f64, values: &mut [f64], rng: &mut Rng) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    let mut cumulative = 0u64;
    let mut sum = 0.0;
    for (index, (mass, representative)) in family.mass.iter().zip(&family.representative).enumerate() {
        let in_bucket = rng.poisson(mean * mass);
        if in_bucket > 0 {
            cumulative += in_bucket;
            sum += in_bucket as f64 * representative * rng.uniform(0.7, 1.3);
        }
        values[family.first_bucket as usize + index] += cumulative as f64;
    }
    values[family.sum as usize] += sum;
    values[family.count as usize] += cumulative as f64;
    cumulative
}

/// Formats a bucket bound as prometheus_client does (`1.0`, `0.025`, `+Inf`).
fn format_bound(bound: f64) -> String {
    if bound.is_infinite() {
        "+Inf".to_string()
    } else if bound.fract() == 0.0 {
        format!("{bound:.1}")
    } else {
        format!("{bound}")
    }
}

/// Accumulates series and updaters target by target.
struct FleetBuilder {
    labels: Vec<Vec<(String, String)>>,
    series_target: Vec<u32>,
    target_offsets_ms: Vec<i64>,
    values: Vec<f64>,
    updaters: Vec<Updater>,
    histograms: Vec<HistogramFamily>,
    rng: Rng,
    target_labels: Vec<(String, String)>,
    target_index: u32,
    created_seconds: f64,
}

impl FleetBuilder {
    fn new(seed: u64) -> Self {
        FleetBuilder {
            labels: Vec::new(),
            series_target: Vec::new(),
            target_offsets_ms: Vec::new(),
            values: Vec::new(),
            updaters: Vec::new(),
            histograms: Vec::new(),
            rng: Rng::new(seed),
            target_labels: Vec::new(),
            target_index: 0,
            created_seconds: 0.0,
        }
    }

    /// A new series with the target's labels plus `extra`, starting at `initial`.
    fn series(&mut self, name: &str, extra: &[(&str, &str)], initial: f64) -> u32 {
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(self.target_labels.len() + extra.len() + 1);
        pairs.push(("__name__".to_string(), name.to_string()));
        pairs.extend(self.target_labels.iter().cloned());
        pairs.extend(extra.iter().map(|(key, value)| ((*key).to_string(), (*value).to_string())));
        pairs.sort();
        let id = self.values.len() as u32;
        self.labels.push(pairs);
        self.series_target.push(self.target_index);
        self.values.push(initial);
        id
    }

    /// A constant series.
    fn constant(&mut self, name: &str, extra: &[(&str, &str)], value: f64) -> u32 {
        self.series(name, extra, value)
    }

    /// A `_total` counter plus its `_created` series; returns the counter's id.
    fn counter_series(&mut self, base: &str, extra: &[(&str, &str)]) -> u32 {
        let id = self.series(&format!("{base}_total"), extra, 0.0);
        let created = self.created_seconds + self.rng.uniform(0.0, 2.0);
        self.constant(&format!("{base}_created"), extra, (created * 1000.0).round() / 1000.0);
        id
    }

    /// A counter with its own Poisson updater.
    fn counter(&mut self, base: &str, extra: &[(&str, &str)], rate_per_second: f64) -> u32 {
        let series = self.counter_series(base, extra);
        self.updaters
            .push(Updater::Counter { series, rate_per_scrape: rate_per_second * SCRAPE_INTERVAL_MS as f64 / 1000.0 });
        series
    }

    /// A histogram family of a log-normal distribution with the given median and shape, with its
    /// `_created` series; returns the family index.
    fn histogram(&mut self, base: &str, extra: &[(&str, &str)], bounds: &[f64], median: f64, sigma: f64) -> u32 {
        let mut first_bucket = None;
        let mut mass = Vec::with_capacity(bounds.len());
        let mut representative = Vec::with_capacity(bounds.len());
        let mut previous_cdf = 0.0;
        let mut previous_bound = 0.0;
        for bound in bounds {
            let le = format_bound(*bound);
            let mut pairs: Vec<(&str, &str)> = extra.to_vec();
            pairs.push(("le", &le));
            let id = self.series(&format!("{base}_bucket"), &pairs, 0.0);
            first_bucket.get_or_insert(id);
            let cdf = if bound.is_infinite() { 1.0 } else { normal_cdf((bound.ln() - median.ln()) / sigma) };
            mass.push((cdf - previous_cdf).max(0.0));
            representative.push(if bound.is_infinite() {
                previous_bound * 1.5
            } else if previous_bound == 0.0 {
                bound * 0.6
            } else {
                (bound * previous_bound).sqrt()
            });
            previous_cdf = cdf;
            previous_bound = *bound;
        }
        let count = self.series(&format!("{base}_count"), extra, 0.0);
        let sum = self.series(&format!("{base}_sum"), extra, 0.0);
        let created = self.created_seconds + self.rng.uniform(0.0, 2.0);
        self.constant(&format!("{base}_created"), extra, (created * 1000.0).round() / 1000.0);
        self.histograms.push(HistogramFamily {
            first_bucket: first_bucket.unwrap_or(count),
            sum,
            count,
            mass,
            representative,
        });
        (self.histograms.len() - 1) as u32
    }

    fn walk(&mut self, name: &str, extra: &[(&str, &str)], initial: f64, step: f64, min: f64, max: f64) {
        let series = self.series(name, extra, initial);
        self.updaters.push(Updater::Walk { series, step, min, max });
    }

    fn noise(&mut self, name: &str, extra: &[(&str, &str)], low: f64, high: f64) {
        let series = self.series(name, extra, low);
        self.updaters.push(Updater::Noise { series, low, high });
    }

    fn add_target(&mut self, app: &App, target_index: usize, now_seconds: f64) {
        let mut rng = Rng::new(self.rng.next_u64());
        let pod_hash = rng.next_u64();
        let pod = format!(
            "{}-{:010x}-{}",
            app.job,
            pod_hash & 0xff_ffff_ffff,
            (0..5).map(|_| (b'a' + rng.below(26) as u8) as char).collect::<String>()
        );
        let instance =
            format!("10.{}.{}.{}:8000", 20 + target_index / 65_536 % 200, target_index / 256 % 256, target_index % 256);
        self.target_labels = vec![
            ("instance".to_string(), instance),
            ("job".to_string(), app.job.to_string()),
            ("namespace".to_string(), app.namespace.to_string()),
            ("pod".to_string(), pod),
        ];
        self.target_index = target_index as u32;
        self.target_offsets_ms.push(rng.below(SCRAPE_INTERVAL_MS as u64) as i64);
        // Each process has been up for 25 minutes to 4 days; counters start where that uptime left them.
        let uptime_scrapes = rng.uniform(100.0, 23_000.0);
        self.created_seconds = (now_seconds - uptime_scrapes * 15.0).floor() + rng.uniform(0.0, 1.0);
        let first_updater = self.updaters.len();
        let first_series = self.values.len();

        let requests_per_second = rng.uniform(2.0, 30.0);
        let combos: Vec<(&str, &str)> =
            app.views.iter().flat_map(|view| view.methods.iter().map(move |method| (view.name, *method))).collect();
        let weights: Vec<f64> = combos.iter().map(|_| (rng.normal() * 1.2).exp()).collect();
        let weight_total: f64 = weights.iter().sum();

        // Instance-level django-prometheus series shared by every view.
        let mut by_method = BTreeMap::new();
        for (_, method) in &combos {
            if !by_method.contains_key(*method) {
                let id = self.counter_series("django_http_requests_total_by_method", &[("method", method)]);
                by_method.insert(*method, id);
            }
        }
        let mut by_status = BTreeMap::new();
        for (_, method) in &combos {
            for (status, _) in statuses_for(method) {
                if !by_status.contains_key(*status) {
                    let id = self.counter_series("django_http_responses_total_by_status", &[("status", status)]);
                    by_status.insert(*status, id);
                }
            }
        }
        let by_transport = self.counter_series("django_http_requests_total_by_transport", &[("transport", "http")]);
        let before_requests = self.counter_series("django_http_requests_before_middlewares", &[]);
        let before_responses = self.counter_series("django_http_responses_before_middlewares", &[]);
        let charset = self.counter_series("django_http_responses_total_by_charset", &[("charset", "utf-8")]);
        self.counter("django_http_requests_unknown_latency", &[], 0.0);
        self.counter("django_http_requests_unknown_latency_including_middlewares", &[], 0.0);
        self.counter("django_http_ajax_requests", &[], 0.0);
        self.counter("django_http_responses_streaming", &[], 0.0);
        let including_middlewares = self.histogram(
            "django_http_requests_latency_including_middlewares_seconds",
            &[],
            &LATENCY_BUCKETS,
            0.08,
            0.9,
        );
        let powers_of_two: Vec<f64> =
            (0..30).map(|exponent| f64::from(1u32 << exponent)).chain(std::iter::once(f64::INFINITY)).collect();
        let request_body = self.histogram("django_http_requests_body_total_bytes", &[], &powers_of_two, 40.0, 2.5);
        let response_body = self.histogram("django_http_responses_body_total_bytes", &[], &powers_of_two, 6_000.0, 1.2);
        let database = [("alias", "default"), ("vendor", "postgresql")];
        let db_execute = self.counter_series("django_db_execute", &database);
        self.counter("django_db_execute_many", &database, 0.002);
        self.counter("django_db_new_connections", &database, 0.01);
        self.counter("django_db_new_connection_errors", &database, 0.0);
        self.counter(
            "django_db_errors",
            &[("alias", "default"), ("type", "IntegrityError"), ("vendor", "postgresql")],
            0.0005,
        );
        let db_duration = self.histogram("django_db_query_duration_seconds", &database, &DEFAULT_BUCKETS, 0.004, 1.0);
        let cache = [("backend", "django_redis.cache.RedisCache")];
        let cache_get = self.counter_series("django_cache_get", &cache);
        let cache_hits = self.counter_series("django_cache_get_hits", &cache);
        let cache_misses = self.counter_series("django_cache_get_misses", &cache);
        self.counter("django_cache_get_fail", &cache, 0.0);
        let mut model_series = Vec::new();
        for model in app.models {
            model_series.push(self.counter_series("django_model_inserts", &[("model", model)]));
            model_series.push(self.counter_series("django_model_updates", &[("model", model)]));
            model_series.push(self.counter_series("django_model_deletes", &[("model", model)]));
        }
        self.constant("django_migrations_applied_total", &[("connection", "default")], rng.below(120) as f64 + 30.0);
        self.constant("django_migrations_unapplied_total", &[("connection", "default")], 0.0);

        for ((view_name, method), weight) in combos.iter().zip(&weights) {
            let rate_per_scrape = requests_per_second * weight / weight_total * 15.0;
            let view_method = [("method", *method), ("view", *view_name)];
            let latency = self.histogram(
                "django_http_requests_latency_seconds_by_view_method",
                &view_method,
                &LATENCY_BUCKETS,
                rng.uniform(0.015, 0.3),
                rng.uniform(0.5, 1.1),
            );
            let transport = self.counter_series(
                "django_http_requests_total_by_view_transport_method",
                &[("method", method), ("transport", "http"), ("view", view_name)],
            );
            let mut split = Vec::new();
            for (status, share) in statuses_for(method) {
                let view_status = self.counter_series(
                    "django_http_responses_total_by_status_view_method",
                    &[("method", method), ("status", status), ("view", view_name)],
                );
                split.push((view_status, by_status[status], *share));
            }
            let mut exact =
                vec![transport, by_method[method], by_transport, before_requests, before_responses, charset];
            exact.push(cache_get);
            let writes = *method != "GET";
            let mut scaled = vec![(db_execute, rng.uniform(2.0, 9.0)), (cache_hits, 0.85), (cache_misses, 0.15)];
            if writes && !model_series.is_empty() {
                let model = rng.below(model_series.len() as u64) as usize;
                scaled.push((model_series[model], 0.6));
            }
            exact.sort_unstable();
            exact.dedup();
            self.updaters.push(Updater::Traffic {
                rate_per_scrape,
                latency,
                exact,
                scaled,
                split,
                histograms: vec![including_middlewares, request_body, response_body, db_duration],
            });
        }
        self.counter("django_http_exceptions_total_by_type", &[("type", "ValidationError")], 0.002);
        self.counter("django_http_exceptions_total_by_type", &[("type", "OperationalError")], 0.0);
        self.counter("django_http_exceptions_total_by_view", &[("view", app.views[0].name)], 0.001);

        (app.business)(self, &mut rng);

        // prometheus_client's default collectors.
        for (generation, rate) in [("0", 8.0), ("1", 0.7), ("2", 0.05)] {
            self.counter_no_created("python_gc_collections_total", &[("generation", generation)], rate);
            self.counter_no_created("python_gc_objects_collected_total", &[("generation", generation)], rate * 40.0);
            self.constant("python_gc_objects_uncollectable_total", &[("generation", generation)], 0.0);
        }
        self.constant(
            "python_info",
            &[
                ("implementation", "CPython"),
                ("major", "3"),
                ("minor", "12"),
                ("patchlevel", "7"),
                ("version", "3.12.7"),
            ],
            1.0,
        );
        let resident = (rng.uniform(120.0, 320.0) * 256.0).round() * 4096.0;
        self.walk("process_resident_memory_bytes", &[], resident, 4096.0, resident * 0.8, resident * 1.6);
        self.walk("process_virtual_memory_bytes", &[], resident * 4.0, 4096.0 * 16.0, resident * 3.0, resident * 6.0);
        self.constant("process_start_time_seconds", &[], (self.created_seconds * 100.0).round() / 100.0);
        let cpu = self.series("process_cpu_seconds_total", &[], 0.0);
        self.updaters.push(Updater::FloatCounter {
            series: cpu,
            mean_per_scrape: requests_per_second * 0.15,
            quantum: 0.01,
        });
        self.walk("process_open_fds", &[], rng.below(40) as f64 + 20.0, 1.0, 12.0, 90.0);
        self.constant("process_max_fds", &[], 1_048_576.0);

        // What Prometheus' scrape loop adds to each target.
        let exposed = (self.values.len() - first_series) as f64;
        self.constant("up", &[], 1.0);
        self.noise("scrape_duration_seconds", &[], 0.004, 0.06);
        self.constant("scrape_samples_scraped", &[], exposed);
        self.constant("scrape_samples_post_metric_relabeling", &[], exposed);
        self.constant("scrape_series_added", &[], 0.0);

        // Bring the counters to where `uptime_scrapes` scrapes would have left them.
        let histograms = std::mem::take(&mut self.histograms);
        for updater in &self.updaters[first_updater..] {
            apply(updater, uptime_scrapes, &mut self.values, &histograms, &mut rng);
        }
        self.histograms = histograms;
    }

    /// A `_total` counter without `_created` (prometheus_client's GC collector has none).
    fn counter_no_created(&mut self, name: &str, extra: &[(&str, &str)], rate_per_second: f64) {
        let series = self.series(name, extra, 0.0);
        self.updaters.push(Updater::Counter { series, rate_per_scrape: rate_per_second * 15.0 });
    }
}

/// Business metrics of the event-ticketing app (names and labels from the seeds).
fn revel_business(builder: &mut FleetBuilder, rng: &mut Rng) {
    let organizations: Vec<String> = (0..3).map(|_| format!("{}", 1000 + rng.below(9000))).collect();
    for organization in &organizations {
        for event in 0..2 {
            let event_id = format!("{}", 50_000 + rng.below(50_000) + event);
            for tier in ["general", "vip"] {
                for payment in ["online", "offline", "free", "at_door"] {
                    let rate = if rng.unit() < 0.4 { 0.0 } else { rng.uniform(0.0005, 0.02) };
                    builder.counter(
                        "revel_tickets_sold",
                        &[
                            ("event_id", &event_id),
                            ("organization_id", organization),
                            ("payment_method", payment),
                            ("tier_id", tier),
                        ],
                        rate,
                    );
                }
            }
            builder.counter(
                "revel_tickets_checked_in",
                &[("event_id", &event_id), ("organization_id", organization)],
                0.01,
            );
            builder.counter(
                "revel_tickets_cancelled",
                &[("event_id", &event_id), ("organization_id", organization), ("reason", "refund")],
                0.0005,
            );
        }
        for status in ["pending", "succeeded", "failed", "refunded"] {
            builder.counter(
                "revel_payments",
                &[("organization_id", organization), ("payment_method", "online"), ("status", status)],
                if status == "succeeded" { 0.02 } else { 0.002 },
            );
        }
        let revenue =
            builder.series("revel_revenue_total", &[("currency", "EUR"), ("organization_id", organization)], 0.0);
        builder.updaters.push(Updater::FloatCounter { series: revenue, mean_per_scrape: 8.0, quantum: 0.01 });
        builder.walk("revel_events_active", &[("organization_id", organization)], rng.below(12) as f64, 1.0, 0.0, 40.0);
    }
    for email in ["ticket_confirmation", "reminder", "password_reset", "invitation", "newsletter"] {
        builder.counter("revel_emails_sent", &[("email_type", email)], rng.uniform(0.0, 0.05));
    }
    for task in ["send_email", "evaluate_questionnaire", "expire_checkouts"] {
        for state in ["succeeded", "failed", "retried"] {
            builder.counter(
                "revel_celery_tasks",
                &[("state", state), ("task_name", task)],
                if state == "succeeded" { 0.05 } else { 0.001 },
            );
        }
        builder.histogram("revel_celery_task_duration_seconds", &[("task_name", task)], &DEFAULT_BUCKETS, 0.4, 1.0);
    }
    builder.counter("revel_llm_tokens_consumed", &[("model", "gpt-4o-mini")], 3.0);
}

/// Business metrics of the CRM app.
fn crm_business(builder: &mut FleetBuilder, rng: &mut Rng) {
    for source in ["web", "import", "api", "referral", "event"] {
        builder.counter("crm_leads_created", &[("source", source)], rng.uniform(0.0, 0.03));
    }
    builder.counter("lead_score_recalculations", &[], 0.2);
    for workflow in ["welcome", "nurture", "handoff", "cleanup"] {
        for status in ["completed", "failed", "skipped"] {
            builder.counter("workflow_runs", &[("status", status), ("workflow", workflow)], rng.uniform(0.0, 0.02));
        }
        builder.counter("workflow_action_failures", &[("action", workflow)], 0.0);
    }
    builder.walk("websocket_active_connections_gauge", &[], rng.below(60) as f64, 1.0, 0.0, 400.0);
    for kind in ["notification", "presence", "update"] {
        builder.counter("websocket_messages_sent", &[("type", kind)], rng.uniform(0.1, 3.0));
    }
    for queue in ["default", "high", "low"] {
        builder.walk("celery_queue_length_gauge", &[("queue", queue)], 0.0, 1.0, 0.0, 50.0);
    }
}

/// Business metrics of the SaaS backend.
fn saas_business(builder: &mut FleetBuilder, rng: &mut Rng) {
    for method in ["email", "google", "github"] {
        builder.counter("app_user_registrations", &[("method", method)], rng.uniform(0.0, 0.01));
    }
    for result in ["success", "failure"] {
        builder.counter("app_login_attempts", &[("result", result)], if result == "success" { 0.3 } else { 0.03 });
    }
    for flag in
        ["new_billing", "beta_dashboard", "sso", "audit_export", "ai_assist", "dark_mode", "bulk_invite", "v2_api"]
    {
        for result in ["enabled", "disabled"] {
            builder.counter(
                "app_feature_flag_evaluations",
                &[("flag", flag), ("result", result)],
                rng.uniform(0.0, 2.0),
            );
        }
    }
    for endpoint in ["login", "register", "api", "export", "webhook"] {
        builder.counter("app_rate_limit_hits", &[("endpoint", endpoint)], rng.uniform(0.0, 0.01));
    }
    for operation in ["create", "update", "delete", "invite"] {
        builder.counter("app_organization_operations", &[("operation", operation)], rng.uniform(0.0, 0.02));
    }
    let payment = builder.histogram("app_payment_duration_seconds", &[], &DEFAULT_BUCKETS, 0.8, 0.7);
    builder.updaters.push(Updater::Histogram { family: payment, rate_per_scrape: 0.15 });
    builder.walk("app_active_connections", &[], rng.below(30) as f64, 1.0, 0.0, 200.0);
    for operation in ["get", "set"] {
        for result in ["hit", "miss"] {
            builder.counter(
                "app_cache_operations",
                &[("operation", operation), ("result", result)],
                rng.uniform(0.5, 5.0),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_has_exactly_the_requested_series_with_unique_label_sets() {
        let fleet = Fleet::build(5_000, 1, 1.7e9);
        assert_eq!(fleet.labels.len(), 5_000);
        assert_eq!(fleet.values().len(), 5_000);
        let unique: std::collections::HashSet<_> = fleet.labels.iter().collect();
        assert_eq!(unique.len(), 5_000, "label sets must be unique");
        for pairs in &fleet.labels {
            assert_eq!(pairs[0].0, "__name__");
            assert!(pairs.windows(2).all(|window| window[0].0 < window[1].0), "labels sorted and distinct: {pairs:?}");
        }
        assert!(fleet.families.contains_key("django_http_requests_latency_seconds_by_view_method"));
        assert!(fleet.families.contains_key("revel_tickets_sold"));
        assert!(fleet.targets() >= 4, "about 1,000 series per target");
    }

    #[test]
    fn counters_never_decrease_and_buckets_stay_cumulative() {
        let mut fleet = Fleet::build(3_000, 9, 1.7e9);
        let before = fleet.values().to_vec();
        for _ in 0..5 {
            fleet.step();
        }
        let after = fleet.values().to_vec();
        let mut moved = 0;
        let mut constant = 0;
        for (index, pairs) in fleet.labels.iter().enumerate() {
            let name = &pairs[0].1;
            if name.ends_with("_total") || name.ends_with("_bucket") || name.ends_with("_count") {
                assert!(after[index] >= before[index], "{name} went down");
            }
            if after[index] == before[index] {
                constant += 1;
            } else {
                moved += 1;
            }
        }
        assert!(
            moved > 500 && constant > 500,
            "a mix of moving and constant series: {moved} moved, {constant} constant"
        );
        // Buckets of one histogram are non-decreasing in `le` order and end at `_count`.
        let first = fleet
            .labels
            .iter()
            .position(|pairs| pairs[0].1 == "django_http_requests_latency_seconds_by_view_method_bucket")
            .unwrap_or(0);
        let buckets = &after[first..first + LATENCY_BUCKETS.len()];
        assert!(buckets.windows(2).all(|window| window[0] <= window[1]), "{buckets:?}");
        assert_eq!(after[first + LATENCY_BUCKETS.len()], buckets[LATENCY_BUCKETS.len() - 1], "_count equals +Inf");
    }

    #[test]
    fn same_seed_builds_the_same_fleet() {
        let mut first = Fleet::build(2_000, 5, 1.7e9);
        let mut second = Fleet::build(2_000, 5, 1.7e9);
        first.step();
        second.step();
        assert_eq!(first.labels, second.labels);
        assert_eq!(first.values(), second.values());
    }

    #[test]
    fn bounds_are_formatted_like_prometheus_client() {
        assert_eq!(format_bound(1.0), "1.0");
        assert_eq!(format_bound(0.025), "0.025");
        assert_eq!(format_bound(f64::INFINITY), "+Inf");
        assert_eq!(format_bound(536_870_912.0), "536870912.0");
    }
}
