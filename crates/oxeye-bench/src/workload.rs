//! Pre-built workloads: every remote_write request of a run, encoded and compressed ahead of time so the
//! generator spends no CPU on encoding while it is timed, and every server gets the same bytes.
//!
//! File layout (little endian): the 8 bytes `OXBENCH1`, a u32 length and that many bytes of JSON
//! [`WorkloadHeader`], then one record per request in sending order (round by round, chunk by chunk
//! within a round): u32 round, u32 chunk, u32 samples, u32 body length, body (snappy-compressed
//! `WriteRequest`).
//!
//! Timing: the samples of round r of a target carry `start_ms + offset(target) + r × 15 s`, where the
//! offset spreads targets over the interval as Prometheus does. `start_ms` is a multiple of the block
//! duration (`rounds × 15 s`), so the whole workload falls in one aligned block range `[start_ms,
//! start_ms + block_duration_ms)`, and lies far enough in the past that a later "trigger" sample at
//! `start_ms + 1.5 × block_duration_ms + 15 s` is not in the future: that sample makes a Prometheus-style
//! head span more than 1.5 block durations, which cuts exactly one block holding the whole workload.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::fleet::{Fleet, SCRAPE_INTERVAL_MS};
use crate::wire;

const MAGIC: &[u8; 8] = b"OXBENCH1";

/// One encoded chunk: compressed body, protobuf bytes before compression, samples.
type EncodedChunk = anyhow::Result<(Vec<u8>, u64, u32)>;

/// The metric whose series count the run checks on each server after ingest.
pub const CHECK_METRIC: &str = "django_http_requests_total_by_transport_total";

/// What a workload file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadHeader {
    /// Seed of the fleet.
    pub seed: u64,
    /// Active series (each gets one sample per round).
    pub active_series: u64,
    /// Scrape targets (Django processes).
    pub targets: u64,
    /// Scrape rounds.
    pub rounds: u32,
    /// Milliseconds between rounds of one target.
    pub scrape_interval_ms: i64,
    /// Samples (one-sample `TimeSeries`) per request; the last request of a round may hold fewer.
    pub samples_per_request: u32,
    /// Requests per round.
    pub requests_per_round: u32,
    /// Timestamp of round 0 before target offsets, milliseconds; a multiple of `block_duration_ms`.
    pub start_ms: i64,
    /// `rounds × scrape_interval_ms`: the block range that holds the whole workload, milliseconds.
    pub block_duration_ms: i64,
    /// Timestamp of the trigger sample that makes a head cut the block, milliseconds.
    pub trigger_timestamp_ms: i64,
    /// Samples in all requests.
    pub total_samples: u64,
    /// Protobuf bytes before compression, all requests.
    pub encoded_bytes: u64,
    /// Snappy bytes, all requests.
    pub compressed_bytes: u64,
    /// Label pairs of series 0, whose sample count the run checks.
    pub check_series: Vec<(String, String)>,
    /// Active series named [`CHECK_METRIC`].
    pub check_metric_series: u64,
    /// Active series per metric family.
    pub families: BTreeMap<String, u64>,
    /// Seconds it took to generate the file.
    pub generation_seconds: f64,
}

/// One pre-built request.
#[derive(Debug, Clone, Copy)]
pub struct PrebuiltRequest {
    /// Scrape round.
    pub round: u32,
    /// Index of the series chunk within the round (the same series every round).
    pub chunk: u32,
    /// Samples in the body.
    pub samples: u32,
    /// Snappy-compressed `WriteRequest`.
    pub body: &'static [u8],
}

/// How to build a workload.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Active series.
    pub active_series: usize,
    /// Scrape rounds.
    pub rounds: u32,
    /// Samples per request.
    pub samples_per_request: usize,
    /// Fleet seed.
    pub seed: u64,
    /// Encoding threads.
    pub threads: usize,
}

/// Builds the workload and writes it to `path`; returns its header.
///
/// # Errors
/// On invalid options or when the file cannot be written.
pub fn generate(options: &GenerateOptions, path: &Path) -> anyhow::Result<WorkloadHeader> {
    if options.active_series == 0 || options.rounds == 0 || options.samples_per_request == 0 {
        bail!("series, rounds and samples per request must be positive");
    }
    let started = Instant::now();
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).context("clock before 1970")?.as_millis()
            as i64;
    let block_duration_ms = i64::from(options.rounds) * SCRAPE_INTERVAL_MS;
    let latest_trigger_ms = now_ms - 120_000;
    let start_ms = (latest_trigger_ms - block_duration_ms * 3 / 2 - SCRAPE_INTERVAL_MS).div_euclid(block_duration_ms)
        * block_duration_ms;
    let trigger_timestamp_ms = start_ms + block_duration_ms * 3 / 2 + SCRAPE_INTERVAL_MS;

    let mut fleet = Fleet::build(options.active_series, options.seed, now_ms as f64 / 1000.0);
    let mut label_bytes = Vec::new();
    let mut label_offsets = Vec::with_capacity(fleet.active_series() + 1);
    for pairs in &fleet.labels {
        label_offsets.push(label_bytes.len());
        wire::encode_labels(&mut label_bytes, pairs);
    }
    label_offsets.push(label_bytes.len());
    let requests_per_round = fleet.active_series().div_ceil(options.samples_per_request);
    let check_metric_series =
        fleet.labels.iter().filter(|pairs| pairs.first().is_some_and(|(_, name)| name == CHECK_METRIC)).count() as u64;

    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = BufWriter::with_capacity(1 << 22, file);
    let mut header = WorkloadHeader {
        seed: options.seed,
        active_series: fleet.active_series() as u64,
        targets: fleet.targets() as u64,
        rounds: options.rounds,
        scrape_interval_ms: SCRAPE_INTERVAL_MS,
        samples_per_request: options.samples_per_request as u32,
        requests_per_round: requests_per_round as u32,
        start_ms,
        block_duration_ms,
        trigger_timestamp_ms,
        total_samples: 0,
        encoded_bytes: 0,
        compressed_bytes: 0,
        check_series: fleet.labels.first().cloned().unwrap_or_default(),
        check_metric_series,
        families: fleet.families.clone(),
        generation_seconds: 0.0,
    };
    // The header is rewritten at the end with the totals; reserve room by writing it padded.
    let placeholder = header_bytes(&header, 64 * 1024)?;
    writer.write_all(&placeholder)?;

    let threads = options.threads.max(1);
    for round in 0..options.rounds {
        if round > 0 {
            fleet.step();
        }
        let values = fleet.values();
        let series_target = &fleet.series_target;
        let offsets = &fleet.target_offsets_ms;
        let round_start_ms = start_ms + i64::from(round) * SCRAPE_INTERVAL_MS;
        let encode_chunk = |chunk: usize| -> EncodedChunk {
            let first = chunk * options.samples_per_request;
            let end = (first + options.samples_per_request).min(values.len());
            let mut encoded = Vec::with_capacity((label_offsets[end] - label_offsets[first]) + (end - first) * 24);
            for series in first..end {
                let timestamp_ms = round_start_ms + offsets[series_target[series] as usize];
                let labels = &label_bytes[label_offsets[series]..label_offsets[series + 1]];
                wire::encode_timeseries(&mut encoded, labels, values[series], timestamp_ms);
            }
            let compressed = wire::compress(&encoded).context("snappy compression")?;
            Ok((compressed, encoded.len() as u64, (end - first) as u32))
        };
        let results: Vec<EncodedChunk> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|worker| {
                    scope.spawn(move || {
                        (worker..requests_per_round)
                            .step_by(threads)
                            .map(|chunk| (chunk, encode_chunk(chunk)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut all: Vec<(usize, EncodedChunk)> = Vec::with_capacity(requests_per_round);
            for handle in handles {
                match handle.join() {
                    Ok(part) => all.extend(part),
                    Err(_) => all.push((usize::MAX, Err(anyhow::anyhow!("an encoding thread panicked")))),
                }
            }
            all.sort_by_key(|(chunk, _)| *chunk);
            all.into_iter().map(|(_, result)| result).collect()
        });
        for (chunk, result) in results.into_iter().enumerate() {
            let (body, encoded_len, samples) = result?;
            writer.write_all(&round.to_le_bytes())?;
            writer.write_all(&(chunk as u32).to_le_bytes())?;
            writer.write_all(&samples.to_le_bytes())?;
            writer.write_all(&(body.len() as u32).to_le_bytes())?;
            writer.write_all(&body)?;
            header.total_samples += u64::from(samples);
            header.encoded_bytes += encoded_len;
            header.compressed_bytes += body.len() as u64;
        }
    }
    header.generation_seconds = started.elapsed().as_secs_f64();
    let mut file = writer.into_inner().map_err(|error| anyhow::anyhow!("flushing {}: {error}", path.display()))?;
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0))?;
    file.write_all(&header_bytes(&header, placeholder.len())?)?;
    file.sync_all()?;
    Ok(header)
}

/// The magic, length and JSON of `header`, the JSON padded with spaces to fill `total_len` bytes.
fn header_bytes(header: &WorkloadHeader, total_len: usize) -> anyhow::Result<Vec<u8>> {
    let mut json = serde_json::to_vec(header)?;
    let json_room = total_len - MAGIC.len() - 4;
    if json.len() > json_room {
        bail!("workload header of {} bytes does not fit in {json_room}", json.len());
    }
    json.resize(json_room, b' ');
    let mut bytes = Vec::with_capacity(total_len);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(json_room as u32).to_le_bytes());
    bytes.extend_from_slice(&json);
    Ok(bytes)
}

/// Reads only the header of a workload file.
///
/// # Errors
/// When the file cannot be read or is not a workload file.
pub fn read_header(path: &Path) -> anyhow::Result<WorkloadHeader> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut prefix = [0u8; 12];
    file.read_exact(&mut prefix).with_context(|| format!("reading {}", path.display()))?;
    if &prefix[..8] != MAGIC {
        bail!("{} is not an oxeye-bench workload file", path.display());
    }
    let json_len = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize;
    let mut json = vec![0u8; json_len];
    file.read_exact(&mut json)?;
    serde_json::from_slice(&json).with_context(|| format!("workload header of {}", path.display()))
}

/// Loads a whole workload into memory. The bytes are leaked on purpose: they live as long as the process
/// and are handed to the HTTP client as `&'static [u8]` bodies without copies.
///
/// # Errors
/// When the file cannot be read or is truncated.
pub fn load(path: &Path) -> anyhow::Result<(WorkloadHeader, Vec<PrebuiltRequest>)> {
    let header = read_header(path)?;
    let bytes: &'static [u8] =
        Box::leak(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?.into_boxed_slice());
    let json_len = bytes
        .get(8..12)
        .map(|length| u32::from_le_bytes([length[0], length[1], length[2], length[3]]) as usize)
        .context("truncated workload header")?;
    let mut position = 12 + json_len;
    let mut requests = Vec::with_capacity(header.rounds as usize * header.requests_per_round as usize);
    let field = |at: usize| -> anyhow::Result<u32> {
        let slice = bytes.get(at..at + 4).context("truncated workload record")?;
        Ok(u32::from_le_bytes([slice[0], slice[1], slice[2], slice[3]]))
    };
    while position < bytes.len() {
        let round = field(position)?;
        let chunk = field(position + 4)?;
        let samples = field(position + 8)?;
        let body_len = field(position + 12)? as usize;
        let body = bytes.get(position + 16..position + 16 + body_len).context("truncated workload body")?;
        requests.push(PrebuiltRequest { round, chunk, samples, body });
        position += 16 + body_len;
    }
    let samples: u64 = requests.iter().map(|request| u64::from(request.samples)).sum();
    if samples != header.total_samples {
        bail!("workload holds {samples} samples, its header says {}", header.total_samples);
    }
    Ok((header, requests))
}

/// Reads the workload at `path` one request at a time, in file order, without holding the whole file in
/// memory, and calls `visit` with the round's start time (milliseconds, before target offsets) and the
/// request's snappy-compressed body. Returns the header.
///
/// # Errors
/// When the file cannot be read or is truncated, or `visit` fails (its error is returned as is).
pub fn for_each_record(
    path: &Path,
    mut visit: impl FnMut(i64, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<WorkloadHeader> {
    let header = read_header(path)?;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 22, file);
    let mut prefix = [0u8; 12];
    reader.read_exact(&mut prefix)?;
    let json_len = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as u64;
    std::io::copy(&mut (&mut reader).take(json_len), &mut std::io::sink())?;
    let mut record_header = [0u8; 16];
    let mut body = Vec::new();
    loop {
        match reader.read_exact(&mut record_header) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        }
        let field = |at: usize| {
            u32::from_le_bytes([record_header[at], record_header[at + 1], record_header[at + 2], record_header[at + 3]])
        };
        let round = field(0);
        body.resize(field(12) as usize, 0);
        reader.read_exact(&mut body).context("truncated workload body")?;
        visit(header.start_ms + i64::from(round) * header.scrape_interval_ms, &body)?;
    }
    Ok(header)
}

/// A single-sample request for the trigger series `oxeye_bench_trigger{job="oxeye-bench"}` at `timestamp_ms`.
pub fn trigger_body(timestamp_ms: i64) -> anyhow::Result<Vec<u8>> {
    let mut labels = Vec::new();
    wire::encode_labels(
        &mut labels,
        &[("__name__".to_string(), "oxeye_bench_trigger".to_string()), ("job".to_string(), "oxeye-bench".to_string())],
    );
    let mut encoded = Vec::new();
    wire::encode_timeseries(&mut encoded, &labels, 1.0, timestamp_ms);
    wire::compress(&encoded).context("snappy compression")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxeye_proto::prometheus::WriteRequest;
    use prost::Message;

    #[test]
    fn generated_file_loads_back_with_every_sample_in_one_block_range() {
        let directory = std::env::temp_dir().join(format!("oxeye-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap_or_default();
        let path = directory.join("workload.bin");
        let options =
            GenerateOptions { active_series: 4_500, rounds: 3, samples_per_request: 1_000, seed: 3, threads: 2 };
        let header = generate(&options, &path).map_err(|error| error.to_string());
        let header = match header {
            Ok(header) => header,
            Err(error) => panic!("generate failed: {error}"),
        };
        assert_eq!(header.total_samples, 4_500 * 3);
        assert_eq!(header.requests_per_round, 5);
        assert_eq!(header.start_ms % header.block_duration_ms, 0);
        let loaded = load(&path).map_err(|error| error.to_string());
        let (loaded_header, requests) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => panic!("load failed: {error}"),
        };
        assert_eq!(loaded_header.total_samples, header.total_samples);
        assert_eq!(requests.len(), 15);
        let mut previous_of_first_series = i64::MIN;
        for request in &requests {
            let body = snap::raw::Decoder::new().decompress_vec(request.body).unwrap_or_default();
            let decoded = WriteRequest::decode(body.as_slice()).unwrap_or_default();
            assert_eq!(decoded.timeseries.len() as u32, request.samples);
            for series in &decoded.timeseries {
                let timestamp = series.samples[0].timestamp;
                assert!(timestamp >= header.start_ms && timestamp < header.start_ms + header.block_duration_ms);
            }
            if request.chunk == 0 {
                let timestamp = decoded.timeseries[0].samples[0].timestamp;
                assert!(timestamp > previous_of_first_series, "rounds in time order");
                previous_of_first_series = timestamp;
            }
        }
        assert!(header.trigger_timestamp_ms - header.start_ms > header.block_duration_ms * 3 / 2);
        std::fs::remove_dir_all(&directory).unwrap_or_default();
    }
}
