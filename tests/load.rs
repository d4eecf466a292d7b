//! Load: 1,000 concurrent API clients against one daemon, each doing rounds of `ask`, `tell`
//! and `leaderboard --top 10` on one external study (each request on its own connection, as
//! the CLI makes them). Prints p50/p99/max latency per request kind and the error count; the
//! target is 0 errors. Long, so opt-in:
//!
//! `cargo test --release --test load -- --ignored --nocapture`
//! (`QUANTUNE_LOAD_CLIENTS`, `QUANTUNE_LOAD_ROUNDS` change the defaults 1000 and 3).

mod common;

use common::Daemon;
use quantune::client::http::Client;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Lifts this process's soft limit on open files (every client holds a socket).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// One client's request latencies (by request kind) and errors.
type ClientResult = (Vec<(&'static str, Duration)>, Vec<String>);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[test]
#[ignore = "long: run with --ignored (see the module docs)"]
fn thousand_concurrent_clients() {
    let clients = env_or("QUANTUNE_LOAD_CLIENTS", 1000);
    let rounds = env_or("QUANTUNE_LOAD_ROUNDS", 3);
    raise_fd_limit();
    let d = Daemon::start(2, "");
    let study = d.write(
        "load.toml",
        &format!(
            "[study]\nname = \"load\"\nseed = 1\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\
             [space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[space.q]\ntype = \"categorical\"\nchoices = [\"a\", \"b\"]\n\
             [strategy]\nkind = \"random\"\n[budget]\nmax_trials = {}\nparallel = {clients}\n\
             [trial]\nworkload = \"external\"\ntimeout = \"10m\"\n",
            clients * rounds
        ),
    );
    let out = d.cli(&["submit", study.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::text(&out));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let socket = d.socket.clone();
    let start = Arc::new(tokio::sync::Barrier::new(clients));
    let t0 = Instant::now();
    let results: Vec<ClientResult> = rt.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let client = Client::new(&socket);
                let start = start.clone();
                tokio::spawn(async move {
                    let mut times = Vec::new();
                    let mut errors = Vec::new();
                    start.wait().await;
                    for _ in 0..rounds {
                        let t = Instant::now();
                        let asked: Result<serde_json::Value, _> = client
                            .json(hyper::Method::POST, "/v1/studies/load/ask", None)
                            .await;
                        times.push(("ask", t.elapsed()));
                        let n = match asked {
                            Ok(v) => v["trial"].as_u64().unwrap(),
                            Err(e) => {
                                errors.push(format!("ask: {e}"));
                                continue;
                            }
                        };
                        let t = Instant::now();
                        let body = serde_json::json!({ "metrics": { "loss": n as f64 * 0.001 } });
                        let told: Result<serde_json::Value, _> = client
                            .json(
                                hyper::Method::POST,
                                &format!("/v1/studies/load/trials/{n}/tell"),
                                Some(body),
                            )
                            .await;
                        times.push(("tell", t.elapsed()));
                        if let Err(e) = told {
                            errors.push(format!("tell {n}: {e}"));
                        }
                        let t = Instant::now();
                        let board: Result<serde_json::Value, _> = client
                            .json(
                                hyper::Method::GET,
                                "/v1/studies/load/leaderboard?top=10",
                                None,
                            )
                            .await;
                        times.push(("leaderboard", t.elapsed()));
                        if let Err(e) = board {
                            errors.push(format!("leaderboard: {e}"));
                        }
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
    let wall = t0.elapsed();

    let mut errors: Vec<String> = results.iter().flat_map(|r| r.1.clone()).collect();
    let mut table = String::new();
    let mut total = 0;
    for kind in ["ask", "tell", "leaderboard", "all"] {
        let mut times: Vec<Duration> = results
            .iter()
            .flat_map(|r| r.0.iter())
            .filter(|(k, _)| kind == "all" || *k == kind)
            .map(|(_, d)| *d)
            .collect();
        times.sort();
        if kind == "all" {
            total = times.len();
        }
        table.push_str(&format!(
            "| {kind} | {} | {:.1} | {:.1} | {:.1} |\n",
            times.len(),
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            times.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        ));
    }
    let complete = common::count_state(&d.trials("load"), "complete");
    eprintln!(
        "load: {clients} concurrent clients x {rounds} rounds, {total} requests in {:.1?} ({:.0} req/s), {} error(s), {complete} trials complete\n\
         | request | count | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n{table}",
        wall,
        total as f64 / wall.as_secs_f64(),
        errors.len()
    );
    errors.sort();
    errors.dedup();
    assert!(errors.is_empty(), "errors:\n{}", errors.join("\n"));
    assert_eq!(complete, clients * rounds);
    assert!(!d.log().contains("panicked"));
}
