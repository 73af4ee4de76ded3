//! Starting, probing and stopping the servers under test: oxeye, VictoriaMetrics (Debian's
//! `victoria-metrics`, 1.79) and Prometheus (Debian's `prometheus`, 2.42).
//!
//! Each server gets its own work directory (data directory, config file, log) and runs pinned to the
//! cores in `cpu_list` through `taskset -c` (taskset execs the server, so the child's pid is the
//! server's). Start-up time is the wall time from spawning to the first HTTP 200 from the server's
//! readiness endpoint, polled every 2 ms over fresh connections:
//!
//! | server | readiness | ready means |
//! |---|---|---|
//! | oxeye | `GET /readyz` | the TSDB is open: blocks loaded, WAL replayed |
//! | VictoriaMetrics | `GET /health` | the HTTP server runs; VM opens its storage before starting it |
//! | Prometheus | `GET /-/ready` | the TSDB is open: WAL and head chunks replayed |

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// oxeye (`oxeye serve`).
    Oxeye,
    /// VictoriaMetrics single-node.
    VictoriaMetrics,
    /// Prometheus with `--web.enable-remote-write-receiver`.
    Prometheus,
}

impl ServerKind {
    /// The name used in tables and directories.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Oxeye => "oxeye",
            ServerKind::VictoriaMetrics => "victoria-metrics",
            ServerKind::Prometheus => "prometheus",
        }
    }

    /// The readiness path.
    pub fn ready_path(self) -> &'static str {
        match self {
            ServerKind::Oxeye => "/readyz",
            ServerKind::VictoriaMetrics => "/health",
            ServerKind::Prometheus => "/-/ready",
        }
    }

    /// Whether the server keeps data in Prometheus-style blocks (directories with `meta.json`).
    pub fn has_blocks(self) -> bool {
        !matches!(self, ServerKind::VictoriaMetrics)
    }
}

/// How to run one server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// Which server.
    pub kind: ServerKind,
    /// Its executable.
    pub binary: PathBuf,
    /// `taskset -c` core list, e.g. `0`; `None` runs unpinned.
    pub cpu_list: Option<String>,
    /// Loopback port of its HTTP listener.
    pub port: u16,
    /// Directory for its data (`data/`), config and log.
    pub work_dir: PathBuf,
    /// Block duration to configure where the server has one (oxeye, Prometheus), milliseconds.
    pub block_duration_ms: i64,
    /// Extra environment variables for the server process (e.g. `LD_PRELOAD` of another allocator).
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments, after the ones this module passes (e.g. Prometheus'
    /// `--query.max-samples=1000000000`, whose default of 50,000,000 refuses 24 h queries at 100k series).
    pub args: Vec<String>,
}

impl ServerSpec {
    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.work_dir.join("data")
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.work_dir.join("server.log")
    }

    /// Removes the data directory and writes the config file.
    ///
    /// # Errors
    /// On file system errors.
    pub fn prepare(&self) -> anyhow::Result<()> {
        let data_dir = self.data_dir();
        if data_dir.exists() {
            std::fs::remove_dir_all(&data_dir).with_context(|| format!("removing {}", data_dir.display()))?;
        }
        std::fs::create_dir_all(&self.work_dir).with_context(|| format!("creating {}", self.work_dir.display()))?;
        let block_duration = format!("{}s", self.block_duration_ms / 1000);
        match self.kind {
            ServerKind::Oxeye => {
                let config = format!(
                    "version: 1\nserver:\n  listen: \"127.0.0.1:{port}\"\n  otlp_http_listen: \"\"\n  otlp_grpc_listen: \"\"\n\
                     storage:\n  data_dir: \"{data}\"\n  block_duration: \"{block_duration}\"\n\
                     logging:\n  level: \"info\"\n  format: \"text\"\nself_scrape:\n  enabled: false\n",
                    port = self.port,
                    data = data_dir.display(),
                );
                std::fs::write(self.work_dir.join("oxeye.yaml"), config)?;
            }
            ServerKind::Prometheus => {
                std::fs::write(
                    self.work_dir.join("prometheus.yml"),
                    "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
                )?;
            }
            ServerKind::VictoriaMetrics => {}
        }
        Ok(())
    }

    fn command(&self) -> Command {
        let mut command = match &self.cpu_list {
            Some(cpus) => {
                let mut taskset = Command::new("taskset");
                taskset.arg("-c").arg(cpus).arg(&self.binary);
                taskset
            }
            None => Command::new(&self.binary),
        };
        command.envs(self.env.iter().map(|(key, value)| (key.as_str(), value.as_str())));
        let data_dir = self.data_dir();
        let listen = format!("127.0.0.1:{}", self.port);
        let block_duration = format!("{}s", self.block_duration_ms / 1000);
        match self.kind {
            ServerKind::Oxeye => {
                command
                    .arg("serve")
                    .arg("--config")
                    .arg(self.work_dir.join("oxeye.yaml"))
                    .arg("--listen")
                    .arg(&listen)
                    .arg("--data-dir")
                    .arg(&data_dir);
            }
            ServerKind::VictoriaMetrics => {
                command
                    .arg(format!("-storageDataPath={}", data_dir.display()))
                    .arg(format!("-httpListenAddr={listen}"))
                    .arg("-retentionPeriod=1y");
            }
            ServerKind::Prometheus => {
                command
                    .arg(format!("--config.file={}", self.work_dir.join("prometheus.yml").display()))
                    .arg(format!("--storage.tsdb.path={}", data_dir.display()))
                    .arg(format!("--web.listen-address={listen}"))
                    .arg("--web.enable-remote-write-receiver")
                    .arg("--web.enable-admin-api")
                    .arg("--storage.tsdb.retention.time=1y")
                    .arg(format!("--storage.tsdb.min-block-duration={block_duration}"))
                    .arg(format!("--storage.tsdb.max-block-duration={block_duration}"));
            }
        }
        command.args(&self.args);
        command
    }

    /// Spawns the server and waits until it is ready (at most `timeout`).
    ///
    /// # Errors
    /// When it cannot be spawned, exits early or is not ready in time.
    pub async fn start(&self, client: &reqwest::Client, timeout: Duration) -> anyhow::Result<Running> {
        let log = File::options().create(true).append(true).open(self.log_path())?;
        let mut command = self.command();
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        let started = Instant::now();
        let mut child = command.spawn().with_context(|| format!("spawning {}", self.binary.display()))?;
        let pid = child.id();
        let url = format!("{}{}", self.base_url(), self.kind.ready_path());
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited with {status} before it was ready; see {}",
                    self.kind.name(),
                    self.log_path().display()
                );
            }
            let probe = client.get(&url).timeout(Duration::from_secs(1)).send().await;
            if probe.is_ok_and(|response| response.status().is_success()) {
                let startup_ms = started.elapsed().as_secs_f64() * 1000.0;
                return Ok(Running { child, pid, startup_ms, kind: self.kind });
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} not ready after {timeout:?}; see {}", self.kind.name(), self.log_path().display());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A started server.
#[derive(Debug)]
pub struct Running {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// Milliseconds from spawn to ready.
    pub startup_ms: f64,
    kind: ServerKind,
}

impl Running {
    /// Sends SIGTERM and waits for the exit; returns the milliseconds it took.
    ///
    /// # Errors
    /// When the signal cannot be sent or the server does not exit within `timeout` (it is then killed).
    pub async fn stop_gracefully(mut self, timeout: Duration) -> anyhow::Result<f64> {
        let started = Instant::now();
        let status = Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.pid);
        }
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    eprintln!("warning: {} exited with {status} after SIGTERM", self.kind.name());
                }
                return Ok(started.elapsed().as_secs_f64() * 1000.0);
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not stop within {timeout:?} of SIGTERM", self.kind.name());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends SIGKILL (`kill -9`) and reaps the process.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn kill_hard(mut self) -> anyhow::Result<()> {
        self.child.kill().context("kill -9")?;
        self.child.wait().context("reaping the killed server")?;
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A run that fails half-way must not leave a server behind; after a stop this is a no-op.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether `path` exists and is executable by someone.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}
