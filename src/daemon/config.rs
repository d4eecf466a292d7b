//! The daemon config file (docs/DEPLOY.md). Every key is optional; unknown keys are errors that name
//! the file and line.

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub use crate::model::DEFAULT_CONFIG;

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
    /// How local trials are contained: `"auto"` (a cgroup each where the machine offers one,
    /// else a child subreaper), `"cgroup"` or `"subreaper"` (docs/TRIALS.md).
    #[serde(default)]
    pub containment: crate::executor::contain::ContainmentMode,
    /// The daemon's umask, in octal (`"0027"`): state files, logs and what trials create.
    /// Unset: 0077 when the inherited umask leaves files readable by others (systemd's
    /// `UMask=0027` is kept).
    pub umask: Option<String>,
    /// Connection limits of the API listeners (`[http]`).
    #[serde(default)]
    pub http: HttpConfig,
    /// Webhooks told of new bests, ended studies and failure runs (`[[notify]]`,
    /// docs/NOTIFY.md).
    #[serde(default)]
    pub notify: Vec<crate::notify::target::TargetConfig>,
    /// `notify` checked, with the secrets read (filled by [`DaemonConfig::load`]).
    #[serde(skip)]
    pub notify_targets: Vec<crate::notify::target::Target>,
}

/// `[http]`: how long a connection may take to send a request head or sit idle, and how
/// many each listener holds (docs/DEPLOY.md, "Connections").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Time from a connection's accept (or its first byte after a response) to a complete
    /// request head (default "10s").
    pub header_timeout: Option<String>,
    /// Time a keep-alive connection may sit between requests (default "60s").
    pub idle_timeout: Option<String>,
    /// Time from a complete request head to its complete body (default "60s").
    pub body_timeout: Option<String>,
    /// Connections open at once, per listener (default 1024).
    pub max_connections: Option<usize>,
    /// On the Unix socket, the last connections below the cap kept for the CLI: once they
    /// are in use each new connection closes the oldest idle or half-sent one (default 64).
    pub cli_reserve: Option<usize>,
}

impl HttpConfig {
    /// The limits of the Unix socket (`unix`, with the CLI reserve) or of a TCP listener.
    pub fn limits(&self, unix: bool) -> Result<crate::daemon::listen::HttpLimits, String> {
        let d = crate::daemon::listen::HttpLimits::default();
        let dur = |key: &str, v: &Option<String>, default: std::time::Duration| match v {
            None => Ok(default),
            Some(t) => crate::model::duration::parse_duration(t)
                .map(std::time::Duration::from_secs_f64)
                .map_err(|e| format!("http.{key}: {e}")),
        };
        let max = self.max_connections.unwrap_or(d.max_connections);
        if max == 0 {
            return Err("http.max_connections must be at least 1".into());
        }
        let reserve = if unix {
            self.cli_reserve.unwrap_or(64).min(max.saturating_sub(1))
        } else {
            0
        };
        Ok(crate::daemon::listen::HttpLimits {
            header_timeout: dur("header_timeout", &self.header_timeout, d.header_timeout)?,
            idle_timeout: dur("idle_timeout", &self.idle_timeout, d.idle_timeout)?,
            body_timeout: dur("body_timeout", &self.body_timeout, d.body_timeout)?,
            max_connections: max,
            reserve,
        })
    }
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
        let mut cfg: DaemonConfig =
            toml::from_str(&text).map_err(|e| crate::model::toml_error(&path, &text, &e))?;
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
        cfg.umask_bits()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.http
            .limits(true)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if cfg.cpu_slots == Some(0) {
            return Err(format!(
                "{}: cpu_slots must be at least 1 (omit it to use the number of cores)",
                path.display()
            ));
        }
        cfg.notify_targets = crate::notify::target::resolve(&path, &text, &cfg.notify)?;
        Ok(cfg)
    }

    /// The configured umask, if any; the error says what is wrong with it.
    pub fn umask_bits(&self) -> Result<Option<u32>, String> {
        match &self.umask {
            None => Ok(None),
            Some(t) => match u32::from_str_radix(t.trim_start_matches("0o"), 8) {
                Ok(bits) if bits <= 0o777 => Ok(Some(bits)),
                _ => Err(format!(
                    "umask = \"{t}\" is not an octal umask; write e.g. \"0077\" or \"0027\""
                )),
            },
        }
    }

    /// Sets the process umask: the configured one, else 0077 unless the inherited one already
    /// keeps others out. Returns the umask in force.
    pub fn apply_umask(&self) -> u32 {
        use nix::sys::stat::{umask, Mode};
        let inherited = umask(Mode::from_bits_truncate(0o077)).bits() as u32;
        let want = match self.umask_bits() {
            Ok(Some(bits)) => bits,
            _ if inherited & 0o007 == 0o007 => inherited,
            _ => 0o077,
        };
        umask(Mode::from_bits_truncate(want as nix::libc::mode_t));
        want
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
