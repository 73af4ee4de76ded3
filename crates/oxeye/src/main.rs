//! The `oxeye` binary: command line, configuration assembly, start-up and shutdown wiring.
//!
//! `oxeye serve` runs the server; `oxeye config example` prints the commented reference configuration;
//! `oxeye config check FILE` validates a file; `oxeye tsdb create-blocks-from openmetrics FILE [DATA_DIR]`
//! backfills metric blocks from OpenMetrics text. Only this crate reads flags, the environment and the
//! configuration file; every library crate receives typed options.

mod backfill;
mod config;
mod config_logs;
mod config_traces;
mod config_traces_pipeline;
mod serve;
mod serve_logs;
mod serve_trace_pipeline;
mod serve_traces;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{ConfigFile, LogFormat};

/// jemalloc instead of the system allocator: with glibc malloc, 1M active series cost 8.3 CPU-seconds per
/// million ingested samples against 1.7 with jemalloc (BENCHMARKS.md). Its options (one arena, a
/// background thread that returns freed pages within about a second) are compiled in from the
/// workspace's `.cargo/config.toml`; `_RJEM_MALLOC_CONF` overrides them at run time.
#[cfg(all(unix, not(target_env = "msvc")))]
#[global_allocator]
static GLOBAL_ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// One binary for metrics, logs, traces and profiles.
#[derive(Debug, Parser)]
#[command(name = "oxeye", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the server: ingest, storage, query APIs.
    Serve(ServeArgs),
    /// Works with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Works with the metrics store offline (the server stopped).
    #[command(subcommand)]
    Tsdb(TsdbCommand),
}

#[derive(Debug, Subcommand)]
enum TsdbCommand {
    /// Writes blocks from history in another format (as `promtool tsdb create-blocks-from`).
    #[command(subcommand)]
    CreateBlocksFrom(CreateBlocksFromCommand),
}

#[derive(Debug, Subcommand)]
enum CreateBlocksFromCommand {
    /// From an OpenMetrics text file whose samples all carry timestamps and which ends with `# EOF`;
    /// the history must be older than what the data directory's head holds.
    Openmetrics(backfill::OpenMetricsArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// A YAML configuration file (see `oxeye config example`); without it every field has its default.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Overrides `server.listen`, e.g. `0.0.0.0:9090` to expose every API beyond loopback. The OTLP
    /// listeners then use the same host with their standard ports unless configured.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Overrides `storage.data_dir`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validates a configuration file (with `OXEYE_*` overrides applied) and exits 0 when it is valid.
    Check {
        /// The file to check.
        file: PathBuf,
    },
    /// Prints the commented example configuration, every field at its default.
    Example,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Config(ConfigCommand::Example) => {
            print!("{}", config::EXAMPLE);
            Ok(())
        }
        Command::Config(ConfigCommand::Check { file }) => check_config(&file),
        Command::Tsdb(TsdbCommand::CreateBlocksFrom(CreateBlocksFromCommand::Openmetrics(args))) => backfill::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("oxeye: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<ConfigFile> {
    let file = match path {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    Ok(file.apply_environment(std::env::vars())?)
}

fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let settings = load_config(Some(path))?.validate()?;
    println!("{}: valid (listen {}, data_dir {})", path.display(), settings.listen, settings.data_dir.display());
    Ok(())
}

fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|error| anyhow::anyhow!("config field logging.level: {error}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut file = load_config(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        let host = listen.rsplit_once(':').map(|(host, _)| host.to_string()).unwrap_or_default();
        if file.server.otlp_http_listen == config::ServerSection::default().otlp_http_listen {
            file.server.otlp_http_listen = format!("{host}:4318");
        }
        if file.server.otlp_grpc_listen == config::ServerSection::default().otlp_grpc_listen {
            file.server.otlp_grpc_listen = format!("{host}:4317");
        }
        file.server.listen = listen;
    }
    if let Some(data_dir) = args.data_dir {
        file.storage.data_dir = data_dir.display().to_string();
    }
    let settings = file.validate()?;
    let config_yaml = serde_saphyr::to_string(&file).unwrap_or_default();
    let config_path = args.config.as_ref().map(|path| path.display().to_string()).unwrap_or_default();
    init_logging(&settings.log_level, settings.log_format)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("oxeye")
        .build()
        .map_err(|error| anyhow::anyhow!("cannot start the async runtime: {error}"))?;
    runtime.block_on(serve::run(settings, config_yaml, config_path))
}
