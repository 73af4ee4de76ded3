//! Seed-shaped request log lines (structlog's JSON and logfmt renderings of the same fields) for the
//! examples that time LogQL: deterministic, so every build reads the same corpus.

/// A small deterministic generator (xorshift64*).
pub struct Random(pub u64);

impl Random {
    /// The next number of the sequence.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The fields of one seed-shaped request log line.
struct Fields {
    event: &'static str,
    level: &'static str,
    request_id: String,
    trace_id: String,
    span_id: u64,
    user_id: u64,
    path: &'static str,
    status_code: u16,
    duration_ms: f64,
}

impl Fields {
    fn draw(random: &mut Random) -> Fields {
        const PATHS: [&str; 6] = [
            "/api/events/",
            "/api/events/42/",
            "/api/events/42/checkout/",
            "/healthz/",
            "/api/users/me/",
            "/api/tickets/",
        ];
        const EVENTS: [&str; 4] = ["request_finished", "request_started", "ticket_reserved", "cache_miss"];
        let trace_id = format!("{:016x}{:016x}", random.next(), random.next());
        let request_id = format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            random.next() as u32,
            random.next() as u16,
            random.next() % 4096,
            random.next() % 4096,
            random.next() % (1 << 48)
        );
        let path = PATHS[(random.next() % PATHS.len() as u64) as usize];
        let event = EVENTS[(random.next() % EVENTS.len() as u64) as usize];
        let status_code = [200, 200, 200, 201, 404, 500][(random.next() % 6) as usize];
        let level = match status_code {
            500 => "error",
            404 => "warning",
            _ => "info",
        };
        let span_id = random.next();
        let user_id = random.next() % 5000;
        let duration_ms = (random.next() % 20_000) as f64 / 10.0;
        Fields { event, level, request_id, trace_id, span_id, user_id, path, status_code, duration_ms }
    }
}

/// A structlog JSON line and its trace id.
pub fn line(random: &mut Random, service: &str) -> (String, String) {
    let Fields { event, level, request_id, trace_id, span_id, user_id, path, status_code, duration_ms } =
        Fields::draw(random);
    let text = format!(
        r#"{{"event": "{event}", "level": "{level}", "logger": "{service}.request", "request_id": "{request_id}", "trace_id": "{trace_id}", "span_id": "{span_id:016x}", "user_id": {user_id}, "method": "GET", "path": "{path}", "status_code": {status_code}, "duration_ms": {duration_ms:.1}, "timestamp": "2026-11-23T10:00:00.000000Z"}}"#
    );
    (text, trace_id)
}

/// The same fields as structlog's logfmt renderer writes them (`key=value`, values with spaces quoted),
/// with a quoted `msg` summing the request up, and its trace id.
pub fn logfmt_line(random: &mut Random, service: &str) -> (String, String) {
    let Fields { event, level, request_id, trace_id, span_id, user_id, path, status_code, duration_ms } =
        Fields::draw(random);
    let text = format!(
        r#"timestamp=2026-11-23T10:00:00.000000Z level={level} event={event} logger={service}.request request_id={request_id} trace_id={trace_id} span_id={span_id:016x} user_id={user_id} method=GET path={path} status_code={status_code} duration_ms={duration_ms:.1} msg="GET {path} {status_code}""#
    );
    (text, trace_id)
}
