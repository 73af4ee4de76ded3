//! `oxeye-bench`: the load generator and measurement driver behind `BENCHMARKS.md`.
//!
//! ```text
//! oxeye-bench generate --series 100000 --rounds 120 --out bench-out/w-100k-120.bin
//! oxeye-bench describe --workload bench-out/w-100k-120.bin
//! taskset -c 1 oxeye-bench run --server prometheus --binary /usr/bin/prometheus --server-cpus 0 \
//!     --workload bench-out/w-100k-120.bin --work-dir bench-out/run --out bench-out/prometheus.json
//! oxeye-bench report bench-out/*.json
//! oxeye-bench write --url http://127.0.0.1:9090/api/v1/write --workload FILE [--pid PID]
//! ```
//!
//! The workload is a fleet of Django apps (see [`fleet`]), pre-encoded as remote_write 1.0 requests (see
//! [`workload`]) so the timed part only sends bytes. `run` drives one server through every phase (see
//! [`run`]) and writes a JSON result; `report` prints the table.

mod fleet;
mod head;
mod openmetrics;
mod procfs;
mod query;
mod report;
mod rng;
mod run;
mod send;
mod server;
mod traces;
mod wire;
mod workload;

/// jemalloc, as `oxeye serve` uses, so the in-process `head` benchmark measures oxeye's allocator.
#[cfg(all(unix, not(target_env = "msvc")))]
#[global_allocator]
static GLOBAL_ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::server::{ServerKind, ServerSpec};

#[derive(Debug, Parser)]
#[command(name = "oxeye-bench", about = "Remote-write load generator and measurement driver for oxeye and its peers.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Builds a workload file: every request of the run, encoded and snappy-compressed.
    Generate {
        /// Active series.
        #[arg(long, default_value_t = 100_000)]
        series: usize,
        /// Scrape rounds (samples per series), 15 s apart.
        #[arg(long, default_value_t = 120)]
        rounds: u32,
        /// Samples per request (Prometheus' `queue_config.max_samples_per_send` default since 2.x is 2000).
        #[arg(long, default_value_t = 2000)]
        samples_per_request: usize,
        /// Fleet seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Encoding threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Prints a workload file's header (series per metric family, sizes).
    Describe {
        /// The workload file.
        #[arg(long)]
        workload: PathBuf,
    },
    /// Sends a workload to a running server and reports samples/s (and its CPU and memory with --pid).
    Write {
        /// remote_write URL.
        #[arg(long)]
        url: String,
        /// The workload file.
        #[arg(long)]
        workload: PathBuf,
        /// Concurrent connections.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// The server's pid, to read its CPU time and memory from /proc.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Runs every phase (empty start, ingest, kill -9, block cut, stop, full start) for one server.
    Run {
        /// Which server.
        #[arg(long, value_enum)]
        server: ServerKind,
        /// The server's executable.
        #[arg(long)]
        binary: PathBuf,
        /// `taskset -c` list for the server, e.g. 0.
        #[arg(long)]
        server_cpus: Option<String>,
        /// Loopback port for the server.
        #[arg(long, default_value_t = 19_090)]
        port: u16,
        /// The workload file.
        #[arg(long)]
        workload: PathBuf,
        /// Directory for the server's data, config and log (its data/ is wiped first).
        #[arg(long)]
        work_dir: PathBuf,
        /// Concurrent connections.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Where to write the JSON result.
        #[arg(long)]
        out: PathBuf,
        /// Column name in the results table (default: the server's name).
        #[arg(long)]
        label: Option<String>,
        /// Extra environment for the server, KEY=VALUE; repeatable.
        #[arg(long = "server-env", value_name = "KEY=VALUE")]
        server_env: Vec<String>,
    },
    /// The PromQL query benchmark (see the `query` module): `query run`, `query report`.
    #[command(subcommand)]
    Query(query::QueryCommand),
    /// The trace benchmark (see the `traces` module): OTLP span ingest, stored bytes, by-id latency.
    Traces(traces::TracesArgs),
    /// The in-process head benchmark (see the `head` module): fill a head with the fleet, crash, time the
    /// restart.
    Head(head::HeadArgs),
    /// The restart phase of `head`, run by it in a child process.
    #[command(hide = true)]
    HeadOpen(head::HeadOpenArgs),
    /// Prints the results table of `run` JSON files.
    Report {
        /// Result files.
        files: Vec<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("oxeye-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")
}

fn real_main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate { series, rounds, samples_per_request, seed, threads, out } => {
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let options =
                workload::GenerateOptions { active_series: series, rounds, samples_per_request, seed, threads };
            let header = workload::generate(&options, &out)?;
            eprintln!(
                "{}: {} series on {} targets x {} rounds = {} samples in {} requests; {:.1} B/sample protobuf, {:.1} B/sample snappy; {:.1} s",
                out.display(),
                header.active_series,
                header.targets,
                header.rounds,
                header.total_samples,
                u64::from(header.rounds) * u64::from(header.requests_per_round),
                header.encoded_bytes as f64 / header.total_samples as f64,
                header.compressed_bytes as f64 / header.total_samples as f64,
                header.generation_seconds
            );
            Ok(())
        }
        Command::Describe { workload } => {
            let header = workload::read_header(&workload)?;
            println!("{}", serde_json::to_string_pretty(&header)?);
            Ok(())
        }
        Command::Write { url, workload, concurrency, pid } => {
            let (header, requests) = workload::load(&workload)?;
            let requests: &'static [workload::PrebuiltRequest] = Box::leak(requests.into_boxed_slice());
            runtime()?.block_on(async {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(concurrency)
                    .tcp_nodelay(true)
                    .timeout(Duration::from_secs(120))
                    .build()?;
                let cpu_before = pid.map(procfs::cpu_seconds).transpose()?;
                let report = send::send_all(&client, &url, requests, header.requests_per_round, concurrency).await;
                let mut output = serde_json::json!({ "send": report });
                if let (Some(pid), Some(before)) = (pid, cpu_before) {
                    let cpu = procfs::cpu_seconds(pid)? - before;
                    output["server_cpu_seconds"] = serde_json::json!(cpu);
                    output["cpu_seconds_per_million_samples"] =
                        serde_json::json!(cpu / (report.samples_ok as f64 / 1e6));
                    output["server_memory"] = serde_json::to_value(procfs::memory(pid)?)?;
                }
                println!("{}", serde_json::to_string_pretty(&output)?);
                if report.requests_failed > 0 {
                    bail!("{} requests failed", report.requests_failed);
                }
                Ok(())
            })
        }
        Command::Run { server, binary, server_cpus, port, workload, work_dir, concurrency, out, label, server_env } => {
            let mut env = Vec::new();
            for pair in server_env {
                let Some((key, value)) = pair.split_once('=') else { bail!("--server-env {pair}: expected KEY=VALUE") };
                env.push((key.to_string(), value.to_string()));
            }
            let label = label.unwrap_or_else(|| server.name().to_string());
            if !server::is_executable(&binary) {
                bail!("{} is not an executable", binary.display());
            }
            let (header, requests) = workload::load(&workload)?;
            let requests: &'static [workload::PrebuiltRequest] = Box::leak(requests.into_boxed_slice());
            let spec = ServerSpec {
                kind: server,
                binary,
                cpu_list: server_cpus,
                port,
                work_dir: std::path::absolute(&work_dir)?,
                block_duration_ms: header.block_duration_ms,
                env,
                args: Vec::new(),
            };
            let result = runtime()?.block_on(run::run(&label, &spec, &header, requests, concurrency))?;
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&out, serde_json::to_string_pretty(&result)?)?;
            print!("{}", report::table(std::slice::from_ref(&result)));
            Ok(())
        }
        Command::Query(command) => query::main(command),
        Command::Traces(args) => traces::main(args),
        Command::Head(args) => head::main(&args),
        Command::HeadOpen(args) => head::open_main(&args),
        Command::Report { files } => {
            let mut results = Vec::new();
            for file in files {
                let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                results.push(
                    serde_json::from_str::<run::RunResult>(&text)
                        .with_context(|| format!("parsing {}", file.display()))?,
                );
            }
            print!("{}", report::table(&results));
            Ok(())
        }
    }
}
