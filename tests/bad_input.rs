//! Bad input, end to end through the real binary: every study file in `tests/fixtures/bad` is
//! refused by `quantune validate` and by a running daemon with a message naming the key; bad API
//! requests sent by hand over the Unix socket get a 4xx status and a JSON `{"error": "…"}`; CLI
//! usage errors exit 2. After all of it the daemon still serves and runs a good study to the end.
//!
//! Each file in `tests/fixtures/bad` is a small complete study that is wrong in one way; its
//! first line is `# expect: TEXT`, a piece of the error message it must produce.

mod common;

use common::{bin, fixture, study_toml, text, Daemon};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// One bad study file and the text its error must contain.
struct BadFile {
    path: PathBuf,
    name: String,
    expect: String,
}

fn bad_files() -> Vec<BadFile> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad");
    let mut files: Vec<BadFile> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/bad")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|path| {
            let source = std::fs::read_to_string(&path).unwrap();
            let expect = source
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| {
                    panic!("{}: first line must be `# expect: TEXT`", path.display())
                })
                .trim_end()
                .to_string();
            assert!(!expect.is_empty(), "{}: empty expectation", path.display());
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            BadFile { path, name, expect }
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(files.len() >= 25, "only {} bad study files", files.len());
    files
}

/// Checks an output is a refusal the user can act on: exit 1, the file and the expected text on
/// stderr, no panic. Returns a description of what is wrong, if anything.
fn refusal_problem(what: &str, f: &BadFile, out: &Output) -> Option<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut problems = Vec::new();
    if out.status.code() != Some(1) {
        problems.push(format!("exit {:?}, not 1", out.status.code()));
    }
    if !stderr.contains(&f.name) {
        problems.push("stderr does not name the file".to_string());
    }
    if !stderr.contains(&f.expect) {
        problems.push(format!("stderr lacks {:?}", f.expect));
    }
    if stderr.contains("panicked") {
        problems.push("it panicked".to_string());
    }
    (!problems.is_empty()).then(|| {
        format!(
            "{what} {}: {}\n  got: {}",
            f.name,
            problems.join("; "),
            text(out).trim()
        )
    })
}

#[test]
fn validate_refuses_every_bad_study_file() {
    let problems: Vec<String> = bad_files()
        .iter()
        .filter_map(|f| {
            let out = Command::new(bin())
                .arg("validate")
                .arg(&f.path)
                .output()
                .unwrap();
            refusal_problem("validate", f, &out)
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_shipped_config_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        n += 1;
        let out = Command::new(bin())
            .arg("validate")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} does not validate: {}",
            path.display(),
            text(&out)
        );
    }
    assert!(n >= 1, "no configs/*.toml found");
}

// ---- a raw HTTP/1.1 client over the Unix socket ----

/// A reply: status code and body text.
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    /// The `"error"` string of a JSON error body (panics with the body when there is none).
    fn error(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| {
                panic!(
                    "not a JSON {{\"error\": …}} body (status {}): {:?}",
                    self.status, self.body
                )
            })
    }
}

/// Sends `raw` bytes as they are and reads one HTTP/1.1 reply (to the end of the connection).
/// `close_write` shuts the sending side after them, for a request that ends early.
fn send_raw(socket: &Path, raw: &[u8], close_write: bool) -> Reply {
    let mut s = UnixStream::connect(socket).expect("connect to the daemon socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    // The daemon may answer (413) and stop reading before a large body is all written: a failed
    // write is fine, the reply is what counts.
    let _ = s.write_all(raw);
    if close_write {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut buf = Vec::new();
    // A reset after the reply (the daemon closed with our body unread) still leaves it in buf.
    let _ = s.read_to_end(&mut buf);
    parse_reply(&buf)
}

fn parse_reply(buf: &[u8]) -> Reply {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete HTTP reply: {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let rest = &buf[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let body = if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest[..len.min(rest.len())].to_vec()
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        let mut r = rest;
        while let Some(eol) = r.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&r[..eol]).trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            let start = eol + 2;
            out.extend_from_slice(&r[start..(start + size).min(r.len())]);
            r = &r[(start + size + 2).min(r.len())..];
        }
        out
    } else {
        rest.to_vec()
    };
    Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// One request with a body (`Content-Length` set, connection closed after the reply).
fn http(socket: &Path, method: &str, path: &str, body: &[u8]) -> Reply {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: quantune\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    send_raw(socket, &raw, false)
}

/// The JSON body of `POST /v1/studies` for a study file's text.
fn submit_body(source: &str, file: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "source": source, "file": file })).unwrap()
}

/// A study answered through ask/tell, for the trial endpoints.
fn external_study(name: &str) -> String {
    format!(
        "[study]\nname = \"{name}\"\nseed = 3\n\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\n\
         [space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n\n[budget]\nmax_trials = 5\n\n\
         [trial]\nworkload = \"external\"\ntimeout = \"10m\"\n"
    )
}

/// What a bad request is, how it is sent, and what must come back: (description, method, path,
/// body, status, texts the `"error"` must contain).
type ApiCase = (
    &'static str,
    &'static str,
    String,
    Vec<u8>,
    u16,
    Vec<&'static str>,
);

#[test]
fn daemon_refuses_bad_input_and_keeps_serving() {
    let d = Daemon::start(1, "");
    let sock = d.socket.clone();
    let mut problems: Vec<String> = Vec::new();

    // (b) Every bad file, through the CLI and as a raw API submission.
    let files = bad_files();
    for f in &files {
        let out = d.cli(&["submit", f.path.to_str().unwrap()]);
        problems.extend(refusal_problem("submit", f, &out));
        let source = std::fs::read_to_string(&f.path).unwrap();
        let r = http(
            &sock,
            "POST",
            "/v1/studies",
            &submit_body(&source, f.path.to_str().unwrap()),
        );
        if r.status != 400 || !r.error().contains(&f.expect) {
            problems.push(format!(
                "POST /v1/studies {}: want 400 with {:?}, got {} {}",
                f.name, f.expect, r.status, r.body
            ));
        }
    }
    let listed = d.json(&["studies"]);
    assert_eq!(listed, json!([]), "a bad study was created");

    // (c) Bad API requests. A study answered through ask/tell gives the trial endpoints a target.
    let ext = d.write("ext.toml", &external_study("ext"));
    let out = d.cli(&["submit", ext.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let ask = d.cli(&["ask", "ext"]);
    assert!(ask.status.success(), "{}", text(&ask));
    let asked: Value = serde_json::from_slice(&ask.stdout).unwrap();
    let n = asked["trial"].as_u64().unwrap();
    let export = d.cli(&["export", "ext"]);
    assert!(export.status.success(), "{}", text(&export));
    let export = String::from_utf8(export.stdout).unwrap();
    let study_line = export.lines().next().unwrap().to_string();

    let bad_study = std::fs::read_to_string(fixture("bad/log_float_low_zero.toml")).unwrap();
    let ten_mb = vec![b'a'; 10 << 20];
    // Line 1 a valid study line (renamed), line 2 garbage.
    let renamed = study_line.replace("\"ext\"", "\"imported\"");
    let valid_then_garbage = format!("{renamed}\nthis is not JSON\n");
    // A study line the store would take but the scheduler could not run.
    let mut unrunnable: Value = serde_json::from_str(&renamed).unwrap();
    unrunnable["definition"]["strategy"]["kind"] = json!("annealing");
    let unrunnable = format!("{unrunnable}\n");

    let tell = format!("/v1/studies/ext/trials/{n}/tell");
    let report = format!("/v1/studies/ext/trials/{n}/report");
    #[rustfmt::skip]
    let cases: Vec<ApiCase> = vec![
        ("malformed JSON", "POST", "/v1/studies".into(), b"{\"source\": ".to_vec(), 400, vec!["not valid JSON"]),
        ("unknown field", "POST", "/v1/studies".into(), br#"{"source": "x", "colour": "red"}"#.to_vec(), 400, vec!["colour"]),
        ("missing source", "POST", "/v1/studies".into(), br#"{"file": "a.toml"}"#.to_vec(), 400, vec!["source"]),
        ("body not an object", "POST", "/v1/studies".into(), b"[1, 2]".to_vec(), 400, vec!["JSON object"]),
        ("empty body", "POST", "/v1/studies".into(), Vec::new(), 400, vec!["empty"]),
        ("study TOML with an error", "POST", "/v1/studies".into(), submit_body(&bad_study, "lr.toml"), 400, vec!["lr.toml:", "space.x: log = true needs low > 0"]),
        ("TOML syntax error", "POST", "/v1/studies".into(), submit_body("[study\nname = 1", "s.toml"), 400, vec!["s.toml:1:", "TOML syntax error"]),
        ("relative base_dir", "POST", "/v1/studies".into(), br#"{"source": "", "base_dir": "rel"}"#.to_vec(), 400, vec!["base_dir"]),
        ("duplicate study", "POST", "/v1/studies".into(), submit_body(&external_study("ext"), "ext.toml"), 409, vec!["ext"]),
        ("unknown study", "GET", "/v1/studies/nope".into(), Vec::new(), 404, vec!["nope"]),
        ("unknown study: trials", "GET", "/v1/studies/nope/trials".into(), Vec::new(), 404, vec!["nope"]),
        ("unknown study: ask", "POST", "/v1/studies/nope/ask".into(), Vec::new(), 404, vec!["nope"]),
        ("unknown study: pause", "POST", "/v1/studies/nope/pause".into(), Vec::new(), 404, vec!["nope"]),
        ("study name not UTF-8", "GET", "/v1/studies/%FF".into(), Vec::new(), 400, vec!["UTF-8"]),
        ("non-numeric trial number", "GET", "/v1/studies/ext/trials/abc".into(), Vec::new(), 400, vec!["trial number", "abc"]),
        ("negative trial number", "POST", "/v1/studies/ext/trials/-1/tell".into(), br#"{"failed": "x"}"#.to_vec(), 400, vec!["trial number", "-1"]),
        ("unknown trial", "GET", "/v1/studies/ext/trials/4242".into(), Vec::new(), 404, vec!["4242"]),
        ("tell with two outcomes", "POST", tell.clone(), br#"{"metrics": {"loss": 1.0}, "failed": "oops"}"#.to_vec(), 400, vec!["exactly one", "metrics", "failed"]),
        ("tell with no outcome", "POST", tell.clone(), b"{}".to_vec(), 400, vec!["exactly one"]),
        ("tell with non-numeric metric", "POST", tell.clone(), br#"{"metrics": {"loss": "low"}}"#.to_vec(), 400, vec!["metrics.loss"]),
        ("tell with unknown field", "POST", tell.clone(), br#"{"metrics": {"loss": 1}, "note": "x"}"#.to_vec(), 400, vec!["note"]),
        ("report with non-numeric metrics", "POST", report.clone(), br#"{"step": 1, "metrics": {"loss": "high"}}"#.to_vec(), 400, vec!["metrics.loss"]),
        ("report with negative step", "POST", report.clone(), br#"{"step": -5, "metrics": {"loss": 1}}"#.to_vec(), 400, vec!["step"]),
        ("report without step", "POST", report.clone(), br#"{"metrics": {"loss": 1}}"#.to_vec(), 400, vec!["step"]),
        ("leaderboard?top=abc", "GET", "/v1/studies/ext/leaderboard?top=abc".into(), Vec::new(), 400, vec!["top"]),
        ("leaderboard unknown parameter", "GET", "/v1/studies/ext/leaderboard?colour=red".into(), Vec::new(), 400, vec!["colour"]),
        ("unknown endpoint", "GET", "/v1/nope".into(), Vec::new(), 404, vec!["no such API endpoint"]),
        ("unknown endpoint outside /v1", "GET", "/".into(), Vec::new(), 404, vec!["no such API endpoint"]),
        ("POST to a GET endpoint", "POST", "/v1/studies/ext/trials".into(), Vec::new(), 405, vec!["POST", "GET"]),
        ("PUT a study", "PUT", "/v1/studies/ext".into(), Vec::new(), 405, vec!["PUT"]),
        ("import of garbage", "POST", "/v1/import".into(), b"garbage\nmore garbage\n".to_vec(), 400, vec!["line 1"]),
        ("import, garbage on line 2", "POST", "/v1/import".into(), valid_then_garbage.into_bytes(), 400, vec!["line 2"]),
        ("import of an existing study", "POST", "/v1/import".into(), format!("{study_line}\n").into_bytes(), 409, vec!["ext"]),
        ("import of a study that cannot run", "POST", "/v1/import".into(), unrunnable.into_bytes(), 400, vec!["line 1", "annealing"]),
        ("import not UTF-8", "POST", "/v1/import".into(), vec![0xff, 0xfe, b'\n'], 400, vec!["UTF-8"]),
        ("10 MB study body", "POST", "/v1/studies".into(), ten_mb.clone(), 413, vec!["too large"]),
        ("10 MB import", "POST", "/v1/import".into(), ten_mb, 400, vec!["line 1"]),
    ];
    let n_cases = cases.len();
    for (what, method, path, body, want, needles) in cases {
        let r = http(&sock, method, &path, &body);
        let error = serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string));
        match error {
            Some(e) if r.status == want && needles.iter().all(|n| e.contains(n)) => {}
            _ => problems.push(format!("{what} ({method} {path}): want {want} with {{\"error\"}} containing {needles:?}, got {} {}", r.status, r.body.chars().take(300).collect::<String>())),
        }
    }

    // Requests broken at the HTTP level: a body shorter than its Content-Length, a request line
    // that is not HTTP. A 400 is all that can be asked; the daemon must go on.
    let short = send_raw(
        &sock,
        b"POST /v1/studies HTTP/1.1\r\nHost: q\r\nContent-Length: 100\r\n\r\n{\"source\"",
        true,
    );
    if short.status != 400 {
        problems.push(format!(
            "truncated body: want 400, got {} {}",
            short.status, short.body
        ));
    }
    let junk = send_raw(&sock, b"HELLO THERE\r\n\r\n", false);
    if junk.status != 400 {
        problems.push(format!(
            "not HTTP: want 400, got {} {}",
            junk.status, junk.body
        ));
    }

    // The refused tells and reports left the trial running: a proper tell completes it.
    let s = sock.to_str().unwrap();
    let ok = d.cli(&[
        "tell",
        "ext",
        &n.to_string(),
        "--metrics",
        r#"{"loss": 0.5}"#,
    ]);
    if !ok.status.success() {
        problems.push(format!("tell after the bad ones failed: {}", text(&ok)));
    }
    // Requests that only make sense once a trial has finished or its study was cancelled, and
    // values at the edges of what JSON and the path syntax allow.
    let ask = d.cli(&["ask", "ext"]);
    assert!(ask.status.success(), "{}", text(&ask));
    let m = serde_json::from_slice::<Value>(&ask.stdout).unwrap()["trial"]
        .as_u64()
        .unwrap();
    let ext2 = d.write("ext2.toml", &external_study("ext2"));
    let out = d.cli(&["submit", ext2.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let ask2 = d.cli(&["ask", "ext2"]);
    assert!(ask2.status.success(), "{}", text(&ask2));
    let k = serde_json::from_slice::<Value>(&ask2.stdout).unwrap()["trial"]
        .as_u64()
        .unwrap();
    let out = d.cli(&["cancel", "ext2"]);
    assert!(out.status.success(), "{}", text(&out));
    let good_cmd_study = study_toml("wd-check", "[\"true\"]", 1, 1, "");
    let deep = format!(
        "{{\"source\": {}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let deep_import = format!(
        "{{\"kind\": \"study\", \"name\": \"deep\", \"definition\": {}{}}}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let tell_m = format!("/v1/studies/ext/trials/{m}/tell");
    let report_m = format!("/v1/studies/ext/trials/{m}/report");
    #[rustfmt::skip]
    let more: Vec<ApiCase> = vec![
        ("tell twice", "POST", tell.clone(), br#"{"metrics": {"loss": 0.5}}"#.to_vec(), 409, vec!["is complete"]),
        ("report after tell", "POST", report.clone(), br#"{"step": 2, "metrics": {"loss": 1}}"#.to_vec(), 409, vec!["not running"]),
        ("tell after cancel", "POST", format!("/v1/studies/ext2/trials/{k}/tell"), br#"{"metrics": {"loss": 0.5}}"#.to_vec(), 409, vec!["cancelled"]),
        ("report after cancel", "POST", format!("/v1/studies/ext2/trials/{k}/report"), br#"{"step": 1, "metrics": {"loss": 1}}"#.to_vec(), 409, vec!["cancelled"]),
        ("ask after cancel", "POST", "/v1/studies/ext2/ask".into(), Vec::new(), 409, vec!["cancelled"]),
        ("cancel twice", "POST", "/v1/studies/ext2/cancel".into(), Vec::new(), 409, vec!["already cancelled"]),
        ("resume a cancelled study", "POST", "/v1/studies/ext2/resume".into(), Vec::new(), 409, vec!["cancelled"]),
        ("tell NaN", "POST", tell_m.clone(), br#"{"metrics": {"loss": NaN}}"#.to_vec(), 400, vec!["not valid JSON"]),
        ("tell Infinity", "POST", tell_m.clone(), br#"{"metrics": {"loss": Infinity}}"#.to_vec(), 400, vec!["not valid JSON"]),
        ("tell 1e999 (overflows to inf)", "POST", tell_m.clone(), br#"{"metrics": {"loss": 1e999}}"#.to_vec(), 400, vec!["out of range"]),
        ("tell -1e999", "POST", tell_m.clone(), br#"{"metrics": {"loss": -1e999}}"#.to_vec(), 400, vec!["out of range"]),
        ("tell without the objective metric", "POST", tell_m.clone(), br#"{"metrics": {"other": 1}}"#.to_vec(), 400, vec!["lacks loss"]),
        ("tell metrics not an object", "POST", tell_m.clone(), br#"{"metrics": [1, 2]}"#.to_vec(), 400, vec!["metrics"]),
        ("tell failed reason not a string", "POST", tell_m.clone(), br#"{"failed": 7}"#.to_vec(), 400, vec!["failed"]),
        ("report step 2^64", "POST", report_m.clone(), br#"{"step": 18446744073709551616, "metrics": {"loss": 1}}"#.to_vec(), 400, vec!["step"]),
        ("report step 1e30", "POST", report_m.clone(), br#"{"step": 1e30, "metrics": {"loss": 1}}"#.to_vec(), 400, vec!["step"]),
        ("report NaN value", "POST", report_m.clone(), br#"{"step": 1, "metrics": {"loss": NaN}}"#.to_vec(), 400, vec!["not valid JSON"]),
        ("unicode study name", "GET", "/v1/studies/%C3%BCn%C3%AFc%C3%B6de".into(), Vec::new(), 404, vec!["ünïcöde"]),
        ("unicode study name: tell", "POST", "/v1/studies/%E2%9C%93/trials/0/tell".into(), br#"{"failed": "x"}"#.to_vec(), 404, vec!["✓"]),
        ("encoded path traversal as a study name", "GET", "/v1/studies/..%2F..%2Fetc%2Fpasswd".into(), Vec::new(), 404, vec!["../../etc/passwd"]),
        ("dot-dot path segments", "GET", "/v1/studies/../../etc/passwd".into(), Vec::new(), 404, vec!["no such API endpoint"]),
        ("NUL in a study name", "GET", "/v1/studies/a%00b/trials".into(), Vec::new(), 404, vec!["no study named"]),
        ("trial number beyond u64", "GET", "/v1/studies/ext/trials/99999999999999999999999".into(), Vec::new(), 400, vec!["trial number"]),
        ("unknown trial: tell", "POST", "/v1/studies/ext/trials/999999/tell".into(), br#"{"failed": "x"}"#.to_vec(), 404, vec!["999999"]),
        ("unknown trial: report", "POST", "/v1/studies/ext/trials/999999/report".into(), br#"{"step": 1, "metrics": {"loss": 1}}"#.to_vec(), 404, vec!["999999"]),
        ("unknown study: tell", "POST", "/v1/studies/nope/trials/0/tell".into(), br#"{"failed": "x"}"#.to_vec(), 404, vec!["nope"]),
        ("unknown study: export", "GET", "/v1/studies/nope/export".into(), Vec::new(), 404, vec!["nope"]),
        ("unknown study: leaderboard", "GET", "/v1/studies/nope/leaderboard".into(), Vec::new(), 404, vec!["nope"]),
        ("unknown study: cancel", "POST", "/v1/studies/nope/cancel".into(), Vec::new(), 404, vec!["nope"]),
        ("leaderboard?top beyond usize", "GET", "/v1/studies/ext/leaderboard?top=99999999999999999999999".into(), Vec::new(), 400, vec!["top"]),
        ("submit: source not a string", "POST", "/v1/studies".into(), br#"{"source": 42}"#.to_vec(), 400, vec!["source"]),
        ("submit: working_dir missing on the daemon's side", "POST", "/v1/studies".into(), serde_json::to_vec(&json!({"source": good_cmd_study, "base_dir": "/nonexistent-quantune-dir"})).unwrap(), 400, vec!["trial.working_dir", "does not exist"]),
        ("submit: JSON nested 10,000 deep", "POST", "/v1/studies".into(), deep.into_bytes(), 400, vec!["source", "expected a string"]),
        ("import: a definition nested 10,000 deep", "POST", "/v1/import".into(), deep_import.into_bytes(), 400, vec!["line 1", "recursion limit"]),
    ];
    let n_more = more.len();
    for (what, method, path, body, want, needles) in more {
        let r = http(&sock, method, &path, &body);
        let error = serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string));
        match error {
            Some(e) if r.status == want && needles.iter().all(|n| e.contains(n)) => {}
            _ => problems.push(format!("{what} ({method} {path}): want {want} with {{\"error\"}} containing {needles:?}, got {} {}", r.status, r.body.chars().take(300).collect::<String>())),
        }
    }
    // The refused tells left trial m running: it can still be told.
    let ok = d.cli(&[
        "tell",
        "ext",
        &m.to_string(),
        "--metrics",
        r#"{"loss": 0.25}"#,
    ]);
    if !ok.status.success() {
        problems.push(format!(
            "tell of {m} after the bad ones failed: {}",
            text(&ok)
        ));
    }

    // The refused imports left nothing behind.
    let r = http(&sock, "GET", "/v1/studies/imported", b"");
    if r.status != 404 {
        problems.push(format!(
            "a refused import left study 'imported': {} {}",
            r.status, r.body
        ));
    }

    // CLI usage errors: exit 2 from the parser; a bad --metrics is exit 1 with a message.
    #[rustfmt::skip]
    let usage: Vec<(&str, Vec<&str>, i32, &str)> = vec![
        ("unknown subcommand", vec!["frobnicate"], 2, "frobnicate"),
        ("report without --step", vec!["report", "ext", "0", "--metrics", "{}"], 2, "--step"),
        ("tell without an outcome", vec!["tell", "ext", "0"], 2, "--metrics"),
        ("tell with two outcomes", vec!["tell", "ext", "0", "--metrics", "{}", "--failed", "x"], 2, "--failed"),
        ("non-numeric trial", vec!["tell", "ext", "abc", "--failed", "x"], 2, "abc"),
        ("bad --format", vec!["studies", "--format", "yaml"], 2, "yaml"),
        ("tell with invalid JSON metrics", vec!["tell", "ext", "0", "--metrics", "{loss: 1"], 1, "--metrics must be a JSON object of numbers"),
        ("report with non-numeric metrics", vec!["report", "ext", "0", "--step", "1", "--metrics", r#"{"loss": "x"}"#], 1, "--metrics must be a JSON object of numbers"),
        ("unknown study", vec!["status", "nope"], 1, "nope"),
        ("validate a missing file", vec!["validate", "/nonexistent/study.toml"], 1, "/nonexistent/study.toml"),
    ];
    let n_usage = usage.len();
    for (what, args, code, needle) in usage {
        let out = Command::new(bin())
            .arg("--socket")
            .arg(s)
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(code)
            || !stderr.contains(needle)
            || stderr.contains("panicked")
        {
            problems.push(format!(
                "CLI {what} ({args:?}): want exit {code} with {needle:?}, got {:?}: {}",
                out.status.code(),
                text(&out).trim()
            ));
        }
    }

    // The daemon still serves: it lists the study, and a good study submitted now completes.
    let listed = d.json(&["studies"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["ext", "ext2"], "studies after the bad input");
    let command = format!(
        "[\"sh\", {:?}, \"{{x}}\", \"{{q}}\"]",
        fixture("objective.sh").display().to_string()
    );
    let good = d.write("good.toml", &study_toml("good-after", &command, 3, 1, ""));
    let out = d.cli(&["submit", good.to_str().unwrap()]);
    assert!(out.status.success(), "good study refused: {}", text(&out));
    assert_eq!(
        d.wait_study("good-after", Duration::from_secs(60)),
        "completed"
    );
    let trials = d.json(&["trials", "good-after"]);
    assert_eq!(trials.as_array().unwrap().len(), 3);
    assert!(
        trials
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "complete"),
        "{trials}"
    );
    assert!(
        !d.log().contains("panicked"),
        "the daemon panicked:\n{}",
        d.log()
    );

    assert!(
        problems.is_empty(),
        "{} problem(s) over {} bad files, {} API cases, {n_usage} CLI cases:\n{}",
        problems.len(),
        files.len(),
        n_cases + n_more,
        problems.join("\n")
    );
}
