//! Times windowed chunk decoding (`chunkenc::decode_into`) over the real samples of one metric: the
//! metric's series are read from a data directory, cut into chunks as blocks cut them (120 samples,
//! the smaller encoding), and each chunk is decoded with a window over its last 5 minutes (what an
//! instant `rate(x[5m])` at the end of a chunk reads) or whole.
//!
//! `cargo run --release -p oxeye-tsdb --example decode_window -- <metrics data dir> <metric> [last|whole] [rounds]`
//!
//! The data directory is opened read-write (WAL replay): point it at a copy. Under `valgrind
//! --tool=callgrind --toggle-collect='oxeye_tsdb::chunkenc::decode_into'`, a run with 0 rounds counts the
//! reading of the series, which a run with rounds subtracts (BENCHMARKS.md, "PromQL latency, session 11").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use oxeye_model::Matcher;
use oxeye_model::storage::Querier;
use oxeye_tsdb::chunkenc::{decode_into, encode_chunks};
use oxeye_tsdb::{Tsdb, TsdbOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: decode_window <metrics data dir> <metric> [last|whole] [rounds]";
    let dir = args.next().expect(usage);
    let metric = args.next().expect(usage);
    let mode = args.next().unwrap_or_default();
    let rounds: usize = args.next().map_or(15, |text| text.parse().expect(usage));
    let tsdb = Tsdb::open(TsdbOptions::new(dir)).unwrap();
    let series = tsdb.select(i64::MIN / 2, i64::MAX / 2, &[Matcher::equal("__name__", &metric)]).unwrap();
    let chunks: Vec<_> = series.iter().flat_map(|series| encode_chunks(&series.samples)).collect();
    println!("{} series, {} chunks", series.len(), chunks.len());
    let mut out = Vec::with_capacity(256);
    for (label, window_ms) in [("last 5m", 300_000i64), ("whole", i64::MAX / 4)] {
        if !mode.is_empty() && !label.starts_with(&mode) {
            continue;
        }
        let mut best = f64::MAX;
        let mut kept = 0usize;
        for _ in 0..rounds {
            let started = Instant::now();
            kept = 0;
            for (mint_ms, maxt_ms, encoding, bytes) in &chunks {
                out.clear();
                let window_start_ms = if window_ms > maxt_ms - mint_ms { *mint_ms } else { maxt_ms - window_ms + 1 };
                decode_into(*encoding, bytes, window_start_ms, *maxt_ms, &mut out).unwrap();
                kept += out.len();
            }
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!(
            "{label}: {:.1} ns per chunk, {kept} samples kept, best of {rounds}",
            best * 1e9 / chunks.len() as f64
        );
    }
}
