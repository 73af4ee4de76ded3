//! What the kernel says about a server process and its files: CPU time from `/proc/<pid>/stat`, resident
//! memory from `/proc/<pid>/status`, sizes of data directories.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`, 100 on every Linux we run).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// User plus system CPU seconds used so far by every thread of `pid` (fields 14 and 15 of
/// `/proc/<pid>/stat`; 10 ms resolution).
///
/// # Errors
/// When the process is gone or the file cannot be parsed.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_cpu_seconds(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))
}

fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses; fields restart after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let user_ticks: f64 = fields.get(11)?.parse().ok()?;
    let system_ticks: f64 = fields.get(12)?.parse().ok()?;
    Some((user_ticks + system_ticks) / CLOCK_TICKS_PER_SECOND)
}

/// Resident memory of a process, bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_bytes: u64,
    /// `VmHWM`: the highest resident size since the process started.
    pub peak_rss_bytes: u64,
}

/// `VmRSS` and `VmHWM` of `pid`.
///
/// # Errors
/// When the process is gone.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(parse_memory(&status))
}

fn parse_memory(status: &str) -> Memory {
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    Memory { rss_bytes: field("VmRSS:"), peak_rss_bytes: field("VmHWM:") }
}

/// Sizes of a directory tree.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct TreeSize {
    /// Sum of file lengths.
    pub apparent_bytes: u64,
    /// Sum of allocated blocks (`st_blocks × 512`, what `du` reports).
    pub allocated_bytes: u64,
    /// Regular files.
    pub files: u64,
}

/// Sizes of everything under `path` (0 when it does not exist). Files that vanish while walking (a
/// server compacting) are skipped.
pub fn tree_size(path: &Path) -> TreeSize {
    let mut size = TreeSize::default();
    let mut pending = vec![path.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&current) else { continue };
        if metadata.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&current) {
                pending.extend(entries.flatten().map(|entry| entry.path()));
            }
        } else if metadata.is_file() {
            size.apparent_bytes += metadata.len();
            size.allocated_bytes += metadata.blocks() * 512;
            size.files += 1;
        }
    }
    size
}

/// Sizes of each top-level entry of `path`, by name.
pub fn top_level_sizes(path: &Path) -> BTreeMap<String, TreeSize> {
    let mut sizes = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            sizes.insert(entry.file_name().to_string_lossy().into_owned(), tree_size(&entry.path()));
        }
    }
    sizes
}

/// A Prometheus-format block (a directory with `meta.json`) in a data directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockInfo {
    /// Directory name (the block id).
    pub name: String,
    /// Oldest timestamp, milliseconds.
    pub min_time_ms: i64,
    /// End of range, milliseconds, exclusive.
    pub max_time_ms: i64,
    /// Samples, from `meta.json` stats.
    pub samples: u64,
    /// Series, from `meta.json` stats.
    pub series: u64,
    /// Bytes of the block directory.
    pub size: TreeSize,
}

/// The blocks in `data_dir` (in `data_dir/metrics` when that exists: oxeye keeps them there): directories with a `meta.json` in Prometheus' (`minTime`, `stats.numSamples`)
/// or oxeye's (`min_time_ms`, `stats.num_samples`) spelling. Directories still being written (`.tmp`
/// suffix or no `meta.json`) are not blocks.
pub fn blocks(data_dir: &Path) -> Vec<BlockInfo> {
    let mut found = Vec::new();
    // oxeye keeps its metrics blocks under `<data_dir>/metrics`; Prometheus directly in its data directory.
    let oxeye_metrics = data_dir.join("metrics");
    let data_dir = if oxeye_metrics.is_dir() { oxeye_metrics.as_path() } else { data_dir };
    let Ok(entries) = std::fs::read_dir(data_dir) else { return found };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains(".tmp") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path().join("meta.json")) else { continue };
        let Ok(meta) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        let number = |keys: &[&str]| -> i64 {
            keys.iter().find_map(|key| meta.pointer(key).and_then(serde_json::Value::as_i64)).unwrap_or(0)
        };
        found.push(BlockInfo {
            name,
            min_time_ms: number(&["/minTime", "/min_time_ms"]),
            max_time_ms: number(&["/maxTime", "/max_time_ms"]),
            samples: number(&["/stats/numSamples", "/stats/num_samples"]) as u64,
            series: number(&["/stats/numSeries", "/stats/num_series"]) as u64,
            size: tree_size(&entry.path()),
        });
    }
    found.sort_by_key(|block| block.min_time_ms);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_parse_from_a_stat_line_with_spaces_in_the_name() {
        let stat = "1234 (tokio (worker) 1) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 130 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_cpu_seconds(stat), Some(3.8));
    }

    #[test]
    fn memory_parses_kib_fields() {
        let status = "Name:\tx\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(parse_memory(status), Memory { rss_bytes: 100 * 1024 * 1024, peak_rss_bytes: 200 * 1024 * 1024 });
    }

    #[test]
    fn own_process_has_cpu_and_memory() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_ok());
        let own = memory(pid).unwrap_or_default();
        assert!(own.rss_bytes > 0 && own.peak_rss_bytes >= own.rss_bytes);
    }

    #[test]
    fn blocks_read_both_meta_spellings() {
        let directory = std::env::temp_dir().join(format!("oxeye-bench-blocks-{}", std::process::id()));
        let prometheus = directory.join("01ABC");
        let oxeye = directory.join("01DEF");
        let unfinished = directory.join("01GHI.tmp");
        for path in [&prometheus, &oxeye, &unfinished] {
            std::fs::create_dir_all(path).unwrap_or_default();
        }
        let prometheus_meta =
            r#"{"ulid":"01ABC","minTime":1000,"maxTime":2000,"stats":{"numSamples":120,"numSeries":1}}"#;
        let oxeye_meta = r#"{"version":1,"id":"01DEF","min_time_ms":2000,"max_time_ms":3000,"stats":{"num_series":2,"num_samples":240,"num_chunks":2}}"#;
        std::fs::write(prometheus.join("meta.json"), prometheus_meta).unwrap_or_default();
        std::fs::write(oxeye.join("meta.json"), oxeye_meta).unwrap_or_default();
        std::fs::write(unfinished.join("meta.json"), prometheus_meta).unwrap_or_default();
        let found = blocks(&directory);
        std::fs::remove_dir_all(&directory).unwrap_or_default();
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].min_time_ms, found[0].samples, found[0].series), (1000, 120, 1));
        assert_eq!((found[1].max_time_ms, found[1].samples, found[1].series), (3000, 240, 2));
        assert_eq!(found[0].size.apparent_bytes, prometheus_meta.len() as u64);
    }
}
