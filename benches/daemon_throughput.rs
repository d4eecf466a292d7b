//! End-to-end daemon benchmark (`cargo bench --bench daemon_throughput`): starts the real
//! `quantune serve`, submits studies of no-op trials (a `sh` one-liner that writes the final
//! metrics line), and prints a table of
//! - throughput: trials/s from submission to completion, every transition durable, with
//!   `parallel = cpu_slots`, measured on the daemon's own timestamps;
//! - memory: the daemon's resident set size after a 10,000-trial study.
//!
//! Arguments (after `--`): `--trials N` (throughput study size, default 2000), `--big N`
//! (memory study size, default 10000).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_quantune"))
}

fn cli(socket: &Path, args: &[&str]) -> Value {
    let out = Command::new(bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Kills the daemon if the benchmark panics, so no orphan is left behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn study(dir: &Path, name: &str, trials: u64, parallel: usize) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            r#"[study]
name = "{name}"
seed = 1
[[objective]]
metric = "loss"
direction = "minimize"
[space.x]
type = "float"
low = 0.0
high = 1.0
[strategy]
kind = "random"
[budget]
max_trials = {trials}
parallel = {parallel}
max_failed = 1
[trial]
command = ["sh", "-c", "echo '{{{{\"loss\": {{x}}}}}}' >> \"$QUANTUNE_METRICS_FILE\""]
timeout = "1m"
"#
        ),
    )
    .unwrap();
    p
}

/// Submits a study and waits for it; returns (trials/s on daemon timestamps, wall seconds).
fn run_study(socket: &Path, file: &Path, name: &str, trials: u64) -> (f64, f64) {
    let t0 = Instant::now();
    cli(socket, &["submit", file.to_str().unwrap()]);
    loop {
        let s = cli(socket, &["status", name]);
        match s["state"].as_str().unwrap() {
            "completed" => {
                let complete = s["counts"]["complete"].as_u64().unwrap_or(0);
                assert_eq!(complete, trials, "every trial must complete: {s}");
                let secs = s["updated_at"].as_f64().unwrap() - s["created_at"].as_f64().unwrap();
                return (trials as f64 / secs, t0.elapsed().as_secs_f64());
            }
            "running" => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("study ended {other}: {s}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str, default: u64| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let trials = arg("--trials", 2000);
    let big = arg("--big", 10_000);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("q.sock");
    let config = dir.path().join("q.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\nsocket = {:?}\ncpu_slots = {cores}\ngpu_discovery = false\n",
            dir.path().join("state"),
            socket
        ),
    )
    .unwrap();
    let daemon = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut daemon = KillOnDrop(daemon);
    let daemon_pid = daemon.0.id();
    let t = Instant::now();
    while Command::new(bin())
        .arg("--socket")
        .arg(&socket)
        .arg("studies")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_idle = rss_kib(daemon_pid);
    let (tput, wall) = run_study(
        &socket,
        &study(dir.path(), "tput", trials, cores),
        "tput",
        trials,
    );
    let (_, big_wall) = run_study(&socket, &study(dir.path(), "big", big, cores), "big", big);
    let rss_big = rss_kib(daemon_pid);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon_pid.to_string())
        .status();
    let _ = daemon.0.wait();

    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| no-op trials, parallel = cpu_slots = {cores} | {trials} trials |");
    println!("| throughput (submit → completed, daemon clock) | {tput:.0} trials/s |");
    println!("| wall time incl. CLI polling | {wall:.2} s |");
    println!("| daemon RSS idle | {:.1} MiB |", rss_idle as f64 / 1024.0);
    println!(
        "| daemon RSS after a {big}-trial study ({big_wall:.1} s) | {:.1} MiB |",
        rss_big as f64 / 1024.0
    );
}
