//! Opens an existing data directory and reports how long WAL replay took.
//!
//! `cargo run --release -p oxeye-tsdb --example reopen -- <data_dir>`

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use oxeye_tsdb::{Tsdb, TsdbOptions};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: reopen <data_dir>");
    let started = Instant::now();
    let tsdb = Tsdb::open(TsdbOptions::new(dir)).unwrap();
    let stats = tsdb.stats();
    println!(
        "opened in {:?}: {} head series, {} wal records replayed in {:.3} s, {} blocks",
        started.elapsed(),
        stats.head_series,
        stats.wal_replay_records,
        stats.wal_replay_seconds,
        stats.blocks
    );
}
