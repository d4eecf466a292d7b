//! Webhook notifications (docs/NOTIFY.md) through the real daemon and CLI, against a local
//! HTTP receiver started here: which events fire and when, the signature, retries, a receiver
//! that hangs, `quantune notify test`, and config errors.

mod common;

use common::{text, wait_for, Daemon};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous: the CI machine has 2 cores shared with other builds.
const PATIENCE: Duration = Duration::from_secs(90);

/// The shared secret the tests sign with.
const SECRET: &str = "s3cret-for-tests";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    /// Header values by lower-case name.
    headers: Vec<(String, String)>,
    /// The raw body.
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// A webhook receiver on 127.0.0.1: answers each request with the next scripted status
/// (204 once the script is used up), or never answers (`hang`).
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(script: &[u16], hang: bool) -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (g, s) = (got.clone(), script.clone());
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (got, script) = (g.clone(), s.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (got, script) = (got.clone(), script.clone());
                            async move {
                                let headers = req
                                    .headers()
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.as_str().to_string(),
                                            v.to_str().unwrap_or("").to_string(),
                                        )
                                    })
                                    .collect();
                                let body = req.into_body().collect().await?.to_bytes().to_vec();
                                got.lock().unwrap().push(Got { headers, body });
                                if hang {
                                    std::future::pending::<()>().await;
                                }
                                let status = script.lock().unwrap().pop_front().unwrap_or(204);
                                Ok::<_, hyper::Error>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::from_static(
                                            b"a reply body that is never read",
                                        )))
                                        .unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver { port, got, _rt: rt }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests came; returns them all.
    fn wait(&self, n: usize, daemon: Option<&Daemon>) -> Vec<Got> {
        let t = Instant::now();
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            assert!(
                t.elapsed() < PATIENCE,
                "{} request(s) after {PATIENCE:?}, wanted {n}: {:?}\n{}",
                got.len(),
                got.iter().map(Got::json).collect::<Vec<_>>(),
                daemon.map(Daemon::log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A private secret file in `dir`.
fn secret_file(dir: &Path) -> PathBuf {
    let p = dir.join("hook.secret");
    std::fs::write(&p, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A `[[notify]]` table.
fn notify_table(url: &str, secret: &Path, extra: &str) -> String {
    format!(
        "[[notify]]\nurl = \"{url}\"\nevents = [\"new_best\", \"study_completed\", \"study_failed\", \"consecutive_failures\"]\nconsecutive_failures = 2\nsecret_file = {secret:?}\n{extra}\n"
    )
}

/// An ask/tell study (one objective, `loss`, minimized).
fn external_study(d: &Daemon, name: &str, max_trials: u64, max_failed: u64) {
    let toml = format!(
        "[study]\nname = \"{name}\"\nseed = 1\n\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\n[space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n\n[budget]\nmax_trials = {max_trials}\nmax_failed = {max_failed}\nparallel = 1\n\n[trial]\nworkload = \"external\"\ntimeout = \"10m\"\nretries = 0\n"
    );
    let f = d.write(&format!("{name}.toml"), &toml);
    let out = d.cli(&["submit", f.to_str().unwrap()]);
    assert!(out.status.success(), "submit: {}", text(&out));
}

/// Asks for the next trial of `study` and tells it `outcome` (`loss=V`, `fail`, or a JSON
/// object of metrics).
fn ask_tell(d: &Daemon, study: &str, outcome: &str) -> u64 {
    let out = d.cli(&["ask", study]);
    assert!(out.status.success(), "ask: {}", text(&out));
    let n = serde_json::from_slice::<Value>(&out.stdout).unwrap()["trial"]
        .as_u64()
        .unwrap();
    let n_s = n.to_string();
    let out = match outcome.strip_prefix("loss=") {
        Some(v) => d.cli(&[
            "tell",
            study,
            &n_s,
            "--metrics",
            &format!("{{\"loss\": {v}}}"),
        ]),
        None if outcome.starts_with('{') => d.cli(&["tell", study, &n_s, "--metrics", outcome]),
        None => d.cli(&["tell", study, &n_s, "--failed", "exit status 1"]),
    };
    assert!(out.status.success(), "tell: {}", text(&out));
    n
}

fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    header == format!("sha256={hex}")
}

/// (event, trial) of each request.
fn summary(got: &[Got]) -> Vec<(String, Option<u64>)> {
    got.iter()
        .map(|g| {
            let j = g.json();
            (
                j["event"].as_str().unwrap().to_string(),
                j["trial"].as_u64(),
            )
        })
        .collect()
}

#[test]
fn events_fire_once_each_signed_and_new_best_only_when_the_best_changes() {
    let r = Receiver::start(&[], false);
    let keys = tempfile::tempdir().unwrap();
    let secret = secret_file(keys.path());
    let d = Daemon::start(1, &notify_table(&r.url(), &secret, ""));
    external_study(&d, "ext", 7, 10);
    // 5 → best; 3 → best; 4 → not; two failures → one consecutive_failures (threshold 2); a
    // third failure → nothing more; 1 → best; the budget is spent → completed.
    for o in [
        "loss=5", "loss=3", "loss=4", "fail", "fail", "fail", "loss=1",
    ] {
        ask_tell(&d, "ext", o);
    }
    let want = vec![
        ("new_best".to_string(), Some(0)),
        ("new_best".to_string(), Some(1)),
        ("consecutive_failures".to_string(), Some(4)),
        ("new_best".to_string(), Some(6)),
        ("study_completed".to_string(), Some(6)),
    ];
    let got = r.wait(want.len(), Some(&d));
    assert_eq!(summary(&got), want, "{}", d.log());
    // The best status shows is the one notified.
    assert_eq!(d.json(&["status", "ext"])["best"]["trial"], 6);

    let mut ids = std::collections::BTreeSet::new();
    for g in &got {
        let sig = g.header("x-quantune-signature").expect("signed");
        assert!(
            verify(SECRET, &g.body, sig),
            "signature {sig} does not verify"
        );
        assert!(!verify("another secret", &g.body, sig));
        let j = g.json();
        assert_eq!(g.header("x-quantune-delivery"), j["delivery"].as_str());
        assert_eq!(g.header("x-quantune-event"), j["event"].as_str());
        assert_eq!(g.header("content-type"), Some("application/json"));
        ids.insert(j["delivery"].as_str().unwrap().to_string());
        assert_eq!(j["study"], "ext");
        assert!(!j["host"].as_str().unwrap().is_empty());
        let t = j["time"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(t).is_ok(), "time {t}");
    }
    assert_eq!(ids.len(), got.len(), "every delivery has its own id");
    let best = got[3].json();
    assert_eq!(best["values"], serde_json::json!({"loss": 1.0}));
    assert_eq!(best["trial_state"], "complete");
    assert!(best["params"]["x"].is_number(), "{best}");
    let fails = got[2].json();
    assert_eq!(fails["failures"], 2);
    assert_eq!(fails["trial_state"], "failed");
    assert_eq!(fails["message"], "exit status 1");
    assert_eq!(got[4].json()["study_state"], "completed");

    // A study that fails (budget.max_failed = 1) says so.
    external_study(&d, "doomed", 5, 1);
    ask_tell(&d, "doomed", "fail");
    let got = r.wait(want.len() + 1, Some(&d));
    let last = got.last().unwrap().json();
    assert_eq!(last["event"], "study_failed", "{last}");
    assert_eq!(last["study"], "doomed");
    assert!(
        last["message"].as_str().unwrap().contains("max_failed"),
        "{last}"
    );
    // Nothing else came (no new best from a failure, no second study_failed).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(r.got().len(), want.len() + 1, "{:?}", summary(&r.got()));
}

#[test]
fn a_500_is_retried_with_the_same_delivery_id_and_a_400_is_not() {
    // First event: 500, then 204. Second event: 400.
    let r = Receiver::start(&[500, 204, 400], false);
    let keys = tempfile::tempdir().unwrap();
    let secret = secret_file(keys.path());
    let d = Daemon::start(1, &notify_table(&r.url(), &secret, "max_attempts = 4"));
    external_study(&d, "retry", 10, 10);
    ask_tell(&d, "retry", "loss=5");
    let got = r.wait(2, Some(&d));
    assert_eq!(summary(&got), vec![("new_best".into(), Some(0)); 2]);
    assert_eq!(
        got[0].json()["delivery"],
        got[1].json()["delivery"],
        "a retry is the same delivery"
    );
    assert_eq!(got[0].body, got[1].body);

    ask_tell(&d, "retry", "loss=1");
    r.wait(3, Some(&d));
    wait_for(PATIENCE, "the daemon to give the 400 up", || {
        d.log()
            .contains("HTTP 400 Bad Request (1 attempt)")
            .then_some(())
    });
    // A retry would come within MAX_BACKOFF's first step (≤ 1 s); give it three.
    std::thread::sleep(Duration::from_secs(3));
    let got = r.got();
    assert_eq!(got.len(), 3, "a 400 is not retried: {:?}", summary(&got));
    assert_eq!(got[2].json()["trial"], 1);
}

#[test]
fn a_receiver_that_hangs_slows_neither_the_api_nor_the_trials() {
    let r = Receiver::start(&[], true);
    let keys = tempfile::tempdir().unwrap();
    let secret = secret_file(keys.path());
    let d = Daemon::start(1, &notify_table(&r.url(), &secret, "timeout = \"10m\""));
    external_study(&d, "hang", 200, 10);
    // Every trial is a new best: far more events than the target's queue holds.
    let mut slowest = Duration::ZERO;
    let mut slowest_tell = Duration::ZERO;
    for i in 0..80 {
        let t = Instant::now();
        ask_tell(&d, "hang", &format!("loss={}", 1000 - i));
        slowest_tell = slowest_tell.max(t.elapsed());
        if i % 10 == 0 {
            let t = Instant::now();
            let s = d.json(&["status", "hang"]);
            slowest = slowest.max(t.elapsed());
            assert_eq!(s["best"]["trial"], i);
        }
    }
    r.wait(1, Some(&d));
    let t = Instant::now();
    let s = d.json(&["status", "hang"]);
    slowest = slowest.max(t.elapsed());
    assert_eq!(s["trials"], 80);
    // A CLI call is a process start and one request: well under this even on a loaded machine,
    // while a stalled loop would never answer.
    assert!(slowest < Duration::from_secs(5), "status took {slowest:?}");
    assert!(
        slowest_tell < Duration::from_secs(10),
        "an ask and a tell took {slowest_tell:?}"
    );
    assert_eq!(r.got().len(), 1, "one delivery at a time per target");
    wait_for(PATIENCE, "the drop warning", || {
        d.log().contains("notification(s) dropped").then_some(())
    });
    // A delivery in flight does not hold up the stop either.
    let mut d = d;
    assert!(d.stop(), "the daemon stops cleanly: {}", d.log());
}

#[test]
fn notify_test_reports_each_target() {
    let r = Receiver::start(&[], false);
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path());
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!(
        "http://127.0.0.1:{}/hook",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let cfg = dir.path().join("quantune.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"/nonexistent\"\n{}[[notify]]\nurl = \"{dead}\"\nevents = [\"study_failed\"]\n",
            notify_table(&r.url(), &secret, "")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["notify", "test", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "one target failed: {t}");
    let lines: Vec<&str> = t.lines().collect();
    assert!(
        lines[0].starts_with("target") && lines[0].contains("result"),
        "{t}"
    );
    assert!(
        lines[1].contains(&r.url())
            && lines[1].contains("ok")
            && lines[1].contains("HTTP 204 No Content (1 attempt)"),
        "{t}"
    );
    assert!(
        lines[2].contains(&dead)
            && lines[2].contains("FAILED")
            && lines[2].contains("cannot connect"),
        "{t}"
    );
    let got = r.wait(1, None);
    assert_eq!(got.len(), 1);
    let j = got[0].json();
    assert_eq!(j["event"], "test");
    assert!(verify(
        SECRET,
        &got[0].body,
        got[0].header("x-quantune-signature").unwrap()
    ));

    let out = std::process::Command::new(common::bin())
        .args(["notify", "test", "--format", "json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v[0]["delivered"], true);
    assert_eq!(v[0]["status"], 204);
    assert_eq!(v[1]["delivered"], false);
    assert!(
        v[1]["error"].as_str().unwrap().contains("cannot connect"),
        "{v}"
    );

    // No targets: a clear error, not a silent success.
    std::fs::write(&cfg, "web = true\n").unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["notify", "test", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("has no [[notify]] tables"),
        "{}",
        text(&out)
    );
}

#[test]
fn bad_notify_tables_stop_the_daemon_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("loose.secret");
    std::fs::write(&secret, "x").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (table, want) in [
        (
            "[[notify]]\nurl = \"https://hooks.example.com/x\"\nevents = [\"new_best\"]\n".to_string(),
            "quantune.toml:4: notify[0].url: \"https://hooks.example.com/x\": https is not supported",
        ),
        (
            "[[notify]]\nurl = \"http://127.0.0.1:1/\"\nevents = [\"new-best\"]\n".to_string(),
            "quantune.toml:5",
        ),
        (
            "[[notify]]\nurl = \"http://127.0.0.1:1/\"\nevents = [\"consecutive_failures\"]\n".to_string(),
            "quantune.toml:4: notify[0].consecutive_failures",
        ),
        (
            format!("[[notify]]\nurl = \"http://127.0.0.1:1/\"\nevents = [\"new_best\"]\nsecret_file = {secret:?}\n"),
            "has mode 0644",
        ),
    ] {
        let cfg = dir.path().join("quantune.toml");
        std::fs::write(
            &cfg,
            format!(
                "state_dir = {:?}\nsocket = {:?}\n{table}",
                dir.path().join("state"),
                dir.path().join("q.sock")
            ),
        )
        .unwrap();
        let out = std::process::Command::new(common::bin())
            .args(["serve", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(want), "want {want:?} in: {}", text(&out));
        assert!(!text(&out).contains("panicked"), "{}", text(&out));
    }
}

#[test]
fn two_objectives_new_best_is_the_leaderboards_best_and_a_restart_is_not_news() {
    let r = Receiver::start(&[], false);
    let keys = tempfile::tempdir().unwrap();
    let secret = secret_file(keys.path());
    let mut d = Daemon::start(
        1,
        &format!(
            "[[notify]]\nurl = \"{}\"\nevents = [\"new_best\"]\nsecret_file = {secret:?}\n",
            r.url()
        ),
    );
    let toml = "[study]\nname = \"pair\"\nseed = 1\n\n[[objective]]\nmetric = \"latency_ms\"\ndirection = \"minimize\"\n\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\n[space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n\n[budget]\nmax_trials = 20\nparallel = 1\n\n[trial]\nworkload = \"external\"\ntimeout = \"10m\"\n";
    let f = d.write("pair.toml", toml);
    assert!(d.cli(&["submit", f.to_str().unwrap()]).status.success());
    // Each new best the leaderboard marks is notified, in order, and nothing else is.
    let mut want: Vec<(String, Option<u64>)> = Vec::new();
    let mut last = None;
    let told =
        |d: &Daemon, want: &mut Vec<(String, Option<u64>)>, last: &mut Option<u64>, m: &str| {
            ask_tell(d, "pair", m);
            let best = d
                .leaderboard("pair")
                .iter()
                .find(|row| row["best"] == true)
                .and_then(|row| row["trial"].as_u64());
            assert_eq!(d.json(&["status", "pair"])["best"]["trial"].as_u64(), best);
            if best != *last {
                want.push(("new_best".into(), best));
                *last = best;
            }
            let got = r.wait(want.len(), Some(d));
            assert_eq!(summary(&got), *want, "{}", d.log());
        };
    for m in [
        r#"{"latency_ms": 10, "loss": 10}"#,
        r#"{"latency_ms": 20, "loss": 20}"#,
        r#"{"latency_ms": 5, "loss": 15}"#,
        r#"{"latency_ms": 9, "loss": 4}"#,
        r#"{"latency_ms": 30, "loss": 1}"#,
        r#"{"latency_ms": 8, "loss": 5}"#,
    ] {
        told(&d, &mut want, &mut last, m);
    }
    assert!(want.len() >= 2, "the values above move the best: {want:?}");
    let before = r.got().len();
    // After a restart the best already known is not news. (A failed trial leaves the ranking
    // as it is; a dominated one may not: it moves the hypervolume's reference point.)
    d.stop();
    d.spawn();
    told(&d, &mut want, &mut last, "fail");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(r.got().len(), before, "{:?}", summary(&r.got()));
    // A trial that dominates every other is the best trade-off.
    told(
        &d,
        &mut want,
        &mut last,
        r#"{"latency_ms": 1, "loss": 0.5}"#,
    );
    assert_eq!(last, Some(7));
    assert_eq!(
        r.got().last().unwrap().json()["values"],
        serde_json::json!({"latency_ms": 1.0, "loss": 0.5})
    );
}
