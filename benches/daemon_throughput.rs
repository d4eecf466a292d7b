//! End-to-end daemon benchmark (`cargo bench --bench daemon_throughput`): starts the real
//! `quantune serve`, submits studies of no-op trials (a `sh` one-liner that writes the final
//! metrics line), and prints a table of
//! - throughput: trials/s from submission to completion, every transition durable, with
//!   `parallel = cpu_slots`, measured on the daemon's own timestamps;
//! - memory: the daemon's resident set size after a 10,000-trial study.
//!
//! Arguments (after `--`): `--trials N` (throughput study size, default 2000), `--big N`
//! (memory study size, default 10000).

#[path = "../tests/common/mod.rs"]
mod common;

use common::Daemon;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
fn run_study(d: &Daemon, file: &Path, name: &str, trials: u64) -> (f64, f64) {
    let t0 = Instant::now();
    d.json(&["submit", file.to_str().unwrap()]);
    loop {
        let s = d.json(&["status", name]);
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
    let d = Daemon::start(cores, "");
    let dir = d.dir.path();
    let pid = d.pid().expect("the daemon runs");
    let rss_idle = rss_kib(pid);
    let (tput, wall) = run_study(&d, &study(dir, "tput", trials, cores), "tput", trials);
    let (_, big_wall) = run_study(&d, &study(dir, "big", big, cores), "big", big);
    let rss_big = rss_kib(pid);

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
