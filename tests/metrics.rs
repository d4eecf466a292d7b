//! Observability through the real daemon: `/metrics` agrees with `quantune trials`, `promtool`
//! accepts the exposition, and a real Prometheus server scrapes it. `.ci/run` installs the
//! Debian `prometheus` package and sets QUANTUNE_REQUIRE_PROMETHEUS=1; elsewhere the Prometheus
//! parts skip when it is not installed.

mod common;

use common::{objective_command, study_toml, Daemon};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over plain HTTP/1.0; returns the body.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "GET {path}: {head}"
    );
    body.to_string()
}

/// The value of one sample line `name{labels} value` in an exposition.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)
            .and_then(|v| v.trim().parse().ok())
    })
}

fn tool(name: &str, env: &str) -> bool {
    let present = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(
            std::env::var(env).as_deref() != Ok("1"),
            "{env}=1 but {name} is not installed"
        );
        eprintln!("SKIPPED: {name} is not installed (apt-get install prometheus)");
    }
    present
}

#[test]
fn metrics_agree_with_trials_and_prometheus_scrapes_them() {
    let port = free_port();
    let d = Daemon::start(2, &format!("metrics_listen = \"127.0.0.1:{port}\""));
    let toml = study_toml("obs", &objective_command(), 6, 2, "retries = 0");
    let f = d.write("obs.toml", &toml);
    assert!(d.cli(&["submit", f.to_str().unwrap()]).status.success());
    // A failing study too, so more than one state is counted.
    let bad = study_toml(
        "obs-fail",
        &objective_command(),
        2,
        1,
        "env = { MODE = \"fail\" }",
    );
    let f = d.write("obs-fail.toml", &bad);
    assert!(d.cli(&["submit", f.to_str().unwrap()]).status.success());
    d.wait_study("obs", Duration::from_secs(60));
    d.wait_study("obs-fail", Duration::from_secs(60));

    let text = http_get(port, "/metrics");
    for (study, state) in [("obs", "complete"), ("obs-fail", "failed")] {
        let trials = d.trials(study);
        let want = common::count_state(&trials, state) as f64;
        let got = sample(
            &text,
            &format!("quantune_trials_finished_total{{state=\"{state}\",study=\"{study}\"}}"),
        );
        assert_eq!(got, Some(want), "{study}/{state} in:\n{text}");
    }
    assert_eq!(
        sample(&text, "quantune_trials_running{study=\"obs\"}"),
        Some(0.0)
    );
    assert!(
        sample(&text, "quantune_slots{kind=\"cpu\",state=\"free\"}").is_some(),
        "{text}"
    );
    let suggestions: f64 = text
        .lines()
        .filter(|l| l.starts_with("quantune_suggestion_duration_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(suggestions >= 8.0, "one suggestion per trial: {text}");
    assert!(
        sample(
            &text,
            "quantune_trial_duration_seconds_count{state=\"complete\"}"
        )
        .unwrap_or(0.0)
            >= 6.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "quantune_store_flush_duration_seconds_count{operation=\"put_trials\"}"
        )
        .unwrap_or(0.0)
            > 0.0
    );
    assert!(
        text.contains("quantune_queue_to_start_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("quantune_build_info{version="), "{text}");
    // The same exposition on the API socket.
    let out = d.cli(&["status", "--format", "json"]);
    assert!(out.status.success());

    if tool("promtool", "QUANTUNE_REQUIRE_PROMETHEUS") {
        let (ok, out) = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .output_with(&text);
        assert!(ok, "promtool check metrics: {out}");
    }
    if !tool("prometheus", "QUANTUNE_REQUIRE_PROMETHEUS") {
        return;
    }
    let prom_port = free_port();
    let dir = d.dir.path();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: quantune\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
    )
    .unwrap();
    let prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let _guard = KillOnDrop(prom);
    let t = Instant::now();
    loop {
        let answer = TcpStream::connect(("127.0.0.1", prom_port)).ok().map(|_| {
            http_get_lenient(
                prom_port,
                "/api/v1/query?query=quantune_trials_finished_total%7Bstudy%3D%22obs%22%7D",
            )
        });
        if let Some(body) = answer {
            if body.contains("\"status\":\"success\"") && body.contains("\"study\":\"obs\"") {
                assert!(
                    body.contains("\"6\""),
                    "Prometheus has the counter at 6: {body}"
                );
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "Prometheus never returned the counter"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Like `http_get` but returns whatever came back (Prometheus may not be ready yet).
fn http_get_lenient(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command with `input` on stdin; (success, stdout+stderr).
trait OutputWith {
    fn output_with(&mut self, input: &str) -> (bool, String);
}

impl OutputWith for Command {
    fn output_with(&mut self, input: &str) -> (bool, String) {
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), common::text(&out))
    }
}
