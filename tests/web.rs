//! The read-only web page (daemon config `web = true`), loaded in headless Chromium through
//! `quantune web` (the loopback listener that forwards GET /ui/… to the API socket): the
//! leaderboard table is there, row for row, and the plots render as SVG.
//!
//! Chromium comes from Debian's `chromium` package (`.ci/run` installs it and sets
//! QUANTUNE_REQUIRE_CHROMIUM=1); elsewhere the browser part is skipped with a message when it is
//! missing.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Chromium binary, if any (QUANTUNE_CHROMIUM, else `chromium` or `chromium-browser` on
/// PATH).
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QUANTUNE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
        .find(|p| p.is_file())
}

/// Kills a child's whole process group when dropped (Chromium starts helpers).
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

/// Runs headless Chromium with `args` (plus the flags that keep it quiet and offline) and
/// returns its stdout; panics after `timeout`.
fn run_chromium(browser: &PathBuf, profile: &std::path::Path, args: &[&str]) -> String {
    let mut child = Group(
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromium"),
    );
    let mut stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let t = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            let out = reader.join().unwrap();
            assert!(status.success(), "chromium {args:?} failed: {status}");
            return out;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "chromium {args:?} did not finish in 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A two-objective external study with complete, failed and infeasible trials.
fn fill_study(d: &Daemon) {
    let toml = r#"[study]
name = "web-demo"
seed = 2

[[objective]]
metric = "latency_ms"
direction = "minimize"
[[objective]]
metric = "throughput"
direction = "maximize"

[[constraint]]
metric = "delta"
max = 0.05

[space.x]
type = "float"
low = 0.0
high = 1.0

[space.q]
type = "categorical"
choices = ["bf16", "int8", "int4"]

[strategy]
kind = "random"

[budget]
max_trials = 12
parallel = 1

[trial]
workload = "external"
timeout = "10m"
"#;
    let f = d.write("web-demo.toml", toml);
    let out = d.cli(&["submit", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    for i in 0..12u64 {
        let out = d.cli(&["ask", "web-demo"]);
        assert!(out.status.success(), "{}", text(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let n = v["trial"].to_string();
        let x = v["params"]["x"].as_f64().unwrap();
        let args: Vec<String> = match i % 6 {
            2 => vec!["--failed".into(), "exit status 1".into()],
            4 => vec!["--infeasible".into(), "out of memory".into()],
            _ => vec![
                "--metrics".into(),
                format!(
                    "{{\"latency_ms\": {}, \"throughput\": {}, \"delta\": {}}}",
                    10.0 + 5.0 * x,
                    100.0 - 40.0 * (x - 0.3).abs(),
                    if i % 6 == 5 { 0.2 } else { 0.01 }
                ),
            ],
        };
        let mut all = vec!["tell".to_string(), "web-demo".into(), n];
        all.extend(args);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = d.cli(&all);
        assert!(out.status.success(), "{}", text(&out));
    }
}

/// Starts `quantune web` on a free loopback port; returns it, the page's base URL and the
/// token it printed.
fn start_proxy(d: &Daemon) -> (Group, String, String) {
    let mut child = Command::new(bin())
        .arg("--socket")
        .arg(&d.socket)
        .args(["web", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start quantune web");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let printed = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let (url, token) = printed
        .split_once("/ui/?token=")
        .unwrap_or_else(|| panic!("no token in {printed:?}"));
    (Group(child), url.to_string(), token.to_string())
}

/// One raw HTTP/1.0 request to the proxy; returns the status line and the body.
fn http(url: &str, request: &str) -> (String, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp.lines().next().unwrap_or("").to_string();
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn web_page_shows_the_leaderboard_and_plots_in_chromium() {
    let d = Daemon::start(1, "web = true");
    fill_study(&d);
    let board = d.leaderboard("web-demo");
    let (_proxy, url, token) = start_proxy(&d);
    let host = url.trim_start_matches("http://");
    let auth = format!("Host: {host}\r\nCookie: quantune_web_token={token}");

    // Without a browser: the proxy serves the page and nothing else, read-only.
    let (status, body) = http(&url, &format!("GET /ui/ HTTP/1.0\r\n{auth}\r\n\r\n"));
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("/ui/studies/web-demo"), "{body}");
    let (status, _) = http(&url, &format!("GET /v1/studies HTTP/1.0\r\n{auth}\r\n\r\n"));
    assert!(
        status.contains("404"),
        "the API is not reachable through it: {status}"
    );
    let (status, _) = http(
        &url,
        &format!("POST /ui/studies/web-demo HTTP/1.0\r\n{auth}\r\nContent-Length: 0\r\n\r\n"),
    );
    assert!(status.contains("405"), "{status}");
    let (status, body) = http(
        &url,
        &format!("GET /ui/studies/nope HTTP/1.0\r\n{auth}\r\n\r\n"),
    );
    assert!(
        status.contains("404") && body.contains("no study named"),
        "{status} {body}"
    );

    let Some(browser) = chromium() else {
        assert!(
            std::env::var("QUANTUNE_REQUIRE_CHROMIUM").is_err(),
            "QUANTUNE_REQUIRE_CHROMIUM is set but no chromium was found (apt-get install chromium)"
        );
        eprintln!(
            "skipping the browser part: chromium is not installed (apt-get install chromium)"
        );
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let page = format!("{url}/ui/studies/web-demo?token={token}");
    let dom = run_chromium(&browser, profile.path(), &["--dump-dom", &page]);

    // The leaderboard table, row for row as `leaderboard --format json` has it.
    let table_start = dom
        .find("<table id=\"leaderboard\"")
        .unwrap_or_else(|| panic!("no leaderboard table in the DOM:\n{dom}"));
    let table = &dom[table_start..dom[table_start..].find("</table>").unwrap() + table_start];
    let rows: Vec<u64> = table
        .match_indices("data-trial=\"")
        .map(|(i, m)| {
            let rest = &table[i + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect();
    let want: Vec<u64> = board.iter().map(|r| r["trial"].as_u64().unwrap()).collect();
    assert_eq!(rows, want, "table rows in leaderboard order");
    assert!(table.contains("class=\"best\""), "the best row is marked");
    assert!(
        table.contains("class=\"infeasible\""),
        "infeasible rows are marked"
    );
    for h in ["rank", "trial", "latency_ms", "throughput", "q", "x"] {
        assert!(table.contains(&format!("<th>{h}</th>")), "header {h}");
    }

    // Every plot rendered: the browser laid each SVG out at a real size.
    for kind in ["history", "pareto", "parallel", "importance"] {
        let start = dom
            .find(&format!("<figure id=\"plot-{kind}\">"))
            .unwrap_or_else(|| panic!("no {kind} figure"));
        let fig = &dom[start..start + dom[start..].find("</figure>").unwrap()];
        assert!(fig.contains("<svg"), "{kind}: no SVG");
        let at = fig
            .find("data-rendered=\"")
            .unwrap_or_else(|| panic!("{kind}: the SVG was not rendered (no data-rendered)"));
        let size = &fig[at + 15..];
        let size = &size[..size.find('"').unwrap()];
        let (w, h) = size.split_once('x').unwrap();
        let (w, h): (u32, u32) = (w.parse().unwrap(), h.parse().unwrap());
        assert!(w > 300 && h > 200, "{kind}: rendered at {size}");
    }
    // No learning curves in this study: the page says so instead of failing.
    assert!(dom.contains("no intermediate reports"), "curves note");

    // A screenshot of the page is a real picture (QUANTUNE_WEB_SCREENSHOT keeps it).
    let shot = std::env::var_os("QUANTUNE_WEB_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| d.dir.path().join("page.png"));
    run_chromium(
        &browser,
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400",
            &page,
        ],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn web_page_is_off_unless_configured() {
    let d = Daemon::start(1, "");
    let out = d.cli(&["web", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("web = true"), "{}", text(&out));
}
