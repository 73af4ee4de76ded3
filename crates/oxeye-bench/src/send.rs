//! Sending pre-built remote_write requests as fast as the server accepts them.
//!
//! `concurrency` tasks share one queue of requests in workload order (round by round). Like the shards of
//! Prometheus' remote-write queue, which each own a fixed subset of series and send their batches in
//! order, a request for chunk c of round r starts only after the request for chunk c of round r − 1 has
//! been answered, so no series ever sees its samples out of order, while different chunks overlap
//! freely. Every answer must be 2xx; others are counted with their status and first body.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::workload::PrebuiltRequest;

/// What a send run achieved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SendReport {
    /// Requests answered 2xx.
    pub requests_ok: u64,
    /// Requests answered otherwise or failed in transport.
    pub requests_failed: u64,
    /// Samples in requests answered 2xx.
    pub samples_ok: u64,
    /// Wall seconds from the first request to the last answer.
    pub wall_seconds: f64,
    /// `samples_ok / wall_seconds`.
    pub samples_per_second: f64,
    /// Answers by HTTP status (0 for transport errors).
    pub statuses: BTreeMap<u16, u64>,
    /// The first failure, with its body.
    pub first_error: Option<String>,
    /// Request latency percentiles, milliseconds.
    pub latency_p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub latency_p99_ms: f64,
    /// Slowest request, milliseconds.
    pub latency_max_ms: f64,
}

#[derive(Debug, Default)]
struct TaskTally {
    requests_ok: u64,
    requests_failed: u64,
    samples_ok: u64,
    statuses: BTreeMap<u16, u64>,
    first_error: Option<String>,
    latencies_ms: Vec<f64>,
}

/// Posts one body to `url` with remote_write 1.0 headers; returns the status and, when not 2xx, the
/// body's start.
pub async fn post(client: &reqwest::Client, url: &str, body: &'static [u8]) -> (u16, Option<String>) {
    let response = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("User-Agent", "oxeye-bench")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            if (200..300).contains(&status) {
                (status, None)
            } else {
                (status, Some(format!("HTTP {status}: {}", text.chars().take(500).collect::<String>())))
            }
        }
        Err(error) => (0, Some(format!("transport error: {error}"))),
    }
}

/// Sends every request of `requests` (workload order) with `concurrency` connections.
pub async fn send_all(
    client: &reqwest::Client,
    url: &str,
    requests: &'static [PrebuiltRequest],
    requests_per_round: u32,
    concurrency: usize,
) -> SendReport {
    let next = Arc::new(AtomicUsize::new(0));
    let rounds_done: Arc<Vec<AtomicU32>> = Arc::new((0..requests_per_round).map(|_| AtomicU32::new(0)).collect());
    let started = Instant::now();
    let mut handles = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let client = client.clone();
        let url = url.to_string();
        let next = next.clone();
        let rounds_done = rounds_done.clone();
        handles.push(tokio::spawn(async move {
            let mut tally = TaskTally::default();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(index) else { break };
                let Some(chunk_done) = rounds_done.get(request.chunk as usize) else { break };
                while chunk_done.load(Ordering::Acquire) < request.round {
                    tokio::time::sleep(Duration::from_micros(100)).await;
                }
                let sent = Instant::now();
                let (status, error) = post(&client, &url, request.body).await;
                tally.latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                *tally.statuses.entry(status).or_insert(0) += 1;
                match error {
                    None => {
                        tally.requests_ok += 1;
                        tally.samples_ok += u64::from(request.samples);
                    }
                    Some(error) => {
                        tally.requests_failed += 1;
                        tally.first_error.get_or_insert(error);
                    }
                }
                chunk_done.store(request.round + 1, Ordering::Release);
            }
            tally
        }));
    }
    let mut report = SendReport::default();
    let mut latencies = Vec::with_capacity(requests.len());
    for handle in handles {
        let Ok(tally) = handle.await else {
            report.first_error.get_or_insert_with(|| "a sender task panicked".to_string());
            continue;
        };
        report.requests_ok += tally.requests_ok;
        report.requests_failed += tally.requests_failed;
        report.samples_ok += tally.samples_ok;
        for (status, count) in tally.statuses {
            *report.statuses.entry(status).or_insert(0) += count;
        }
        if report.first_error.is_none() {
            report.first_error = tally.first_error;
        }
        latencies.extend(tally.latencies_ms);
    }
    report.wall_seconds = started.elapsed().as_secs_f64();
    report.samples_per_second = report.samples_ok as f64 / report.wall_seconds.max(1e-9);
    latencies.sort_by(f64::total_cmp);
    let percentile = |fraction: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let position = ((latencies.len() - 1) as f64 * fraction).round() as usize;
        latencies[position.min(latencies.len() - 1)]
    };
    report.latency_p50_ms = percentile(0.5);
    report.latency_p99_ms = percentile(0.99);
    report.latency_max_ms = percentile(1.0);
    report
}
