//! Logs ingest throughput on a seed-shaped corpus: the work of `POST /loki/api/v1/push` minus HTTP — decode
//! the JSON push body, redact (seed default rules), append durably (WAL group commit with fsync) — then cut
//! and write every chunk, and report per-core rates and stored bytes per line.
//!
//! The corpus is structlog JSON as the seeds' boxoffice app writes it: per request about four lines sharing a
//! `request_id`, `trace_id`, `span_id` and `user_id` (`request_started`, a domain event, a cache or query
//! event, `request_finished` with status and duration), microsecond ISO timestamps, two services, a few
//! percent warnings and errors, and one login line in fifty carrying a password to redact.
//!
//! ```text
//! cargo run --release -p oxeye-logstore --example ingest_throughput -- [lines] [lines_per_push] [dir]
//! ```
//! Defaults: 1,000,000 lines, 1,000 lines per push, a temporary directory. CPU time is the process's user +
//! system time over the timed phase (read from `/proc/self/stat`, Linux only), so "per core" figures are
//! throughput per CPU-second.

use std::time::Instant;

use oxeye_logstore::{LogStore, LogStoreOptions};
use oxeye_pipeline::{RedactionOptions, Redactor};

/// A small deterministic generator (xorshift64*), so every run ingests the same corpus.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn hex(&mut self, digits: usize) -> String {
        let mut text = String::with_capacity(digits);
        while text.len() < digits {
            text.push_str(&format!("{:016x}", self.next()));
        }
        text.truncate(digits);
        text
    }
}

fn iso_timestamp(timestamp_ns: i64) -> String {
    let seconds = timestamp_ns.div_euclid(1_000_000_000);
    let micros = timestamp_ns.rem_euclid(1_000_000_000) / 1000;
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

const ENDPOINTS: [(&str, &str, &str); 6] = [
    ("event-list", "GET", "/api/events/"),
    ("event-detail", "GET", "/api/events/{id}/"),
    ("ticket-checkout", "POST", "/api/events/{id}/checkout/"),
    ("auth-login", "POST", "/api/auth/login/"),
    ("order-list", "GET", "/api/orders/"),
    ("healthz", "GET", "/healthz"),
];

/// One request's lines: (service, timestamp ns, line).
fn request_lines(random: &mut Random, request: u64, start_ns: i64, out: &mut Vec<(usize, i64, String)>) {
    let service = usize::from(random.below(4) == 0);
    let (endpoint, method, path_template) = ENDPOINTS[random.below(ENDPOINTS.len() as u64) as usize];
    let event_id = random.below(40) + 1;
    let path = path_template.replace("{id}", &event_id.to_string());
    let request_id = format!("{:08x}-{}", request / 1000, random.hex(12));
    let trace_id = random.hex(32);
    let span_id = random.hex(16);
    let user_id = random.below(5000) + 1;
    let ip = format!("10.0.{}.{}", random.below(8), random.below(250) + 2);
    let context = format!(
        r#""request_id": "{request_id}", "method": "{method}", "trace_id": "{trace_id}", "user_id": "{user_id}", "endpoint": "{endpoint}", "ip_address": "{ip}", "path": "{path}""#
    );
    let logger = if service == 0 { "boxoffice.views" } else { "boxoffice.tasks" };
    let mut timestamp_ns = start_ns;
    let mut line = |out: &mut Vec<(usize, i64, String)>, level: &str, event_fields: String, step_us: u64| {
        timestamp_ns += (step_us * 1000) as i64;
        out.push((
            service,
            timestamp_ns,
            format!(
                r#"{{{event_fields}, {context}, "level": "{level}", "logger": "{logger}", "span_id": "{span_id}", "timestamp": "{}"}}"#,
                iso_timestamp(timestamp_ns)
            ),
        ));
    };
    line(out, "info", r#""event": "request_started""#.to_string(), random.below(50) + 1);
    let domain = match endpoint {
        "auth-login" if random.below(12) == 0 => format!(
            r#""event": "login_attempt", "email": "user{user_id}@example.com", "password": "pw-{}""#,
            random.hex(10)
        ),
        "auth-login" => format!(r#""event": "login_succeeded", "email": "user{user_id}@example.com""#),
        "ticket-checkout" => format!(
            r#""event": "ticket_checkout", "event_id": {event_id}, "quantity": {}, "amount_cents": {}"#,
            random.below(4) + 1,
            (random.below(200) + 10) * 100
        ),
        _ => format!(r#""event": "cache_lookup", "cache_key": "events:{event_id}:v2", "hit": {}"#, random.below(3) > 0),
    };
    line(out, "info", domain, random.below(2000) + 100);
    line(
        out,
        "debug",
        format!(
            r#""event": "db_query", "table": "events_event", "rows": {}, "duration_ms": {}"#,
            random.below(60),
            random.below(40) + 1
        ),
        random.below(5000) + 200,
    );
    let (status, level) = match random.below(100) {
        0..=2 => (500, "error"),
        3..=7 => (404, "warning"),
        _ => (200, "info"),
    };
    line(
        out,
        level,
        format!(
            r#""event": "request_finished", "status_code": {status}, "duration_ms": {:.1}"#,
            random.below(2500) as f64 / 10.0
        ),
        random.below(20_000) + 500,
    );
}

fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / 100.0)
        })
        .unwrap_or(0.0)
}

fn directory_bytes(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => directory_bytes(&entry.path()),
            _ => entry.metadata().map_or(0, |metadata| metadata.len()),
        })
        .sum()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut arguments = std::env::args().skip(1);
    let total_lines: usize = arguments.next().map_or(Ok(1_000_000), |text| text.parse())?;
    let lines_per_push: usize = arguments.next().map_or(Ok(1_000), |text| text.parse())?;
    let temporary = tempfile::tempdir()?;
    let directory = arguments.next().map_or_else(|| temporary.path().to_path_buf(), std::path::PathBuf::from);

    // The corpus, as push bodies a client would send (one stream per service per body).
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as i64;
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let mut lines: Vec<(usize, i64, String)> = Vec::with_capacity(total_lines + 4);
    let mut start_ns = now_ns - 20 * 60 * 1_000_000_000;
    let mut request = 0u64;
    while lines.len() < total_lines {
        request_lines(&mut random, request, start_ns, &mut lines);
        request += 1;
        start_ns += 1_000_000;
    }
    lines.truncate(total_lines);
    lines.sort_by_key(|(_, timestamp_ns, _)| *timestamp_ns);
    let raw_bytes: u64 = lines.iter().map(|(_, _, line)| line.len() as u64).sum();
    let services = ["boxoffice", "boxoffice-worker"];
    let bodies: Vec<Vec<u8>> = lines
        .chunks(lines_per_push)
        .map(|batch| {
            let streams: Vec<serde_json::Value> = services
                .iter()
                .enumerate()
                .map(|(index, service)| {
                    let values: Vec<serde_json::Value> = batch
                        .iter()
                        .filter(|(line_service, _, _)| *line_service == index)
                        .map(|(_, timestamp_ns, line)| serde_json::json!([timestamp_ns.to_string(), line]))
                        .collect();
                    serde_json::json!({"stream": {"service_name": service, "deployment_environment": "production"}, "values": values})
                })
                .collect();
            serde_json::to_vec(&serde_json::json!({"streams": streams})).unwrap_or_default()
        })
        .collect();
    let body_bytes: u64 = bodies.iter().map(|body| body.len() as u64).sum();
    // Where the stored bytes go: one chunk's worth (about the cut size) of the first service's lines.
    let sample: Vec<oxeye_model::logs::LogEntry> = lines
        .iter()
        .filter(|(service, _, _)| *service == 0)
        .scan(0usize, |bytes, (_, timestamp_ns, line)| {
            *bytes += line.len();
            (*bytes <= oxeye_logstore::DEFAULT_CHUNK_TARGET_BYTES)
                .then(|| oxeye_model::logs::LogEntry::new(*timestamp_ns, line.clone()))
        })
        .collect();
    let sample_chunk = oxeye_logstore::chunk::SealedChunk::seal(&sample);
    println!(
        "one chunk of {} lines: data {:.1} bytes/line, bloom {:.1} bytes/line",
        sample.len(),
        sample_chunk.data.len() as f64 / sample.len() as f64,
        sample_chunk.bloom.len() as f64 / sample.len() as f64
    );
    // The bloom filter's share: building the sample's filter, 20 times, in CPU time.
    let cpu_started = cpu_seconds();
    let mut filter_bytes = 0usize;
    for _ in 0..20 {
        let mut builder = oxeye_logstore::bloom::BloomBuilder::with_line_capacity(sample.len());
        for entry in &sample {
            builder.add_line(&entry.line);
        }
        filter_bytes += builder.finish().len();
    }
    let sample_bytes: usize = sample.iter().map(|entry| entry.line.len()).sum();
    println!(
        "bloom filter build: {:.0} MB/s per CPU-second ({} filter bytes)",
        20.0 * sample_bytes as f64 / 1e6 / (cpu_seconds() - cpu_started).max(0.01),
        filter_bytes / 20
    );
    drop(lines);

    let mut options = LogStoreOptions::new(&directory);
    options.background_maintenance = false;
    // Field columns of `| json` or `| logfmt`, as the server writes them: the default names, none with
    // `FIELD_COLUMNS=0` (for A/B runs), or the names listed, `FIELD_COLUMNS=level,path`.
    options.line_fields = match std::env::var("FIELD_COLUMNS").ok().as_deref() {
        None => Some(std::sync::Arc::new(oxeye_logql::field_columns::LineFieldColumns::default())),
        Some("0") => None,
        Some(names) => Some(std::sync::Arc::new(oxeye_logql::field_columns::LineFieldColumns::new(names.split(',')))),
    };
    let store = LogStore::open(options)?;
    let redactor = Redactor::new(RedactionOptions::default())?;

    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut accepted = 0u64;
    for body in &bodies {
        let mut streams = oxeye_ingest::loki_push::decode_push_json(body)?;
        redactor.redact_log_streams(&mut streams);
        let summary = store.push_streams(streams)?;
        if summary.rejected() > 0 {
            return Err(format!("entries refused: {:?}", summary.first_error).into());
        }
        accepted += summary.accepted;
    }
    let push_wall = started.elapsed().as_secs_f64();
    let push_cpu = cpu_seconds() - cpu_before;
    let flush_started = Instant::now();
    store.flush(true)?;
    let flush_wall = flush_started.elapsed().as_secs_f64();
    let total_wall = started.elapsed().as_secs_f64();
    let total_cpu = cpu_seconds() - cpu_before;
    let stats = store.stats();
    let wal = store.wal_stats();
    let chunk_bytes = directory_bytes(&directory.join("chunks"));
    let wal_bytes = directory_bytes(&directory.join("wal"));
    store.close()?;

    let megabytes = raw_bytes as f64 / 1e6;
    println!(
        "corpus: {accepted} lines accepted of {total_lines}, {megabytes:.1} MB of lines (avg {:.0} B/line), {:.1} MB of push bodies, {lines_per_push} lines per push",
        raw_bytes as f64 / total_lines as f64,
        body_bytes as f64 / 1e6
    );
    println!("redactions: {}", redactor.stats().total());
    println!(
        "push (decode + redact + WAL fsync + head): {push_wall:.2} s wall, {push_cpu:.2} CPU-s, {} fsyncs",
        wal.fsyncs_total
    );
    println!("flush (cut + compress + write chunks): {flush_wall:.2} s wall");
    println!(
        "ingest total: {:.1} MB/s and {:.0} lines/s per CPU-second ({:.1} MB/s, {:.0} lines/s wall)",
        megabytes / total_cpu,
        accepted as f64 / total_cpu,
        megabytes / total_wall,
        accepted as f64 / total_wall
    );
    println!(
        "stored: {chunk_bytes} bytes in {} chunk files ({} chunks) = {:.2} bytes/line, ratio {:.1}x; WAL after flush: {wal_bytes} bytes",
        stats.chunk_files,
        stats.chunks,
        chunk_bytes as f64 / accepted as f64,
        raw_bytes as f64 / chunk_bytes.max(1) as f64
    );
    Ok(())
}
