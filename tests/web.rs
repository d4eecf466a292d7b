//! The read-only web page (daemon config `web = true`), loaded in headless Chromium through
//! `quantune web` (the loopback listener that forwards GET /ui/… to the API socket): the
//! leaderboard table is there, row for row, and the plots render as SVG; and, driven through
//! Chromium's DevTools protocol (`--remote-debugging-pipe`, real mouse events): sorting by a
//! clicked header, links to trial pages, tooltips on plot points, the failures table, the
//! comparison page, the HTML 404 page, a note column that fits 1280 px, and escaping of every
//! text a study or a trial controls.
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

/// A headless Chromium driven through the DevTools protocol over `--remote-debugging-pipe`
/// (requests on its fd 3, answers on its fd 4, each message ending in NUL): real mouse events
/// and script evaluation in one page.
struct Browser {
    _child: Group,
    to: std::fs::File,
    from: std::sync::mpsc::Receiver<Value>,
    session: String,
    next: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with one blank page of `width`×`height` CSS pixels and attaches to it.
    fn start(browser: &PathBuf, width: u32, height: u32) -> Browser {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let pipe = || {
            let mut fds = [0; 2];
            // SAFETY: pipe2 fills two fresh descriptors that we then own.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
        };
        let (their_in, our_out) = pipe();
        let (our_in, their_out) = pipe();
        let (a, b) = (their_in.as_raw_fd(), their_out.as_raw_fd());
        let profile = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(browser);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for (from, to) in [(a, 3), (b, 4)] {
                    if libc::dup2(from, to) < 0 || libc::fcntl(to, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = Group(cmd.spawn().expect("start chromium"));
        drop((their_in, their_out));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut input = BufReader::new(std::fs::File::from(our_in));
        std::thread::spawn(move || loop {
            let mut msg = Vec::new();
            match input.read_until(0, &mut msg) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    msg.pop();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            _child: child,
            to: std::fs::File::from(our_out),
            from: rx,
            session: String::new(),
            next: 0,
            _profile: profile,
        };
        let target = wait_for(Duration::from_secs(60), "a page target", || {
            let t = b.call("Target.getTargets", serde_json::json!({}));
            t["targetInfos"]
                .as_array()?
                .iter()
                .find(|i| i["type"] == "page")
                .map(|i| i["targetId"].as_str().unwrap().to_string())
        });
        let attached = b.call(
            "Target.attachToTarget",
            serde_json::json!({"targetId": target, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        b
    }

    /// Sends one command (to the page once attached) and returns its result.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = serde_json::json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = Value::String(self.session.clone());
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method} in 60 s"));
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "returnByValue": true}),
        );
        assert!(
            r.get("exceptionDetails").is_none(),
            "{expr}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Waits until the page at a URL containing `path` has loaded.
    fn wait_loaded(&mut self, path: &str) {
        let check = format!(
            "location.href.indexOf({}) >= 0 && document.readyState === 'complete' && !!document.getElementById('tip')",
            Value::String(path.into())
        );
        wait_for(Duration::from_secs(60), &format!("{path} to load"), || {
            self.eval(&check).as_bool().unwrap_or(false).then_some(())
        });
    }

    /// Opens `url` and waits until it has loaded (`path` is part of it).
    fn open(&mut self, url: &str, path: &str) {
        self.call("Page.navigate", serde_json::json!({"url": url}));
        self.wait_loaded(path);
    }

    /// The centre of the first element matching `selector`, scrolled into view, in viewport
    /// pixels; checks that this element (or one inside it) is what the pointer would hit there.
    fn centre(&mut self, selector: &str) -> (f64, f64) {
        let sel = Value::String(selector.into());
        let v = self.eval(&format!(
            "(function(){{var e=document.querySelector({sel});if(!e)return null;\
             e.scrollIntoView({{block:'center',inline:'center'}});var r=e.getBoundingClientRect();\
             var x=r.left+r.width/2,y=r.top+r.height/2;var h=document.elementFromPoint(x,y);\
             return [x,y,!!h&&(h===e||e.contains(h)||h.contains(e))];}})()"
        ));
        assert!(!v.is_null(), "no element {selector}");
        assert_eq!(v[2], true, "{selector} is covered by another element");
        (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
    }

    /// Moves the mouse to `at`.
    fn hover(&mut self, at: (f64, f64)) {
        self.call(
            "Input.dispatchMouseEvent",
            serde_json::json!({"type": "mouseMoved", "x": at.0, "y": at.1}),
        );
    }

    /// Clicks the left button at `at`.
    fn click(&mut self, at: (f64, f64)) {
        self.hover(at);
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                serde_json::json!({"type": kind, "x": at.0, "y": at.1, "button": "left", "clickCount": 1}),
            );
        }
    }
}

/// A long infeasibility reason, as a CUDA allocator writes it.
const OOM: &str = "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.35 GiB total capacity; 75.11 GiB already allocated; 1.19 GiB free; 76.02 GiB reserved in total by PyTorch) If reserved memory is >> allocated memory try setting max_split_size_mb to avoid fragmentation. See documentation for Memory Management and PYTORCH_CUDA_ALLOC_CONF";

/// A two-objective external study `name` (sampled from `seed`) with complete, failed, pruned and infeasible trials
/// (every sixth by kind: complete, complete, failed, pruned, declared infeasible with a long
/// reason, breaking the constraint).
fn fill_study(d: &Daemon, name: &str, seed: u64) {
    let toml = format!(
        r#"[study]
name = "{name}"
seed = {seed}

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

[pruner]
kind = "median"
metric = "loss"
min_trials = 2
"#
    );
    let f = d.write(&format!("{name}.toml"), &toml);
    let out = d.cli(&["submit", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    for i in 0..12u64 {
        let out = d.cli(&["ask", name]);
        assert!(out.status.success(), "{}", text(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let n = v["trial"].to_string();
        let x = v["params"]["x"].as_f64().unwrap();
        let mut pruned = false;
        for step in 1..=2u64 {
            let loss = if i % 6 == 3 { 50.0 } else { 1.0 / step as f64 };
            let m = format!("{{\"loss\": {loss}}}");
            let step = step.to_string();
            let out = d.cli(&["report", name, &n, "--step", &step, "--metrics", &m]);
            assert!(out.status.success(), "{}", text(&out));
            if String::from_utf8_lossy(&out.stdout).contains("true") {
                pruned = true;
                break;
            }
        }
        assert_eq!(pruned, i % 6 == 3, "trial {n}: pruned {pruned}");
        if pruned {
            continue;
        }
        let args: Vec<String> = match i % 6 {
            2 => vec!["--failed".into(), "exit status 1".into()],
            4 => vec!["--infeasible".into(), OOM.into()],
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
        let mut all = vec!["tell".to_string(), name.into(), n];
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

/// One raw HTTP/1.0 request to the proxy; returns the head (status line and headers) and
/// the body.
fn http(url: &str, request: &str) -> (String, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (head.to_string(), body.to_string())
}

#[test]
fn web_page_shows_the_leaderboard_and_plots_in_chromium() {
    let d = Daemon::start(1, "web = true");
    fill_study(&d, "web-demo", 2);
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
        assert!(table.contains(&format!(">{h}</th>")), "header {h}");
    }

    // Every plot rendered: the browser laid each SVG out at a real size.
    for kind in ["history", "pareto", "parallel", "importance", "curves"] {
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

/// The browser for the driven tests, or `None` (with a message) where Chromium is missing and
/// not required.
fn browser_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var("QUANTUNE_REQUIRE_CHROMIUM").is_err(),
            "QUANTUNE_REQUIRE_CHROMIUM is set but no chromium was found (apt-get install chromium)"
        );
        eprintln!(
            "skipping the browser part: chromium is not installed (apt-get install chromium)"
        );
    }
    found
}

/// Text that runs script if a page puts it in unescaped.
const XSS: &str = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script>";

/// A study whose every user-controlled text carries [`XSS`]: its description, a choice, a
/// failure reason, and (from a local trial) stderr.
fn fill_hostile(d: &Daemon) {
    let choice = serde_json::to_string(&format!("q{XSS}")).unwrap();
    let desc = serde_json::to_string(&format!("about {XSS}")).unwrap();
    let stderr = format!("echo 'Traceback: {}' >&2; exit 1", XSS.replace('\'', ""));
    let command = serde_json::to_string(&["sh", "-c", &stderr]).unwrap();
    let toml = format!(
        "[study]\nname = \"hostile\"\nseed = 1\ndescription = {desc}\n\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\n\
         [space.q]\ntype = \"categorical\"\nchoices = [{choice}]\n\n[budget]\nmax_trials = 1\nmax_failed = 5\n\n\
         [trial]\ncommand = {command}\ntimeout = \"30s\"\n"
    );
    let f = d.write("hostile.toml", &toml);
    let out = d.cli(&["submit", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    d.wait_study("hostile", Duration::from_secs(60));
    let trials = d.trials("hostile");
    assert_eq!(trials[0]["state"], "failed", "{trials:#?}");
    assert!(
        trials[0]["stderr_tail"]
            .as_str()
            .unwrap_or("")
            .contains("<img src=x"),
        "{trials:#?}"
    );
}

/// Column `header` of table `table` as the page shows it: each cell's exact value (`data-v`)
/// or text.
fn column(b: &mut Browser, table: &str, header: &str) -> Vec<String> {
    let v = b.eval(&format!(
        "(function(){{var t=document.getElementById('{table}');\
         var i=Array.prototype.map.call(t.tHead.rows[0].cells,function(c){{return c.textContent;}}).indexOf({});\
         return Array.prototype.map.call(t.tBodies[0].rows,function(r){{var c=r.cells[i];\
         var v=c.getAttribute('data-v');return v===null?c.textContent:v;}});}})()",
        Value::String(header.into())
    ));
    serde_json::from_value(v).unwrap()
}

/// Clicks the header `header` of table `table`.
fn click_header(b: &mut Browser, table: &str, header: &str) {
    let k = b.eval(&format!(
        "Array.prototype.map.call(document.getElementById('{table}').tHead.rows[0].cells,function(c){{return c.textContent;}}).indexOf({})",
        Value::String(header.into())
    ));
    let k = k.as_i64().unwrap();
    assert!(k >= 0, "no header {header} in {table}");
    let at = b.centre(&format!("#{table} thead th:nth-child({})", k + 1));
    b.click(at);
}

#[test]
fn web_page_sorts_links_hovers_compares_and_escapes_in_chromium() {
    let d = Daemon::start(1, "web = true");
    fill_study(&d, "web-a", 2);
    fill_study(&d, "web-b", 9);
    fill_hostile(&d);
    let (_proxy, url, token) = start_proxy(&d);
    let host = url.trim_start_matches("http://");
    let auth = format!("Host: {host}\r\nCookie: quantune_web_token={token}");

    // Unknown studies, trials and pages: a real HTML page with status 404, not JSON.
    for (path, says) in [
        ("/ui/studies/nope", "no study named"),
        ("/ui/studies/web-a/trials/999", "999"),
        ("/ui/studies/web-a/trials/abc", "not a trial number"),
        ("/ui/no/such/page", "no page at /ui/no/such/page"),
    ] {
        let (head, body) = http(&url, &format!("GET {path} HTTP/1.0\r\n{auth}\r\n\r\n"));
        let status = head.lines().next().unwrap_or("");
        assert!(status.contains("404"), "{path}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/html"),
            "{path}: {head}"
        );
        assert!(
            body.starts_with("<!DOCTYPE html>")
                && body.contains(says)
                && body.contains("href=\"/ui/\""),
            "{path}: {body}"
        );
    }
    // The hostile texts are escaped in the HTML itself.
    for path in [
        "/ui/",
        "/ui/studies/hostile",
        "/ui/studies/hostile/trials/0",
    ] {
        let (head, body) = http(&url, &format!("GET {path} HTTP/1.0\r\n{auth}\r\n\r\n"));
        assert!(head.contains("200"), "{path}: {head}");
        assert!(!body.contains("<img src=x"), "{path}: unescaped markup");
        assert_eq!(
            body.matches("<script>").count(),
            1,
            "{path}: only the page's script"
        );
    }

    let Some(browser) = browser_or_skip() else {
        return;
    };
    let board = d.leaderboard("web-a");
    let mut b = Browser::start(&browser, 1280, 900);
    b.open(
        &format!("{url}/ui/studies/web-a?token={token}"),
        "/ui/studies/web-a",
    );

    // Sorting: numbers as numbers, a second click reverses; trial 10 after trial 7.
    let mut want: Vec<f64> = board
        .iter()
        .filter_map(|r| r["metrics"]["latency_ms"].as_f64())
        .collect();
    want.sort_by(f64::total_cmp);
    click_header(&mut b, "leaderboard", "latency_ms");
    let got: Vec<f64> = column(&mut b, "leaderboard", "latency_ms")
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert_eq!(got, want, "ascending by latency");
    click_header(&mut b, "leaderboard", "latency_ms");
    let got: Vec<f64> = column(&mut b, "leaderboard", "latency_ms")
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    want.reverse();
    assert_eq!(got, want, "descending by latency");
    click_header(&mut b, "leaderboard", "trial");
    let trials: Vec<u64> = column(&mut b, "leaderboard", "trial")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    let mut sorted = trials.clone();
    sorted.sort();
    assert!(sorted.iter().any(|n| *n >= 10), "setup: {sorted:?}");
    assert_eq!(trials, sorted, "trial numbers sort as numbers");

    // The note column fits a 1280 px window: the long reason wraps, nothing is cut.
    let fit = b.eval(
        "(function(){var w=document.documentElement.clientWidth;var out=[];\
         document.querySelectorAll('#leaderboard td.wrap, #failures td.wrap').forEach(function(c){\
         var r=c.getBoundingClientRect();out.push([r.right<=w+0.5, c.textContent.length, r.right, w]);});\
         return {cells:out, page:document.documentElement.scrollWidth<=w};})()",
    );
    let cells = fit["cells"].as_array().unwrap();
    assert!(
        cells.iter().any(|c| c[1].as_u64().unwrap() > 300),
        "setup: the long reason is in a note: {fit}"
    );
    assert!(
        cells.iter().all(|c| c[0] == true),
        "a note cell is cut: {fit}"
    );
    assert_eq!(fit["page"], true, "the page scrolls sideways: {fit}");

    // The failures table: failed, pruned and infeasible trials with their reasons.
    let states = column(&mut b, "failures", "state");
    let reasons = column(&mut b, "failures", "reason");
    for (state, why) in [
        ("failed", "exit status 1"),
        ("pruned", "pruned at step"),
        ("infeasible", "CUDA out of memory"),
    ] {
        assert!(
            states
                .iter()
                .zip(&reasons)
                .any(|(s, r)| s == state && r.contains(why)),
            "no {state} row saying {why:?}: {states:?} {reasons:?}"
        );
    }

    // Hover on a plot point: the tooltip names the trial and links to it; moving off hides it.
    let point = "#plot-history .qt-point[data-state=\"failed\"]";
    let n = b.eval(&format!(
        "document.querySelector('{}').getAttribute('data-trial')",
        point.replace('\'', "\\'")
    ));
    let n = n.as_str().unwrap().to_string();
    let at = b.centre(point);
    b.hover(at);
    let tip = b.eval(
        "(function(){var t=document.getElementById('tip');var a=t.querySelector('a');\
         return [t.hidden, t.textContent, a?a.getAttribute('href'):null];})()",
    );
    assert_eq!(tip[0], false, "tooltip shown: {tip}");
    assert!(
        tip[1]
            .as_str()
            .unwrap()
            .starts_with(&format!("trial {n} · failed")),
        "{tip}"
    );
    assert_eq!(tip[2], format!("/ui/studies/web-a/trials/{n}"), "{tip}");
    b.hover((2.0, 2.0));
    assert_eq!(b.eval("document.getElementById('tip').hidden"), true);

    // Clicking the point opens the trial's page.
    let at = b.centre(point);
    b.click(at);
    b.wait_loaded(&format!("/ui/studies/web-a/trials/{n}"));
    let page = b.eval(
        "[document.querySelector('h1').textContent, document.getElementById('reason').textContent,\
         JSON.parse(document.getElementById('record').textContent).trial.trial,\
         document.querySelectorAll('#params tbody tr').length]",
    );
    assert_eq!(page[0], format!("trial {n} of web-a"), "{page}");
    assert_eq!(page[1], "exit status 1", "{page}");
    assert_eq!(page[2].to_string(), n, "{page}");
    assert_eq!(page[3], 2, "x and q: {page}");

    // The leaderboard's trial link opens the trial's page, with metrics and its curve.
    b.open(&format!("{url}/ui/studies/web-a"), "/ui/studies/web-a");
    let first = board[0]["trial"].as_u64().unwrap();
    let at = b.centre("#leaderboard tbody tr:first-child td:nth-child(2) a");
    b.click(at);
    b.wait_loaded(&format!("/ui/studies/web-a/trials/{first}"));
    let page = b.eval(
        "[document.querySelector('h1').textContent,\
         Array.prototype.map.call(document.querySelectorAll('#metrics tbody tr td:first-child'),function(c){return c.textContent;}),\
         document.querySelectorAll('#plot-curve svg .qt-line').length]",
    );
    assert_eq!(page[0], format!("trial {first} of web-a"), "{page}");
    assert!(
        page[1]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "latency_ms"),
        "{page}"
    );
    assert_eq!(page[2], 1, "its learning curve: {page}");

    // Compare two studies from the index: both on one plot, summaries side by side.
    b.open(&format!("{url}/ui/"), "/ui/");
    b.eval(
        "document.querySelector('#compare select[name=a]').value='web-a';\
            document.querySelector('#compare select[name=b]').value='web-b';",
    );
    let at = b.centre("#compare button");
    b.click(at);
    b.wait_loaded("/ui/compare?a=web-a&b=web-b");
    let cmp = b.eval(
        "[Array.prototype.map.call(document.querySelectorAll('#compare-summary thead th'),function(c){return c.textContent;}),\
         document.querySelectorAll('#plot-compare a[href^=\"/ui/studies/web-a/trials/\"] .qt-point').length,\
         document.querySelectorAll('#plot-compare a[href^=\"/ui/studies/web-b/trials/\"] .qt-point').length]",
    );
    assert_eq!(cmp[0], serde_json::json!(["", "web-a", "web-b"]), "{cmp}");
    let feasible = board.iter().filter(|r| r["feasible"] == true).count();
    assert_eq!(cmp[1], feasible, "every feasible trial of web-a: {cmp}");
    assert!(cmp[2].as_u64().unwrap() > 0, "{cmp}");

    // Hostile text shows as text and runs nothing.
    for path in [
        "/ui/studies/hostile",
        "/ui/studies/hostile/trials/0",
        "/ui/",
    ] {
        b.open(&format!("{url}{path}"), path);
        let r = b.eval(
            "[typeof window.__xss, document.querySelectorAll('img').length,\
             document.querySelectorAll('script').length, document.body.innerText]",
        );
        assert_eq!(r[0], "undefined", "{path}: {r}");
        assert_eq!(r[1], 0, "{path}: {r}");
        assert_eq!(r[2], 1, "{path}: {r}");
        if path != "/ui/" {
            assert!(
                r[3].as_str().unwrap().contains("<img src=x"),
                "{path}: the text is shown"
            );
        }
    }
}
