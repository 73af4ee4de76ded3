//! Backfilling servers with a workload: the workload's samples written as OpenMetrics text, one file per
//! 2-hour block range, each turned into a TSDB block by `promtool tsdb create-blocks-from openmetrics`
//! (Prometheus) and `oxeye tsdb create-blocks-from openmetrics` (oxeye) from the same file, which is
//! deleted once every server has loaded it. Both servers then hold the same samples in the same state:
//! 2-hour blocks on disk, nothing in the head.
//!
//! Loading Prometheus 2.42 over remote_write takes about 6–15 CPU-seconds per million samples (65k–160k
//! samples per CPU-second), so the query benchmark's 24 h of 100k series (576M samples) cannot be loaded
//! that way in reasonable time. `promtool` writes blocks directly and needs no running server.
//!
//! How `promtool` 2.42 reads its input decides the file split:
//! - It maps the whole file into memory, so the input must be a regular file, not a pipe.
//! - It reads the file once to find the smallest and largest timestamp, then once more per 2-hour range
//!   (aligned to multiples of 2 h since the epoch) between them. A file holding one aligned range is read
//!   twice; a file holding 24 h would be read 13 times. So each aligned range gets its own file, written,
//!   converted and deleted before the next, which bounds the disk space to one range of text (about 10 GB
//!   at 100k series: 208 bytes per sample line).
//! - It parses timestamps as float seconds and truncates `seconds × 1000` to an integer; [`timestamp_text`]
//!   picks the decimal that lands exactly on each sample's millisecond.
//!
//! OpenMetrics 1.0 text format (<https://github.com/OpenObservability/OpenMetrics>, "Text format"): one
//! `name{label="value",...} value timestamp` line per sample, label values escaped (`\\`, `\"`, `\n`), and
//! `# EOF` as the last line. The samples carry no `# TYPE` lines: every family is `unknown`, which stores the
//! samples exactly as remote_write would (Prometheus keeps no type in its TSDB).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::server::ServerKind;
use crate::workload;

/// A server whose data directory a backfill writes: its kind, the converting tool (`promtool` for
/// Prometheus, the `oxeye` binary for oxeye) and the data directory (Prometheus' `--storage.tsdb.path`,
/// oxeye's `storage.data_dir`).
#[derive(Debug, Clone)]
pub struct BackfillTarget {
    /// Which server (oxeye or prometheus).
    pub kind: ServerKind,
    /// The converting executable.
    pub tool: PathBuf,
    /// The server's data directory.
    pub data_dir: PathBuf,
}

/// The block range `promtool` cuts its input into, milliseconds (`tsdb.DefaultBlockDuration`, 2 h).
pub const PROMTOOL_BLOCK_RANGE_MS: i64 = 2 * 3600 * 1000;

/// What a backfill did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackfillReport {
    /// Samples written as text (every sample of the workload).
    pub samples: u64,
    /// Files (aligned 2-hour ranges) converted.
    pub files: usize,
    /// Bytes of OpenMetrics text over all files.
    pub text_bytes: u64,
    /// Bytes of the largest file: the disk space the text needs at once.
    pub largest_file_bytes: u64,
    /// Wall seconds spent writing text (decompressing and decoding the workload included).
    pub write_seconds: f64,
    /// Wall seconds `promtool` ran, all files (0 without a Prometheus target).
    pub promtool_seconds: f64,
    /// CPU seconds (user + system) of the `promtool` processes, all files.
    pub promtool_cpu_seconds: f64,
    /// Wall seconds `oxeye tsdb create-blocks-from openmetrics` ran, all files (0 without an oxeye target).
    #[serde(default)]
    pub oxeye_seconds: f64,
    /// CPU seconds (user + system) of the `oxeye` processes, all files.
    #[serde(default)]
    pub oxeye_cpu_seconds: f64,
    /// Peak resident memory of the largest `oxeye` conversion, bytes (0 without an oxeye target).
    #[serde(default)]
    pub oxeye_peak_rss_bytes: u64,
    /// Wall seconds of the whole backfill.
    pub total_seconds: f64,
}

/// Writes every sample of the workload at `workload_path` as OpenMetrics text and turns it into blocks in
/// each target's data directory with its tool, one aligned 2-hour range at a time; the text files live in
/// `scratch_dir` and are deleted once every target has converted them.
///
/// # Errors
/// When the workload cannot be read or decoded, a text file cannot be written, or a tool fails.
pub fn backfill(
    workload_path: &Path,
    targets: &[BackfillTarget],
    scratch_dir: &Path,
) -> anyhow::Result<BackfillReport> {
    let started = Instant::now();
    for target in targets {
        std::fs::create_dir_all(&target.data_dir).with_context(|| format!("creating {}", target.data_dir.display()))?;
    }
    std::fs::create_dir_all(scratch_dir).with_context(|| format!("creating {}", scratch_dir.display()))?;
    let mut report = BackfillReport {
        samples: 0,
        files: 0,
        text_bytes: 0,
        largest_file_bytes: 0,
        write_seconds: 0.0,
        promtool_seconds: 0.0,
        promtool_cpu_seconds: 0.0,
        oxeye_seconds: 0.0,
        oxeye_cpu_seconds: 0.0,
        oxeye_peak_rss_bytes: 0,
        total_seconds: 0.0,
    };
    // Samples of one round straddle a range boundary when targets' offsets push them past it, so the
    // files of two ranges can be open at once; a range is finished once a round starts at or after its end.
    let mut open_files: Vec<RangeFile> = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    let mut decompressed = Vec::new();
    let mut line = Vec::with_capacity(512);
    let mut samples = Vec::new();
    let mut write_started = Instant::now();
    let header = workload::for_each_record(workload_path, |round_start_ms, body| {
        while open_files.first().is_some_and(|file| file.range_end_ms <= round_start_ms) {
            let finished = open_files.remove(0);
            report.write_seconds += write_started.elapsed().as_secs_f64();
            convert(finished, targets, &mut report)?;
            write_started = Instant::now();
        }
        let length = snap::raw::decompress_len(body).context("snappy length of a workload body")?;
        decompressed.resize(length, 0);
        decoder.decompress(body, &mut decompressed).context("decompressing a workload body")?;
        // Label slices point into this request's bytes, so the list is per request.
        let mut labels = Vec::new();
        for_each_series(&decompressed, &mut labels, &mut samples, |labels, samples| {
            for &(value, timestamp_ms) in samples {
                let range_start_ms = timestamp_ms.div_euclid(PROMTOOL_BLOCK_RANGE_MS) * PROMTOOL_BLOCK_RANGE_MS;
                let file = match open_files.iter_mut().position(|file| file.range_start_ms == range_start_ms) {
                    Some(index) => &mut open_files[index],
                    None => {
                        if open_files.last().is_some_and(|last| last.range_start_ms > range_start_ms) {
                            bail!("sample at {timestamp_ms} ms comes after a later block range was started");
                        }
                        open_files.push(RangeFile::create(scratch_dir, range_start_ms)?);
                        open_files.last_mut().context("a range file was just opened")?
                    }
                };
                line.clear();
                write_sample_line(&mut line, labels, value, timestamp_ms);
                file.writer.write_all(&line)?;
                file.bytes += line.len() as u64;
                report.samples += 1;
            }
            Ok(())
        })
    })?;
    report.write_seconds += write_started.elapsed().as_secs_f64();
    for finished in std::mem::take(&mut open_files) {
        convert(finished, targets, &mut report)?;
    }
    if report.samples != header.total_samples {
        bail!("backfilled {} samples, the workload holds {}", report.samples, header.total_samples);
    }
    report.total_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The text file of one aligned block range, being written.
struct RangeFile {
    range_start_ms: i64,
    range_end_ms: i64,
    path: PathBuf,
    writer: BufWriter<std::fs::File>,
    bytes: u64,
}

impl RangeFile {
    fn create(scratch_dir: &Path, range_start_ms: i64) -> anyhow::Result<RangeFile> {
        let path = scratch_dir.join(format!("backfill-{range_start_ms}.om"));
        let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(RangeFile {
            range_start_ms,
            range_end_ms: range_start_ms + PROMTOOL_BLOCK_RANGE_MS,
            path,
            writer: BufWriter::with_capacity(1 << 22, file),
            bytes: 0,
        })
    }
}

/// Ends `file` with `# EOF`, runs every target's tool on it and deletes it. One range at a time: at 100k
/// series a range is about 10 GB of text, and the disk must hold it besides the workload file.
fn convert(mut file: RangeFile, targets: &[BackfillTarget], report: &mut BackfillReport) -> anyhow::Result<()> {
    file.writer.write_all(b"# EOF\n")?;
    file.bytes += 6;
    file.writer.flush().with_context(|| format!("writing {}", file.path.display()))?;
    drop(file.writer);
    report.files += 1;
    report.text_bytes += file.bytes;
    report.largest_file_bytes = report.largest_file_bytes.max(file.bytes);
    for target in targets {
        let started = Instant::now();
        let cpu_before = children_cpu_seconds();
        if target.kind == ServerKind::VictoriaMetrics {
            bail!("victoria-metrics is not backfilled");
        }
        // Both tools take the same arguments: `tsdb create-blocks-from openmetrics --quiet FILE DIR`.
        // The error text goes to a file, so a chatty tool cannot block on a full pipe while it is polled.
        let stderr_path = file.path.with_extension("stderr");
        let stderr = std::fs::File::create(&stderr_path)?;
        let mut child = Command::new(&target.tool)
            .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
            .arg(&file.path)
            .arg(&target.data_dir)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("running {}", target.tool.display()))?;
        // `VmHWM` only grows, so its last reading before the exit is the peak (polled every 100 ms).
        let mut peak_rss_bytes = 0;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if let Ok(memory) = crate::procfs::memory(child.id()) {
                peak_rss_bytes = peak_rss_bytes.max(memory.peak_rss_bytes);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = children_cpu_seconds() - cpu_before;
        let error_text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let _ = std::fs::remove_file(&stderr_path);
        if !status.success() {
            bail!(
                "{} on {} exited with {status}: {}",
                target.tool.display(),
                file.path.display(),
                error_text.chars().take(2000).collect::<String>()
            );
        }
        if target.kind == ServerKind::Oxeye {
            report.oxeye_seconds += seconds;
            report.oxeye_cpu_seconds += cpu_seconds;
            report.oxeye_peak_rss_bytes = report.oxeye_peak_rss_bytes.max(peak_rss_bytes);
        } else {
            report.promtool_seconds += seconds;
            report.promtool_cpu_seconds += cpu_seconds;
        }
        eprintln!(
            "[{}] backfilled {} MiB of text (range from {} ms) in {seconds:.1} s ({cpu_seconds:.1} CPU-s, peak RSS {} MiB)",
            target.kind.name(),
            file.bytes >> 20,
            file.range_start_ms,
            peak_rss_bytes >> 20
        );
    }
    std::fs::remove_file(&file.path).with_context(|| format!("removing {}", file.path.display()))?;
    Ok(())
}

/// CPU seconds of this process' waited-for children (`cutime` + `cstime` of `/proc/self/stat`).
fn children_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the parenthesised command name; cutime and cstime are fields 16 and 17 (1-based).
    let Some(after_name) = stat.rfind(')').map(|at| &stat[at + 1..]) else { return 0.0 };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<f64>().ok()).unwrap_or(0.0);
    // Field 3 (state) is fields[0], so field n is fields[n - 3]; the kernel's USER_HZ is 100 on Linux.
    (ticks(13) + ticks(14)) / 100.0
}

/// Appends one sample line: `name{label="value",...} value timestamp\n`; `labels` are (name, value)
/// pairs as they stand in the request.
fn write_sample_line(line: &mut Vec<u8>, labels: &[(&[u8], &[u8])], value: f64, timestamp_ms: i64) {
    let name = labels.iter().find(|(label, _)| *label == b"__name__").map(|(_, value)| *value).unwrap_or(b"");
    line.extend_from_slice(name);
    let mut first = true;
    for (label, label_value) in labels.iter().filter(|(label, _)| *label != b"__name__") {
        line.push(if first { b'{' } else { b',' });
        first = false;
        line.extend_from_slice(label);
        line.extend_from_slice(b"=\"");
        for byte in label_value.iter() {
            match byte {
                b'\\' => line.extend_from_slice(b"\\\\"),
                b'"' => line.extend_from_slice(b"\\\""),
                b'\n' => line.extend_from_slice(b"\\n"),
                other => line.push(*other),
            }
        }
        line.push(b'"');
    }
    if !first {
        line.push(b'}');
    }
    line.push(b' ');
    write_value(line, value);
    line.push(b' ');
    // Writing into a Vec cannot fail.
    let _ = write!(line, "{}", timestamp_seconds(timestamp_ms));
    line.push(b'\n');
}

/// Reads a remote_write 1.0 `WriteRequest` body in place (no allocation per label) and calls `visit` with
/// each `TimeSeries`' label (name, value) pairs and its (value, timestamp in ms) samples. Fields other
/// than labels and samples (exemplars, histograms) are skipped. Wire format:
/// <https://protobuf.dev/programming-guides/encoding/>; messages as in `oxeye_proto::prometheus`.
fn for_each_series<'b>(
    body: &'b [u8],
    labels: &mut Vec<(&'b [u8], &'b [u8])>,
    samples: &mut Vec<(f64, i64)>,
    mut visit: impl FnMut(&[(&'b [u8], &'b [u8])], &[(f64, i64)]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut request = ProtoReader { bytes: body, position: 0 };
    while let Some((field, wire_type)) = request.key()? {
        if field != 1 || wire_type != 2 {
            request.skip(wire_type)?;
            continue;
        }
        let mut series = ProtoReader { bytes: request.length_delimited()?, position: 0 };
        labels.clear();
        samples.clear();
        while let Some((field, wire_type)) = series.key()? {
            match (field, wire_type) {
                (1, 2) => {
                    let mut label = ProtoReader { bytes: series.length_delimited()?, position: 0 };
                    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
                    while let Some((field, wire_type)) = label.key()? {
                        match (field, wire_type) {
                            (1, 2) => name = label.length_delimited()?,
                            (2, 2) => value = label.length_delimited()?,
                            _ => label.skip(wire_type)?,
                        }
                    }
                    labels.push((name, value));
                }
                (2, 2) => {
                    let mut sample = ProtoReader { bytes: series.length_delimited()?, position: 0 };
                    let (mut value, mut timestamp_ms) = (0.0, 0i64);
                    while let Some((field, wire_type)) = sample.key()? {
                        match (field, wire_type) {
                            (1, 1) => value = f64::from_bits(sample.fixed64()?),
                            (2, 0) => timestamp_ms = sample.varint()? as i64,
                            _ => sample.skip(wire_type)?,
                        }
                    }
                    samples.push((value, timestamp_ms));
                }
                _ => series.skip(wire_type)?,
            }
        }
        visit(labels, samples)?;
    }
    Ok(())
}

/// A cursor over protobuf bytes.
struct ProtoReader<'b> {
    bytes: &'b [u8],
    position: usize,
}

impl<'b> ProtoReader<'b> {
    fn varint(&mut self) -> anyhow::Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.position).context("truncated protobuf varint")?;
            self.position += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        bail!("protobuf varint longer than 10 bytes")
    }

    /// The next field number and wire type, or `None` at the end.
    fn key(&mut self) -> anyhow::Result<Option<(u64, u8)>> {
        if self.position >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        Ok(Some((key >> 3, (key & 7) as u8)))
    }

    fn length_delimited(&mut self) -> anyhow::Result<&'b [u8]> {
        let length = self.varint()? as usize;
        let end = self.position.checked_add(length).context("protobuf length overflows")?;
        let slice = self.bytes.get(self.position..end).context("truncated protobuf field")?;
        self.position = end;
        Ok(slice)
    }

    fn fixed64(&mut self) -> anyhow::Result<u64> {
        let slice = self.bytes.get(self.position..self.position + 8).context("truncated protobuf fixed64")?;
        self.position += 8;
        let mut array = [0u8; 8];
        array.copy_from_slice(slice);
        Ok(u64::from_le_bytes(array))
    }

    fn skip(&mut self, wire_type: u8) -> anyhow::Result<()> {
        match wire_type {
            0 => {
                self.varint()?;
            }
            1 => self.position += 8,
            2 => {
                self.length_delimited()?;
            }
            5 => self.position += 4,
            other => bail!("unsupported protobuf wire type {other}"),
        }
        if self.position > self.bytes.len() {
            bail!("truncated protobuf field");
        }
        Ok(())
    }
}

/// Appends a sample value as OpenMetrics spells it (`NaN`, `+Inf`, `-Inf`, else the shortest exact
/// decimal).
fn write_value(line: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        line.extend_from_slice(b"NaN");
    } else if value == f64::INFINITY {
        line.extend_from_slice(b"+Inf");
    } else if value == f64::NEG_INFINITY {
        line.extend_from_slice(b"-Inf");
    } else {
        // Writing into a Vec cannot fail.
        let _ = write!(line, "{value}");
    }
}

/// The timestamp in seconds whose shortest decimal (Rust's `Display`), parsed as a float64, times 1000
/// and truncated toward zero (what Prometheus' OpenMetrics parser does), gives back exactly `timestamp_ms`.
fn timestamp_seconds(timestamp_ms: i64) -> f64 {
    let mut seconds = timestamp_ms as f64 / 1000.0;
    // Truncation can land one millisecond low when the nearest float is just below the exact value; step
    // up one float at a time until it does not (one or two steps, never more for real timestamps).
    for _ in 0..8 {
        if (seconds * 1000.0) as i64 >= timestamp_ms {
            break;
        }
        seconds = seconds.next_up();
    }
    seconds
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxeye_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
    use prost::Message;

    #[test]
    fn timestamps_survive_the_parsers_truncation() {
        let check = |timestamp_ms: i64| {
            let text = timestamp_seconds(timestamp_ms).to_string();
            let parsed: f64 = text.parse().unwrap_or(f64::NAN);
            assert_eq!((parsed * 1000.0) as i64, timestamp_ms, "{text}");
        };
        for timestamp_ms in [0, 1, 999, 1_000, 1_763_842_500_015, 1_763_842_500_123, 1_700_000_000_007] {
            check(timestamp_ms);
        }
        for timestamp_ms in (1_763_842_500_000..1_763_842_510_000).step_by(7) {
            check(timestamp_ms);
        }
    }

    #[test]
    fn request_bodies_become_lines_with_escaped_values_and_special_floats() {
        let label = |name: &str, value: &str| Label { name: name.to_string(), value: value.to_string() };
        let request = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![label("__name__", "up"), label("job", "a\"b\\c\nd"), label("le", "+Inf")],
                    samples: vec![Sample { value: f64::INFINITY, timestamp: 1_500 }],
                    ..TimeSeries::default()
                },
                TimeSeries {
                    labels: vec![label("__name__", "x")],
                    samples: vec![
                        Sample { value: 0.25, timestamp: 2_000 },
                        Sample { value: f64::NAN, timestamp: 3_001 },
                    ],
                    ..TimeSeries::default()
                },
            ],
            ..WriteRequest::default()
        };
        let body = request.encode_to_vec();
        let mut text = Vec::new();
        let (mut labels, mut samples) = (Vec::new(), Vec::new());
        for_each_series(&body, &mut labels, &mut samples, |labels, samples| {
            for (value, timestamp_ms) in samples {
                write_sample_line(&mut text, labels, *value, *timestamp_ms);
            }
            Ok(())
        })
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            String::from_utf8_lossy(&text),
            "up{job=\"a\\\"b\\\\c\\nd\",le=\"+Inf\"} +Inf 1.5\nx 0.25 2\nx NaN 3.001\n"
        );
    }
}
