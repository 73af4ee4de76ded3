//! Measures remote_write 1.0 decode throughput on a request shaped like Prometheus' default queue config
//! (2000 series per request, one sample each, node-exporter-like label sets).
//!
//! Run: `cargo run --release -p oxeye-ingest --example remote_write_throughput`

use oxeye_ingest::compression::decode_snappy;
use oxeye_ingest::remote_write::decode_write_request;
use oxeye_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;
use std::time::Instant;

/// CPU time of this thread in seconds (Linux `/proc/thread-self/schedstat`), so that the figure holds on a
/// machine shared with other work; falls back to wall time elsewhere.
fn cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanoseconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(nanoseconds / 1e9)
}

struct Clock {
    wall: Instant,
    cpu: Option<f64>,
}

impl Clock {
    fn start() -> Self {
        Clock { wall: Instant::now(), cpu: cpu_seconds() }
    }

    /// Prints samples per second of CPU time (and of wall time).
    fn report(&self, label: &str, samples: usize) {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = match (self.cpu, cpu_seconds()) {
            (Some(start), Some(end)) => end - start,
            _ => wall,
        };
        println!(
            "{label:<34} {:>6.2} M samples/s per CPU second ({:.2} M/s wall)",
            samples as f64 / cpu / 1e6,
            samples as f64 / wall / 1e6
        );
    }
}

fn main() {
    let series_per_request = 2000;
    let timeseries = (0..series_per_request)
        .map(|index| {
            let pairs = [
                ("__name__", format!("node_cpu_seconds_total_{}", index % 50)),
                ("cpu", format!("{}", index % 16)),
                ("env", "production".to_string()),
                ("instance", format!("host-{}.example.internal:9100", index % 40)),
                ("job", "node".to_string()),
                ("mode", ["idle", "user", "system", "iowait"][index % 4].to_string()),
                ("region", "eu-west-1".to_string()),
                ("team", "platform".to_string()),
            ];
            TimeSeries {
                labels: pairs
                    .iter()
                    .map(|(name, value)| Label { name: name.to_string(), value: value.clone() })
                    .collect(),
                samples: vec![Sample { value: index as f64 * 1.5, timestamp: 1_700_000_000_000 + index as i64 }],
                ..Default::default()
            }
        })
        .collect();
    let body = WriteRequest { timeseries, metadata: vec![] }.encode_to_vec();
    let compressed = snap::raw::Encoder::new().compress_vec(&body).expect("compress");
    println!("request: {series_per_request} series, {} bytes protobuf, {} bytes snappy", body.len(), compressed.len());

    let rounds = 2000;
    let mut samples = 0usize;
    let clock = Clock::start();
    for _ in 0..rounds {
        let decoded = decode_snappy(&compressed, 64 << 20).expect("snappy");
        let view = decode_write_request(&decoded).expect("decode");
        samples += view.sample_count();
    }
    clock.report("snappy + decode (borrowed view)", samples);

    let mut samples = 0usize;
    let clock = Clock::start();
    for _ in 0..rounds {
        let view = decode_write_request(&body).expect("decode");
        samples += view.sample_count();
    }
    clock.report("decode only (borrowed view)", samples);

    let mut samples = 0usize;
    let clock = Clock::start();
    for _ in 0..rounds / 4 {
        let decoded = decode_snappy(&compressed, 64 << 20).expect("snappy");
        let batch = decode_write_request(&decoded).expect("decode").to_batch();
        samples += batch.series.iter().map(|series| series.samples.len()).sum::<usize>();
    }
    clock.report("snappy + decode + owned Labels", samples);

    let mut samples = 0usize;
    let clock = Clock::start();
    for _ in 0..rounds / 4 {
        let decoded = decode_snappy(&compressed, 64 << 20).expect("snappy");
        let request = WriteRequest::decode(decoded.as_slice()).expect("prost");
        samples += request.timeseries.iter().map(|series| series.samples.len()).sum::<usize>();
    }
    clock.report("for comparison, prost structs", samples);
}
