//! The scheduler at scale (`cargo bench --bench scale`): a real `quantune serve` holding one
//! two-objective study of 100,000 trials (imported results) while an external `bayes` study is
//! worked by a client at the same time. Prints a table of
//! - top-10 leaderboard and `GET /v1/status` latency (median and p99 of 30 requests, and the
//!   first leaderboard read after the import, which ranks the study);
//! - daemon RSS with the big study loaded;
//! - restart after `kill -9` until the big study answers;
//! - N concurrent clients (default 500), each doing status, leaderboard, ask and tell for
//!   `--rounds` rounds: errors and p50/p99 per request type;
//! - no-op command trials end to end: the rate of a fresh study and of one whose trial numbers
//!   start at 100,000 (its imported history counts, its budget does not).
//!
//! Arguments (after `--`): `--trials N` (default 100000), `--clients N` (500), `--rounds N`
//! (2), `--noop N` (2000), `--slots N` (2: the daemon's CPU slots and the no-op studies'
//! `parallel`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::Daemon;
use quantune::client::http::Client;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One client's request times by kind, and its errors.
type ClientRun = (Vec<(&'static str, Duration)>, Vec<String>);

fn rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn study(name: &str, strategy: &str, objectives: &str, trial: &str, budget: &str) -> String {
    format!(
        "[study]\nname = \"{name}\"\nseed = 1\n{objectives}\n\
         [space.lr]\ntype = \"float\"\nlow = 1e-5\nhigh = 1e-2\nlog = true\n\
         [space.batch]\ntype = \"int\"\nlow = 1\nhigh = 64\n\
         [space.quant]\ntype = \"categorical\"\nchoices = [\"int4\", \"int8\", \"bf16\"]\n\
         [strategy]\nkind = \"{strategy}\"\n[budget]\n{budget}\n[trial]\n{trial}\n"
    )
}

const TWO: &str = "[[objective]]\nmetric = \"latency_ms\"\ndirection = \"minimize\"\n\
                   [[objective]]\nmetric = \"tokens_per_s\"\ndirection = \"maximize\"\n";
const ONE: &str = "[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n";

/// Deterministic pseudo-random numbers (no dependency on the bench's side).
fn lcg(state: &mut u64) -> f64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

/// Imports `n` two-objective results into `name`, 20,000 per request.
async fn fill(client: &Client, name: &str, n: usize) {
    let mut s = 7u64;
    let quants = ["int4", "int8", "bf16"];
    let mut done = 0;
    while done < n {
        let k = (n - done).min(20_000);
        let results: Vec<Value> = (0..k)
            .map(|_| {
                let q = quants[(lcg(&mut s) * 3.0) as usize % 3];
                let lat = 1.0 + 9.0 * lcg(&mut s);
                json!({
                    "params": {"lr": 1e-5 + 9e-3 * lcg(&mut s), "batch": 1 + (lcg(&mut s) * 63.0) as i64, "quant": q},
                    "metrics": {"latency_ms": lat, "tokens_per_s": 1000.0 / lat * (0.5 + lcg(&mut s))}
                })
            })
            .collect();
        client
            .json::<Value>(
                hyper::Method::POST,
                &format!("/v1/studies/{name}/import"),
                Some(json!({ "results": results })),
            )
            .await
            .expect("import");
        done += k;
    }
}

async fn time_get(client: &Client, path: &str, n: usize) -> Vec<Duration> {
    let mut v = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        client
            .json::<Value>(hyper::Method::GET, path, None)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        v.push(t.elapsed());
    }
    v.sort();
    v
}

/// Works the external bayes study until `stop`: ask, a quadratic objective, tell.
async fn work_bayes(client: Client, stop: Arc<AtomicBool>) -> usize {
    let mut told = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(a) = client
            .json::<Value>(hyper::Method::POST, "/v1/studies/bo/ask", None)
            .await
        else {
            break;
        };
        let n = a["trial"].as_u64().unwrap();
        let lr = a["params"]["lr"].as_f64().unwrap_or(1e-3);
        let loss = (lr.log10() + 3.0).powi(2);
        let _ = client
            .json::<Value>(
                hyper::Method::POST,
                &format!("/v1/studies/bo/trials/{n}/tell"),
                Some(json!({"metrics": {"loss": loss}})),
            )
            .await;
        told += 1;
    }
    told
}

fn noop_study(name: &str, trials: u64, parallel: usize) -> String {
    format!(
        "[study]\nname = \"{name}\"\nseed = 1\n{ONE}[space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n\
         [strategy]\nkind = \"random\"\n[budget]\nmax_trials = {trials}\nparallel = {parallel}\nmax_failed = 1\n\
         [trial]\ncommand = [\"sh\", \"-c\", \"echo '{{{{\\\"loss\\\": {{x}}}}}}' >> \\\"$QUANTUNE_METRICS_FILE\\\"\"]\ntimeout = \"1m\"\n"
    )
}

/// Runs the submitted no-op study `name` to completion; trials/s on the daemon's clock, over
/// its own trials numbered `from` on (the deep study's first few trials ran before the import
/// paused it: counting from their creation would count the import's time as theirs).
fn run_noop(d: &Daemon, name: &str, trials: u64, from: u64) -> f64 {
    loop {
        let s = d.json(&["status", name]);
        match s["state"].as_str().unwrap() {
            "completed" => {
                let complete = s["counts"]["complete"].as_u64().unwrap_or(0);
                let imported = s["imported"].as_u64().unwrap_or(0);
                assert_eq!(
                    complete - imported,
                    trials,
                    "every trial must complete: {s}"
                );
                // From the first trial's creation to the last one's end.
                let trials_v = d.trials(name);
                let own: Vec<&Value> = trials_v
                    .iter()
                    .filter(|t| t["imported"].as_bool() != Some(true))
                    .filter(|t| t["trial"].as_u64().is_some_and(|n| n >= from))
                    .collect();
                let first = own
                    .iter()
                    .filter_map(|t| t["created_at"].as_f64())
                    .fold(f64::INFINITY, f64::min);
                let last = own
                    .iter()
                    .filter_map(|t| t["finished_at"].as_f64())
                    .fold(0.0, f64::max);
                return own.len() as f64 / (last - first);
            }
            "running" => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("study ended {other}: {s}"),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n = arg("--trials", 100_000);
    let clients = arg("--clients", 500);
    let rounds = arg("--rounds", 2);
    let noop = arg("--noop", 2000) as u64;
    let slots = arg("--slots", 2);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    let mut d = Daemon::start(slots, "");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let submit = |d: &Daemon, file: &str, text: &str| {
        let f = d.write(file, text);
        let out = d.cli(&["submit", f.to_str().unwrap()]);
        assert!(out.status.success(), "{}", common::text(&out));
    };
    submit(
        &d,
        "big.toml",
        &study(
            "big",
            "random",
            TWO,
            "workload = \"external\"",
            "max_trials = 10",
        ),
    );
    submit(
        &d,
        "bo.toml",
        &study(
            "bo",
            "bayes",
            ONE,
            "workload = \"external\"\ntimeout = \"1h\"",
            "max_trials = 1000000",
        ),
    );
    let client = Client::new(&d.socket);
    let t0 = Instant::now();
    rt.block_on(fill(&client, "big", n));
    let import_s = t0.elapsed().as_secs_f64();
    let pid = d.pid().unwrap();
    let rss_after_import = rss_mib(pid);

    // The bayes study is worked throughout the read measurements.
    let stop = Arc::new(AtomicBool::new(false));
    let worker = rt.spawn(work_bayes(Client::new(&d.socket), stop.clone()));
    let (first_board, boards, statuses) = rt.block_on(async {
        let t = Instant::now();
        client
            .json::<Value>(
                hyper::Method::GET,
                "/v1/studies/big/leaderboard?top=10",
                None,
            )
            .await
            .unwrap();
        let first = t.elapsed();
        let boards = time_get(&client, "/v1/studies/big/leaderboard?top=10", 30).await;
        let statuses = time_get(&client, "/v1/status", 30).await;
        (first, boards, statuses)
    });

    // N clients at once against a third study (ask/tell) and the big one (reads).
    submit(
        &d,
        "load.toml",
        &study(
            "load",
            "random",
            ONE,
            "workload = \"external\"\ntimeout = \"1h\"",
            &format!("max_trials = {}\nparallel = {clients}", clients * rounds),
        ),
    );
    let t_load = Instant::now();
    let results: Vec<ClientRun> = rt.block_on(async {
        let start = Arc::new(tokio::sync::Barrier::new(clients));
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let c = Client::new(&d.socket);
                let start = start.clone();
                tokio::spawn(async move {
                    let mut times = Vec::new();
                    let mut errors = Vec::new();
                    start.wait().await;
                    for _ in 0..rounds {
                        let t = Instant::now();
                        if let Err(e) = c
                            .json::<Value>(hyper::Method::GET, "/v1/status", None)
                            .await
                        {
                            errors.push(format!("status: {e}"));
                        }
                        times.push(("status", t.elapsed()));
                        let t = Instant::now();
                        if let Err(e) = c
                            .json::<Value>(
                                hyper::Method::GET,
                                "/v1/studies/big/leaderboard?top=10",
                                None,
                            )
                            .await
                        {
                            errors.push(format!("leaderboard: {e}"));
                        }
                        times.push(("leaderboard", t.elapsed()));
                        let t = Instant::now();
                        let asked = c
                            .json::<Value>(hyper::Method::POST, "/v1/studies/load/ask", None)
                            .await;
                        times.push(("ask", t.elapsed()));
                        let Ok(a) = asked.map_err(|e| errors.push(format!("ask: {e}"))) else {
                            continue;
                        };
                        let k = a["trial"].as_u64().unwrap();
                        let t = Instant::now();
                        if let Err(e) = c
                            .json::<Value>(
                                hyper::Method::POST,
                                &format!("/v1/studies/load/trials/{k}/tell"),
                                Some(json!({"metrics": {"loss": k as f64}})),
                            )
                            .await
                        {
                            errors.push(format!("tell: {e}"));
                        }
                        times.push(("tell", t.elapsed()));
                    }
                    (times, errors)
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        all
    });
    let load_s = t_load.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let bayes_told = rt.block_on(worker).unwrap_or(0);
    let errors: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
    let rss_after_load = rss_mib(pid);

    // Restart after kill -9: until the big study answers.
    d.kill9();
    let t = Instant::now();
    d.spawn();
    let restart = loop {
        let out = d.cli(&["status", "big", "--format", "json"]);
        if out.status.success() {
            break t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no answer after restart"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let rss_restarted = rss_mib(d.pid().unwrap());

    // No-op command trials: a fresh study, and one numbered from 100,000 on.
    submit(&d, "fresh.toml", &noop_study("fresh", noop, slots));
    let fresh_rate = run_noop(&d, "fresh", noop, 0);
    submit(&d, "deep.toml", &noop_study("deep", noop, slots));
    rt.block_on(async {
        let c = Client::new(&d.socket);
        c.json::<Value>(hyper::Method::POST, "/v1/studies/deep/pause", None)
            .await
            .unwrap();
        // The import goes in while the study is paused; trials it had started meanwhile count
        // in the budget, and the imported ones do not.
        let mut s = 3u64;
        let mut done = 0;
        while done < n {
            let k = (n - done).min(20_000);
            let results: Vec<Value> = (0..k)
                .map(|_| json!({"params": {"x": lcg(&mut s)}, "metrics": {"loss": lcg(&mut s)}}))
                .collect();
            c.json::<Value>(
                hyper::Method::POST,
                "/v1/studies/deep/import",
                Some(json!({ "results": results })),
            )
            .await
            .unwrap();
            done += k;
        }
        c.json::<Value>(hyper::Method::POST, "/v1/studies/deep/resume", None)
            .await
            .unwrap();
    });
    // Trials numbered after the import's (the study was paused for it).
    let deep_rate = run_noop(&d, "deep", noop, n as u64);

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "machine: {cpu}, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| import of {n} two-objective results (20k per request) | {import_s:.1} s |");
    println!("| daemon RSS after the import | {rss_after_import:.0} MiB |");
    println!(
        "| leaderboard top 10, first read (ranks {n} trials) | {} |",
        ms(first_board)
    );
    println!(
        "| leaderboard top 10, median / p99 of 30 | {} / {} |",
        ms(pct(&boards, 0.5)),
        ms(pct(&boards, 0.99))
    );
    println!(
        "| GET /v1/status, median / p99 of 30 | {} / {} |",
        ms(pct(&statuses, 0.5)),
        ms(pct(&statuses, 0.99))
    );
    println!("| bayes trials told meanwhile (external client) | {bayes_told} |");
    println!(
        "| {clients} clients × {rounds} rounds (status, leaderboard, ask, tell) | {load_s:.1} s, {} errors |",
        errors.len()
    );
    for kind in ["status", "leaderboard", "ask", "tell"] {
        let mut v: Vec<Duration> = results
            .iter()
            .flat_map(|r| r.0.iter().filter(|(k, _)| *k == kind).map(|(_, d)| *d))
            .collect();
        v.sort();
        println!(
            "| {kind} under load, p50 / p99 | {} / {} |",
            ms(pct(&v, 0.5)),
            ms(pct(&v, 0.99))
        );
    }
    println!("| daemon RSS after the load | {rss_after_load:.0} MiB |");
    println!(
        "| restart after kill -9 until `status big` answers | {:.2} s |",
        restart.as_secs_f64()
    );
    println!("| daemon RSS after the restart | {rss_restarted:.0} MiB |");
    println!(
        "| no-op trials, fresh study ({noop}, parallel = {slots}) | {fresh_rate:.0} trials/s |"
    );
    println!("| no-op trials, numbered from {n} on ({noop}, parallel = {slots}) | {deep_rate:.0} trials/s |");
    for e in errors.iter().take(5) {
        println!("error: {e}");
    }
}
