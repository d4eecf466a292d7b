//! Floods that must not stall the daemon or grow it without bound: a trial that reports every
//! step (30,000 reports), and a results import of 100,000 rows, retried after a lost reply.

mod common;

use common::{text, Daemon};
use quantune::client::http::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

#[test]
fn a_trial_reporting_every_step_never_stalls_the_api_and_every_report_is_stored() {
    let d = Daemon::start(1, "");
    // 30,000 reports as fast as awk writes them, then the final line.
    let script = d.write(
        "flood.sh",
        "awk 'BEGIN { for (i = 1; i <= 30000; i++) printf \"{\\\"step\\\": %d, \\\"loss\\\": %f}\\n\", i, 1.0 / i; print \"{\\\"loss\\\": 0.5}\" }' >> \"$QUANTUNE_METRICS_FILE\"\n",
    );
    let study = d.write(
        "flood.toml",
        &common::study_toml(
            "flood",
            &format!("[\"sh\", {:?}]", script.to_str().unwrap()),
            1,
            1,
            "",
        ),
    );
    let out = d.cli(&["submit", study.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::new(&d.socket);
    let mut worst = Duration::ZERO;
    let t0 = Instant::now();
    let done = loop {
        let t = Instant::now();
        let health: Value = rt
            .block_on(client.json(hyper::Method::GET, "/v1/health", None))
            .expect("health");
        assert_eq!(health["ok"], true);
        worst = worst.max(t.elapsed());
        let s = d.json(&["status", "flood"]);
        if s["state"] == "completed" {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "{s}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "flood done in {:.1} s; slowest health answer {:?}",
        t0.elapsed().as_secs_f64(),
        worst
    );
    assert_eq!(done["counts"]["complete"], 1, "{done}");
    assert!(worst < Duration::from_secs(1), "health took {worst:?}");
    let trial: Value = rt
        .block_on(client.json(hyper::Method::GET, "/v1/studies/flood/trials/0", None))
        .unwrap();
    assert_eq!(
        trial["reports"].as_array().unwrap().len(),
        30_000,
        "every report is stored"
    );
}

#[test]
fn a_large_results_import_stays_bounded_and_a_retry_adds_nothing() {
    let rows: usize = std::env::var("QUANTUNE_IMPORT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let d = Daemon::start(1, "");
    let study = d.write(
        "imp.toml",
        "[study]\nname = \"imp\"\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\
         [space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[space.q]\ntype = \"categorical\"\nchoices = [\"a\", \"b\"]\n\
         [budget]\nmax_trials = 5\n[trial]\nworkload = \"external\"\n",
    );
    let out = d.cli(&["submit", study.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let results: Vec<Value> = (0..rows)
        .map(|i| {
            let x = (i as f64 * 0.618_033_988_7) % 1.0;
            json!({"params": {"x": x, "q": if i % 2 == 0 { "a" } else { "b" }}, "metrics": {"loss": (x - 0.3).abs()}})
        })
        .collect();
    let body = json!({ "results": results });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::new(&d.socket);
    let first: Value = rt
        .block_on(client.json(
            hyper::Method::POST,
            "/v1/studies/imp/import",
            Some(body.clone()),
        ))
        .expect("import");
    assert_eq!(first.as_array().unwrap().len(), rows);
    eprintln!(
        "after the first import: peak {:.0} MiB",
        rss_mib(d.pid().unwrap())
    );
    // The reply was "lost": the client sends the same body again.
    let again: Value = rt
        .block_on(client.json(hyper::Method::POST, "/v1/studies/imp/import", Some(body)))
        .expect("retried import");
    assert_eq!(again.as_array().unwrap().len(), rows, "the same trials");
    let s = d.json(&["status", "imp"]);
    assert_eq!(s["imported"], rows as u64, "a retry adds nothing: {s}");
    let peak = rss_mib(d.pid().unwrap());
    eprintln!("peak daemon RSS over a {rows}-result import and its retry: {peak:.0} MiB");
    // Before the import was chunked it peaked at 1.84 GB for 100k results (23.8 GB and an
    // OOM kill for 1.2M); now about 1 GB. The goal of 600 MB is not met yet: see
    // docs/RELIABILITY.md.
    let bound = 1300.0 * rows as f64 / 100_000.0 + 100.0;
    assert!(
        peak < bound,
        "daemon peaked at {peak:.0} MiB (bound {bound:.0})"
    );
    // The study still answers quickly and ranks the imports.
    let board = d.json(&["leaderboard", "imp", "--top", "3"]);
    assert_eq!(board.as_array().unwrap().len(), 3);
}
