//! `oxeye tsdb create-blocks-from openmetrics INPUT [DATA_DIR]`: history written as OpenMetrics text
//! turned into metric blocks, for migrating from another system; named and shaped after Prometheus'
//! `promtool tsdb create-blocks-from openmetrics` (Prometheus docs, "Backfilling from OpenMetrics
//! format").
//!
//! The input is OpenMetrics 1.0 text (<https://github.com/OpenObservability/OpenMetrics>, "Text
//! format"): every sample line must carry a timestamp (seconds), the samples of each series must ascend
//! in time, and the text must end with `# EOF`. It is read in batches of whole lines ([`BATCH_BYTES`]),
//! never whole, each parsed by the scraper's OpenMetrics parser; the last `# TYPE` line of a batch is
//! carried into the next, so a family cut between batches keeps its type.
//!
//! Blocks cover aligned ranges of `--max-block-duration` (2 h by default, as promtool). Memory is the
//! compressed samples of one range plus the labels of its series (about 1–2 bytes per sample for
//! regular scrapes); the input is read once when all its samples lie in one range, else once to find
//! its time span and once more per range. Every error (a malformed line, a missing timestamp, a sample
//! not after its series' previous one) is reported with its line number before the block it belongs to
//! is written; blocks of earlier ranges stay written then, as with promtool.
//!
//! Blocks go to `DATA_DIR/metrics`, the directory `oxeye serve` keeps its metrics in; the server must
//! be stopped (the command takes the directory's lock), and the history must be older than the samples
//! the server already holds in its head (blocks are never written over them).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use oxeye_scrape::ScrapeError;
use oxeye_scrape::exposition::{ExpositionFormat, ScrapedSample, parse};
use oxeye_tsdb::{BlockBuilder, BuilderSeriesId, Tsdb, TsdbOptions};

/// Bytes of input parsed at once (whole lines; a longer line grows the batch).
/// (4 KiB in tests, so small inputs cross batches.)
pub const BATCH_BYTES: usize = if cfg!(test) { 4096 } else { 8 << 20 };

/// Options of `oxeye tsdb create-blocks-from openmetrics`.
#[derive(Debug, clap::Args)]
pub struct OpenMetricsArgs {
    /// The OpenMetrics text file (a regular file: it may be read more than once).
    input: PathBuf,
    /// The oxeye data directory (`storage.data_dir`); blocks are written to its `metrics` subdirectory.
    #[arg(default_value = "./oxeye-data")]
    data_dir: PathBuf,
    /// Length of each block's aligned range, e.g. `2h` (promtool's `--max-block-duration`).
    #[arg(long, default_value = "2h", value_parser = parse_duration_ms)]
    max_block_duration: i64,
    /// Print nothing but errors.
    #[arg(long)]
    quiet: bool,
}

fn parse_duration_ms(text: &str) -> Result<i64, String> {
    match oxeye_model::duration::parse_duration_ms(text) {
        Ok(milliseconds) if milliseconds > 0 => Ok(milliseconds),
        Ok(_) => Err("must be positive".into()),
        Err(error) => Err(error.to_string()),
    }
}

/// What a backfill wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackfillSummary {
    /// Blocks written.
    pub blocks: usize,
    /// Samples written.
    pub samples: u64,
    /// Passes over the input.
    pub passes: usize,
}

/// Runs the command.
///
/// # Errors
/// When the input cannot be read or has an error (named with its line), or a block cannot be written.
pub fn run(args: OpenMetricsArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let summary = create_blocks_from_openmetrics(&args.input, &args.data_dir.join("metrics"), args.max_block_duration)?;
    if !args.quiet {
        println!(
            "{}: {} samples in {} blocks written to {} ({} passes over the input, {:.1} s)",
            args.input.display(),
            summary.samples,
            summary.blocks,
            args.data_dir.join("metrics").display(),
            summary.passes,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Writes the samples of the OpenMetrics file `input` as blocks of aligned `block_ms` ranges into the
/// metrics store at `metrics_dir` (opened, and so locked, for the duration).
///
/// # Errors
/// See [`run`]; also when the store cannot be opened (e.g. a running server holds it) or refuses a
/// range (it overlaps a block or reaches the head).
pub fn create_blocks_from_openmetrics(
    input: &Path,
    metrics_dir: &Path,
    block_ms: i64,
) -> anyhow::Result<BackfillSummary> {
    let tsdb = Tsdb::open(TsdbOptions::new(metrics_dir))
        .with_context(|| format!("cannot open the metrics store {}", metrics_dir.display()))?;
    let result = write_blocks(&tsdb, input, block_ms);
    let closed = tsdb.close().context("closing the metrics store");
    let summary = result?;
    closed?;
    Ok(summary)
}

fn write_blocks(tsdb: &Tsdb, input: &Path, block_ms: i64) -> anyhow::Result<BackfillSummary> {
    let mut summary = BackfillSummary::default();
    // The first pass builds the range of the first sample and stops at the first sample outside it.
    let mut first = RangePass::default();
    summary.passes += 1;
    let stopped_at = for_each_sample(input, |sample, line| {
        let timestamp_ms = timestamp_of(sample, line)?;
        if first.builder.is_none() {
            let start_ms = timestamp_ms.div_euclid(block_ms) * block_ms;
            first.builder = Some(tsdb.block_builder(start_ms, start_ms + block_ms)?);
        }
        first.append(sample, timestamp_ms, line)
    })?;
    if stopped_at.is_none() {
        // Every sample lay in the first sample's range.
        if let Some(builder) = first.builder {
            summary.samples += builder.num_samples();
            summary.blocks += usize::from(builder.commit()?.is_some());
        }
        return Ok(summary);
    }
    drop(first);
    // Several ranges: find the whole span (every line checked), then one pass per aligned range.
    let (mut min_ms, mut max_ms) = (i64::MAX, i64::MIN);
    let mut newest: HashMap<String, i64> = HashMap::new();
    summary.passes += 1;
    for_each_sample(input, |sample, line| {
        let timestamp_ms = timestamp_of(sample, line)?;
        min_ms = min_ms.min(timestamp_ms);
        max_ms = max_ms.max(timestamp_ms);
        match newest.get_mut(sample.series_text) {
            Some(previous) if *previous >= timestamp_ms => {
                bail!(
                    "line {line}: timestamp {timestamp_ms} ms is not after the series' previous sample at {previous} ms"
                )
            }
            Some(previous) => *previous = timestamp_ms,
            None => {
                newest.insert(sample.series_text.to_string(), timestamp_ms);
            }
        }
        Ok(Flow::Continue)
    })?;
    drop(newest);
    let mut start_ms = min_ms.div_euclid(block_ms) * block_ms;
    while start_ms <= max_ms {
        let end_ms = start_ms.saturating_add(block_ms);
        let mut pass = RangePass { builder: Some(tsdb.block_builder(start_ms, end_ms)?), ..RangePass::default() };
        summary.passes += 1;
        for_each_sample(input, |sample, line| {
            let timestamp_ms = timestamp_of(sample, line)?;
            if timestamp_ms < start_ms || timestamp_ms >= end_ms {
                return Ok(Flow::Continue);
            }
            pass.append(sample, timestamp_ms, line)
        })?;
        if let Some(builder) = pass.builder {
            summary.samples += builder.num_samples();
            summary.blocks += usize::from(builder.commit()?.is_some());
        }
        start_ms = end_ms;
    }
    Ok(summary)
}

/// Whether [`for_each_sample`] goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Stop reading; the line number is returned.
    Stop,
}

/// One range's builder and the series ids by their text.
#[derive(Default)]
struct RangePass {
    builder: Option<BlockBuilder>,
    ids: HashMap<String, BuilderSeriesId>,
}

impl RangePass {
    /// Appends a sample, or asks to stop when it lies outside the builder's range.
    fn append(&mut self, sample: &ScrapedSample<'_>, timestamp_ms: i64, line: usize) -> anyhow::Result<Flow> {
        let Some(builder) = self.builder.as_mut() else { return Ok(Flow::Stop) };
        let id = match self.ids.get(sample.series_text) {
            Some(id) => *id,
            None => {
                let id = builder.series(sample.to_labels());
                self.ids.insert(sample.series_text.to_string(), id);
                id
            }
        };
        match builder.append(id, timestamp_ms, sample.value) {
            Ok(()) => Ok(Flow::Continue),
            Err(oxeye_tsdb::BackfillSampleError::OutOfRange { .. }) => Ok(Flow::Stop),
            Err(error) => bail!("line {line}: {error}"),
        }
    }
}

fn timestamp_of(sample: &ScrapedSample<'_>, line: usize) -> anyhow::Result<i64> {
    sample.timestamp_ms.with_context(|| format!("line {line}: sample {} has no timestamp", sample.series_text))
}

/// Calls `visit` with every sample of the OpenMetrics file and its 1-based line number, in file order,
/// until it returns [`Flow::Stop`]; returns that line, or `None` after the whole file.
fn for_each_sample(
    input: &Path,
    mut visit: impl FnMut(&ScrapedSample<'_>, usize) -> anyhow::Result<Flow>,
) -> anyhow::Result<Option<usize>> {
    let mut file = std::fs::File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    // A carried `# TYPE` line (`prefix_len` bytes), then input not parsed yet.
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES + 4096);
    let mut prefix_len = 0usize;
    // The input line number of the first line after the prefix.
    let mut first_line = 1usize;
    let mut target = BATCH_BYTES;
    let mut at_end = false;
    let mut saw_eof = false;
    loop {
        while !at_end && batch.len() < prefix_len + target {
            let before = batch.len();
            batch.resize(prefix_len + target, 0);
            let read = file.read(&mut batch[before..]).with_context(|| format!("reading {}", input.display()))?;
            batch.truncate(before + read);
            at_end = read == 0;
        }
        let cut = if at_end {
            batch.len()
        } else {
            match batch[prefix_len..].iter().rposition(|byte| *byte == b'\n') {
                Some(position) => prefix_len + position + 1,
                None => {
                    // One line longer than the batch: read more of it.
                    target += BATCH_BYTES;
                    continue;
                }
            }
        };
        target = BATCH_BYTES;
        let rest = batch.split_off(cut);
        if batch.len() > prefix_len {
            if !batch.ends_with(b"\n") {
                batch.push(b'\n');
            }
            let body = &batch[prefix_len..];
            let body_lines = body.iter().filter(|byte| **byte == b'\n').count();
            if saw_eof {
                bail!("line {first_line}: data after `# EOF`");
            }
            saw_eof = body == b"# EOF\n" || body.ends_with(b"\n# EOF\n");
            let parsed_len = batch.len();
            if !saw_eof {
                batch.extend_from_slice(b"# EOF\n");
            }
            let prefix_lines = usize::from(prefix_len > 0);
            let input_line = |line_number: usize| (line_number + first_line).saturating_sub(1 + prefix_lines);
            let exposition = parse(&batch, ExpositionFormat::OpenMetrics100).map_err(|error| match error {
                ScrapeError::Parse { line_number, reason } => {
                    anyhow::anyhow!("line {}: {reason}", input_line(line_number))
                }
                other => anyhow::Error::new(other),
            })?;
            for sample in &exposition.samples {
                let line = input_line(sample.line_number);
                if visit(sample, line)? == Flow::Stop {
                    return Ok(Some(line));
                }
            }
            drop(exposition);
            first_line += body_lines;
            // The last `# TYPE` line goes first in the next batch, so a family continuing there keeps its type.
            let type_line = last_type_line(&batch[..parsed_len]).map(<[u8]>::to_vec).unwrap_or_default();
            batch.clear();
            batch.extend_from_slice(&type_line);
            prefix_len = type_line.len();
        } else {
            batch.truncate(prefix_len);
        }
        batch.extend_from_slice(&rest);
        if at_end && batch.len() == prefix_len {
            break;
        }
    }
    if !saw_eof {
        bail!("{}: the input does not end with `# EOF` (OpenMetrics 1.0)", input.display());
    }
    Ok(None)
}

/// The last `# TYPE ...\n` line of `text`, newline included.
fn last_type_line(text: &[u8]) -> Option<&[u8]> {
    let mut end = text.len();
    while end > 0 {
        let start = text[..end - 1].iter().rposition(|byte| *byte == b'\n').map_or(0, |position| position + 1);
        let line = &text[start..end];
        if line.starts_with(b"# TYPE ") {
            return Some(line);
        }
        end = start;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use oxeye_model::storage::Querier;
    use oxeye_model::{Matcher, Sample};

    use super::*;

    fn backfill(text: &str) -> (tempfile::TempDir, anyhow::Result<BackfillSummary>) {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input.om");
        std::fs::write(&input, text).unwrap();
        let result = create_blocks_from_openmetrics(&input, &dir.path().join("metrics"), 7_200_000);
        (dir, result)
    }

    fn select(dir: &Path, name: &str) -> Vec<oxeye_model::storage::Series> {
        let tsdb = Tsdb::open(TsdbOptions::new(dir.join("metrics"))).unwrap();
        let series = tsdb.select(i64::MIN / 2, i64::MAX / 2, &[Matcher::equal("__name__", name)]).unwrap();
        tsdb.close().unwrap();
        series
    }

    #[test]
    fn one_range_is_one_pass_and_one_block() {
        let text = "# TYPE http_requests counter\n\
                    http_requests_total{code=\"200\"} 1 1700000000.5\n\
                    http_requests_total{code=\"500\"} 0 1700000000.5\n\
                    http_requests_total{code=\"200\"} 3 1700000015.5\n\
                    # EOF\n";
        let (dir, summary) = backfill(text);
        assert_eq!(summary.unwrap(), BackfillSummary { blocks: 1, samples: 3, passes: 1 });
        let series = select(dir.path(), "http_requests_total");
        assert_eq!(series.len(), 2);
        assert_eq!(
            series[0].samples,
            [
                Sample { timestamp_ms: 1_700_000_000_500, value: 1.0 },
                Sample { timestamp_ms: 1_700_000_015_500, value: 3.0 }
            ]
        );
    }

    #[test]
    fn samples_across_ranges_become_one_block_per_range() {
        // 1699999200 s is a multiple of 2 h; samples in three ranges, not in time order across series.
        let text = "a{x=\"1\"} 1 1699999100\na{x=\"1\"} 2 1700000000\nb 5 1700007300\na{x=\"1\"} 3 1700010000\n# EOF\n";
        let (dir, summary) = backfill(text);
        assert_eq!(summary.unwrap(), BackfillSummary { blocks: 3, samples: 4, passes: 5 });
        assert_eq!(select(dir.path(), "a")[0].samples.len(), 3);
        assert_eq!(select(dir.path(), "b")[0].samples, [Sample { timestamp_ms: 1_700_007_300_000, value: 5.0 }]);
    }

    #[test]
    fn errors_name_the_line_and_nothing_of_the_range_is_written() {
        let (dir, result) = backfill("a 1 100\na 2 200\na 3 150\n# EOF\n");
        assert!(format!("{:#}", result.unwrap_err()).contains("line 3"));
        assert!(select(dir.path(), "a").is_empty());
        let (_, result) = backfill("a 1 100\nb 2\n# EOF\n");
        assert!(format!("{:#}", result.unwrap_err()).contains("line 2: sample b has no timestamp"));
        let (_, result) = backfill("a 1 100\na{ 2 200\n# EOF\n");
        assert!(format!("{:#}", result.unwrap_err()).starts_with("line 2"));
        let (_, result) = backfill("a 1 100\n");
        assert!(format!("{:#}", result.unwrap_err()).contains("does not end with `# EOF`"));
    }

    #[test]
    fn batches_keep_line_numbers_and_family_types() {
        // Enough lines for several batches; a histogram family cut between batches keeps its `le`
        // normalisation (`1` becomes `1.0`) because its `# TYPE` line is carried over.
        let mut text = String::from("# TYPE h histogram\n");
        let lines = BATCH_BYTES / 30 * 3;
        for index in 0..lines {
            text.push_str(&format!("h_bucket{{le=\"1\"}} {index} {}\n", 1_700_000_000 + index as i64));
        }
        text.push_str("h_bucket{le=\"1\"} 1 1\n# EOF\n");
        let (dir, result) = backfill(&text);
        let error = format!("{:#}", result.unwrap_err());
        assert!(error.starts_with(&format!("line {}:", lines + 2)), "{error}");
        let text = text.replace("h_bucket{le=\"1\"} 1 1\n", "");
        let (dir2, result) = backfill(&text);
        assert_eq!(result.unwrap().samples, lines as u64);
        let series = select(dir2.path(), "h_bucket");
        assert_eq!(series.len(), 1, "one series, not one per batch");
        assert_eq!(series[0].labels.get("le"), Some("1.0"));
        drop(dir);
    }
}
