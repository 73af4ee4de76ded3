//! Backfilling Prometheus with a workload: the workload's samples written as OpenMetrics text, one file per
//! 2-hour block range, each turned into a TSDB block by `promtool tsdb create-blocks-from openmetrics`.
//!
//! Loading Prometheus 2.42 over remote_write takes about 6–15 CPU-seconds per million samples (65k–160k
//! samples per CPU-second), so the query benchmark's 24 h of 100k series (576M samples) cannot be loaded
//! that way in reasonable time. `promtool` writes blocks directly and needs no running server.
//!
//! How `promtool` 2.42 reads its input decides the file split:
//! - It maps the whole file into memory, so the input must be a regular file, not a pipe.
//! - It reads the file once to find the smallest and largest timestamp, then once more per 2-hour range
//!   (aligned to multiples of 2 h since the epoch) between them. A file holding one aligned range is read
//!   twice; a file holding 24 h would be read 13 times. So each aligned range gets its own file, converted
//!   while the next one is written and deleted afterwards, which bounds the disk space to two ranges of text
//!   (about 10 GB each at 100k series: 208 bytes per sample line).
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
use oxeye_proto::prometheus::WriteRequest;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::workload;

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
    /// Wall seconds spent writing text (decompressing and decoding the workload included; waits for the
    /// previous range's `promtool` included).
    pub write_seconds: f64,
    /// Wall seconds `promtool` ran, all files (the runs overlap the writing of the next range).
    pub promtool_seconds: f64,
    /// CPU seconds (user + system) of the `promtool` processes, all files.
    pub promtool_cpu_seconds: f64,
    /// Wall seconds of the whole backfill.
    pub total_seconds: f64,
}

/// Writes every sample of the workload at `workload_path` as OpenMetrics text and turns it into blocks in
/// `data_dir` with `promtool`, one aligned 2-hour range at a time; the text files live in `scratch_dir`
/// and are deleted after conversion.
///
/// # Errors
/// When the workload cannot be read or decoded, a text file cannot be written, or `promtool` fails.
pub fn backfill(
    workload_path: &Path,
    promtool: &Path,
    data_dir: &Path,
    scratch_dir: &Path,
) -> anyhow::Result<BackfillReport> {
    let started = Instant::now();
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    std::fs::create_dir_all(scratch_dir).with_context(|| format!("creating {}", scratch_dir.display()))?;
    let mut report = BackfillReport {
        samples: 0,
        files: 0,
        text_bytes: 0,
        largest_file_bytes: 0,
        write_seconds: 0.0,
        promtool_seconds: 0.0,
        promtool_cpu_seconds: 0.0,
        total_seconds: 0.0,
    };
    // Samples of one round straddle a range boundary when targets' offsets push them past it, so the
    // files of two ranges can be open at once; a range is finished once a round starts at or after its end.
    let mut open_files: Vec<RangeFile> = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    let mut decompressed = Vec::new();
    let mut line = Vec::with_capacity(512);
    let mut write_started = Instant::now();
    let mut conversion: Option<Conversion> = None;
    let cpu_before = children_cpu_seconds();
    let header = workload::for_each_record(workload_path, |round_start_ms, body| {
        while open_files.first().is_some_and(|file| file.range_end_ms <= round_start_ms) {
            let finished = open_files.remove(0);
            report.write_seconds += write_started.elapsed().as_secs_f64();
            convert(finished, promtool, data_dir, &mut conversion, &mut report)?;
            write_started = Instant::now();
        }
        let length = snap::raw::decompress_len(body).context("snappy length of a workload body")?;
        decompressed.resize(length, 0);
        decoder.decompress(body, &mut decompressed).context("decompressing a workload body")?;
        let request = WriteRequest::decode(decompressed.as_slice()).context("decoding a workload body")?;
        for series in &request.timeseries {
            for sample in &series.samples {
                let range_start_ms = sample.timestamp.div_euclid(PROMTOOL_BLOCK_RANGE_MS) * PROMTOOL_BLOCK_RANGE_MS;
                let file = match open_files.iter_mut().position(|file| file.range_start_ms == range_start_ms) {
                    Some(index) => &mut open_files[index],
                    None => {
                        if open_files.last().is_some_and(|last| last.range_start_ms > range_start_ms) {
                            bail!("sample at {} ms comes after a later block range was started", sample.timestamp);
                        }
                        open_files.push(RangeFile::create(scratch_dir, range_start_ms)?);
                        open_files.last_mut().context("a range file was just opened")?
                    }
                };
                line.clear();
                write_sample_line(&mut line, &series.labels, sample.value, sample.timestamp);
                file.writer.write_all(&line)?;
                file.bytes += line.len() as u64;
                report.samples += 1;
            }
        }
        Ok(())
    })?;
    report.write_seconds += write_started.elapsed().as_secs_f64();
    for finished in std::mem::take(&mut open_files) {
        convert(finished, promtool, data_dir, &mut conversion, &mut report)?;
    }
    wait_for(&mut conversion, &mut report)?;
    report.promtool_cpu_seconds = children_cpu_seconds() - cpu_before;
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

/// One `promtool` run going on in a thread: its wall seconds when it succeeded.
type Conversion = std::thread::JoinHandle<anyhow::Result<f64>>;

/// Ends `file` with `# EOF` and starts `promtool` on it in a thread, which deletes the file afterwards.
/// The previous conversion is waited for first, so at most one `promtool` runs while the next range's text
/// is written: on two cores the two overlap, and at most two ranges of text are on disk.
fn convert(
    mut file: RangeFile,
    promtool: &Path,
    data_dir: &Path,
    previous: &mut Option<Conversion>,
    report: &mut BackfillReport,
) -> anyhow::Result<()> {
    file.writer.write_all(b"# EOF\n")?;
    file.bytes += 6;
    file.writer.flush().with_context(|| format!("writing {}", file.path.display()))?;
    drop(file.writer);
    report.files += 1;
    report.text_bytes += file.bytes;
    report.largest_file_bytes = report.largest_file_bytes.max(file.bytes);
    wait_for(previous, report)?;
    let promtool = promtool.to_path_buf();
    let data_dir = data_dir.to_path_buf();
    let (path, bytes, range_start_ms) = (file.path, file.bytes, file.range_start_ms);
    *previous = Some(std::thread::spawn(move || {
        let started = Instant::now();
        let output = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
            .arg(&path)
            .arg(&data_dir)
            .output()
            .with_context(|| format!("running {}", promtool.display()))?;
        let seconds = started.elapsed().as_secs_f64();
        if !output.status.success() {
            bail!(
                "promtool on {} exited with {}: {}",
                path.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).chars().take(2000).collect::<String>()
            );
        }
        eprintln!(
            "[prometheus] backfilled {} MiB of text (range from {range_start_ms} ms) in {seconds:.1} s",
            bytes >> 20
        );
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        Ok(seconds)
    }));
    Ok(())
}

/// Waits for the running conversion, if any, and adds its wall time to the report.
fn wait_for(conversion: &mut Option<Conversion>, report: &mut BackfillReport) -> anyhow::Result<()> {
    if let Some(handle) = conversion.take() {
        let seconds = handle.join().map_err(|_| anyhow::anyhow!("the promtool thread panicked"))??;
        report.promtool_seconds += seconds;
    }
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

/// Appends one sample line: `name{label="value",...} value timestamp\n`.
fn write_sample_line(line: &mut Vec<u8>, labels: &[oxeye_proto::prometheus::Label], value: f64, timestamp_ms: i64) {
    let name = labels.iter().find(|label| label.name == "__name__").map(|label| label.value.as_str()).unwrap_or("");
    line.extend_from_slice(name.as_bytes());
    let mut first = true;
    for label in labels.iter().filter(|label| label.name != "__name__") {
        line.push(if first { b'{' } else { b',' });
        first = false;
        line.extend_from_slice(label.name.as_bytes());
        line.extend_from_slice(b"=\"");
        for byte in label.value.bytes() {
            match byte {
                b'\\' => line.extend_from_slice(b"\\\\"),
                b'"' => line.extend_from_slice(b"\\\""),
                b'\n' => line.extend_from_slice(b"\\n"),
                other => line.push(other),
            }
        }
        line.push(b'"');
    }
    if !first {
        line.push(b'}');
    }
    line.push(b' ');
    line.extend_from_slice(value_text(value).as_bytes());
    line.push(b' ');
    line.extend_from_slice(timestamp_text(timestamp_ms).as_bytes());
    line.push(b'\n');
}

/// A sample value as OpenMetrics spells it (`NaN`, `+Inf`, `-Inf`, else the shortest exact decimal).
fn value_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{value}")
    }
}

/// The timestamp in seconds, as the shortest decimal whose float64, times 1000 and truncated toward zero
/// (what Prometheus' OpenMetrics parser does), gives back exactly `timestamp_ms`.
fn timestamp_text(timestamp_ms: i64) -> String {
    let mut seconds = timestamp_ms as f64 / 1000.0;
    // Truncation can land one millisecond low when the nearest float is just below the exact value; step
    // up one float at a time until it does not (one or two steps, never more for real timestamps).
    for _ in 0..8 {
        if (seconds * 1000.0) as i64 >= timestamp_ms {
            break;
        }
        seconds = seconds.next_up();
    }
    format!("{seconds}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxeye_proto::prometheus::Label;

    #[test]
    fn timestamps_survive_the_parsers_truncation() {
        for timestamp_ms in [0, 1, 999, 1_000, 1_763_842_500_015, 1_763_842_500_123, 1_700_000_000_007] {
            let text = timestamp_text(timestamp_ms);
            let parsed: f64 = text.parse().unwrap_or(f64::NAN);
            assert_eq!((parsed * 1000.0) as i64, timestamp_ms, "{text}");
        }
        for timestamp_ms in (1_763_842_500_000..1_763_842_510_000).step_by(7) {
            let parsed: f64 = timestamp_text(timestamp_ms).parse().unwrap_or(f64::NAN);
            assert_eq!((parsed * 1000.0) as i64, timestamp_ms);
        }
    }

    #[test]
    fn sample_lines_escape_label_values_and_spell_special_values() {
        let label = |name: &str, value: &str| Label { name: name.to_string(), value: value.to_string() };
        let mut line = Vec::new();
        write_sample_line(
            &mut line,
            &[label("__name__", "up"), label("job", "a\"b\\c\nd"), label("le", "+Inf")],
            f64::INFINITY,
            1_500,
        );
        assert_eq!(String::from_utf8_lossy(&line), "up{job=\"a\\\"b\\\\c\\nd\",le=\"+Inf\"} +Inf 1.5\n");
        line.clear();
        write_sample_line(&mut line, &[label("__name__", "x")], 0.25, 2_000);
        assert_eq!(String::from_utf8_lossy(&line), "x 0.25 2\n");
    }
}
