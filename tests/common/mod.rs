//! Test harness shared by the end-to-end tests: a real `quantune serve` in a temp dir, driven
//! through the real CLI.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The quantune binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quantune"))
}

/// A daemon in its own temp dir (state, socket, config, study files).
pub struct Daemon {
    /// The temp dir holding everything.
    pub dir: tempfile::TempDir,
    /// The API socket.
    pub socket: PathBuf,
    /// The config file.
    pub config: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts a daemon with `cpu_slots` CPU slots and no GPU discovery; `extra` is appended to
    /// its config file.
    pub fn start(cpu_slots: usize, extra: &str) -> Daemon {
        let mut d = Daemon::prepare(cpu_slots, extra);
        d.spawn();
        d
    }

    /// Like [`Daemon::start`] but does not start the process yet (call [`Daemon::spawn`]); its
    /// state directory can meanwhile be used by `quantune run --state`.
    pub fn prepare(cpu_slots: usize, extra: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("q.sock");
        let config = dir.path().join("quantune.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = {:?}\nsocket = {:?}\ncpu_slots = {cpu_slots}\ngpu_discovery = false\n{extra}\n",
                dir.path().join("state"),
                socket
            ),
        )
        .unwrap();
        Daemon {
            dir,
            socket,
            config,
            child: None,
        }
    }

    /// The daemon's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The daemon process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the daemon process (again) and waits for its socket to answer.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start daemon");
        self.child = Some(child);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if self.cli(&["studies"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not come up; log:\n{}", self.log());
    }

    /// The daemon's stderr log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// SIGKILLs the daemon (no chance to clean up).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `timeout` for the daemon to exit on its own; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(s)) = c.try_wait() {
                    self.child = None;
                    return s.code();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERMs the daemon and waits for it to exit; returns its exit status success.
    pub fn stop(&mut self) -> bool {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(40) {
                if let Ok(Some(s)) = c.try_wait() {
                    return s.success();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        false
    }

    /// Runs a CLI command against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run cli")
    }

    /// Runs a CLI command with `--format json`, asserts success, parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let out = self.cli(&a);
        assert!(
            out.status.success(),
            "quantune {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "bad JSON from {args:?}: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Writes a file in the temp dir and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `trials STUDY --format json` as a vector of trial objects.
    pub fn trials(&self, study: &str) -> Vec<Value> {
        self.json(&["trials", study])
            .as_array()
            .expect("trials is a JSON array")
            .clone()
    }

    /// `leaderboard STUDY --format json` as a vector of rows.
    pub fn leaderboard(&self, study: &str) -> Vec<Value> {
        self.json(&["leaderboard", study])
            .as_array()
            .expect("leaderboard is a JSON array")
            .clone()
    }

    /// Waits until `study` reaches a finished state; returns the state.
    pub fn wait_study(&self, study: &str, timeout: Duration) -> String {
        let t = Instant::now();
        loop {
            let s = self.json(&["status", study]);
            let state = s["state"].as_str().unwrap().to_string();
            if ["completed", "failed", "cancelled"].contains(&state.as_str()) {
                return state;
            }
            assert!(
                t.elapsed() < timeout,
                "study {study} still {state} after {timeout:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stdout and stderr of an output, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A minimal valid study running `command` (a TOML array literal) with `max_trials`.
pub fn study_toml(
    name: &str,
    command: &str,
    max_trials: u64,
    parallel: u64,
    extra_trial: &str,
) -> String {
    study_toml_full(name, command, max_trials, parallel, "", "30s", extra_trial)
}

/// Like [`study_toml`] with extra `[budget]` lines and the trial timeout.
pub fn study_toml_full(
    name: &str,
    command: &str,
    max_trials: u64,
    parallel: u64,
    extra_budget: &str,
    timeout: &str,
    extra_trial: &str,
) -> String {
    format!(
        r#"[study]
name = "{name}"
seed = 1

[[objective]]
metric = "loss"
direction = "minimize"

[space.x]
type = "float"
low = -5.0
high = 5.0

[space.q]
type = "categorical"
choices = ["a", "b"]

[budget]
max_trials = {max_trials}
parallel = {parallel}
{extra_budget}

[trial]
command = {command}
timeout = "{timeout}"
{extra_trial}
"#
    )
}

/// Path of a fixture script in tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The fixture trial `objective.sh` as a TOML command array: `["sh", "…/objective.sh", "{x}", "{q}"]`.
pub fn objective_command() -> String {
    format!(
        "[\"sh\", {:?}, \"{{x}}\", \"{{q}}\"]",
        fixture("objective.sh").display().to_string()
    )
}

/// Polls `f` every 50 ms until it returns `Some`, panicking with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` still exists (a zombie waiting for its reaper counts as gone).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) S ...": the state follows the last ')'.
            let state = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.trim_start())
                .unwrap_or("");
            !(state.starts_with('Z') || state.starts_with('X'))
        }
        Err(_) => false,
    }
}

/// Trials of a `trials`/`leaderboard` JSON array in state `state`.
pub fn count_state(trials: &[Value], state: &str) -> usize {
    trials.iter().filter(|t| t["state"] == state).count()
}
