//! The daemon config file (docs/DEPLOY.md). Every key is optional; unknown keys are errors that name
//! the file and line.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/quantune/quantune.toml";

/// The daemon's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Where the store and trial files live.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The API socket.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// Group that owns the socket (mode 0660).
    pub socket_group: Option<String>,
    /// Slots for trials with gpus = 0 (default: the number of cores).
    pub cpu_slots: Option<usize>,
    /// One slot per CUDA device found.
    #[serde(default = "yes")]
    pub gpu_discovery: bool,
    /// Trials that may share one GPU.
    #[serde(default = "one")]
    pub trials_per_gpu: u32,
    /// Plain loopback listener serving only `/metrics` for Prometheus scrapes.
    pub metrics_listen: Option<String>,
    /// Serve the read-only web page (leaderboards and plots) at `/ui/` on the API socket.
    #[serde(default)]
    pub web: bool,
    /// Token-protected TCP listener (`[tcp]`).
    pub tcp: Option<TcpConfig>,
    /// Executor settings (`[executor.slurm]`, `[executor.ray]`).
    #[serde(default)]
    pub executor: ExecutorsConfig,
}

pub use crate::executor::ExecutorsConfig;

/// `[tcp]`: an HTTP listener beside the Unix socket; every request on it needs
/// `Authorization: Bearer <token>`, the token read from `token_file` (mode 0600 or stricter).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// Address to listen on, e.g. "127.0.0.1:7707".
    pub listen: String,
    /// File holding the bearer token.
    pub token_file: PathBuf,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/quantune")
}
fn default_socket() -> PathBuf {
    PathBuf::from("/run/quantune/quantune.sock")
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}

impl Default for DaemonConfig {
    fn default() -> Self {
        toml::from_str("").expect("empty config parses")
    }
}

impl DaemonConfig {
    /// Loads `path`, or the default file if it exists, or the defaults.
    pub fn load(path: Option<&Path>) -> Result<DaemonConfig, String> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
            None => return Ok(DaemonConfig::default()),
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: cannot read the config file: {e}", path.display()))?;
        let cfg: DaemonConfig = toml::from_str(&text).map_err(|e| {
            let loc = e
                .span()
                .map(|s| {
                    format!(
                        ":{}",
                        text[..s.start.min(text.len())].matches('\n').count() + 1
                    )
                })
                .unwrap_or_default();
            format!("{}{loc}: {}", path.display(), e.message().trim())
        })?;
        if cfg.trials_per_gpu == 0 {
            return Err(format!(
                "{}: trials_per_gpu must be at least 1",
                path.display()
            ));
        }
        if let Some(tcp) = &cfg.tcp {
            if tcp.listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!(
                    "{}: tcp.listen must be an IP address and port, e.g. \"127.0.0.1:7707\" (got \"{}\")",
                    path.display(),
                    tcp.listen
                ));
            }
        }
        if cfg.cpu_slots == Some(0) {
            return Err(format!(
                "{}: cpu_slots must be at least 1 (omit it to use the number of cores)",
                path.display()
            ));
        }
        Ok(cfg)
    }

    /// CPU slots to use.
    pub fn cpu_slots(&self) -> usize {
        self.cpu_slots.unwrap_or_else(cores)
    }
}

/// The number of cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_daemon_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for f in ["deploy/quantune.toml", "configs/daemon/quantune.toml"] {
            let c = DaemonConfig::load(Some(&root.join(f))).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(c.state_dir, PathBuf::from("/var/lib/quantune"), "{f}");
        }
    }

    #[test]
    fn defaults_and_unknown_keys() {
        let d = DaemonConfig::default();
        assert_eq!(d.socket, PathBuf::from("/run/quantune/quantune.sock"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.toml");
        std::fs::write(&p, "state_dir = \"/x\"\nbogus = 1\n").unwrap();
        let e = DaemonConfig::load(Some(&p)).unwrap_err();
        assert!(e.contains("q.toml:2") && e.contains("bogus"), "{e}");
    }
}
