//! Attacks on the daemon, through the real binary, one test per attack (docs/RELIABILITY.md,
//! "Hardening"): trials that try to outlive themselves, metrics files that try to exhaust the
//! daemon's memory or wedge it, connections that try to pin it, a stray SIGHUP, a forwarder
//! asked by a stranger, a corrupt store.

mod common;

use common::{fixture, pid_alive, study_toml_full, text, wait_for, Daemon};
use std::time::{Duration, Instant};

/// The study `name` running `escape.sh PIDFILE mode` once, with `timeout`.
fn escape_study(d: &Daemon, name: &str, mode: &str, timeout: &str) -> std::path::PathBuf {
    let pidfile = d.dir.path().join(format!("{name}.pid"));
    let command = format!(
        "[\"sh\", {:?}, {:?}, {mode:?}]",
        fixture("escape.sh").display().to_string(),
        pidfile.display().to_string()
    );
    let toml = study_toml_full(name, &command, 1, 1, "", timeout, "retries = 0");
    let f = d.write(&format!("{name}.toml"), &toml);
    let out = d.cli(&["submit", f.to_str().unwrap()]);
    assert!(out.status.success(), "submit {name}: {}", text(&out));
    pidfile
}

/// The pid the escaped grandchild wrote, once it is there.
fn grandchild(pidfile: &std::path::Path) -> u32 {
    wait_for(Duration::from_secs(20), "the grandchild's pid file", || {
        std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
}

/// Waits until `pid` is gone, up to 2 s; panics with `what` otherwise.
fn dead_within_2s(pid: u32, what: &str) {
    let t = Instant::now();
    while pid_alive(pid) {
        if t.elapsed() > Duration::from_secs(2) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("{what}: the escaped grandchild {pid} still runs 2 s after the trial ended");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A grandchild double-forked into its own session with an empty environment dies with its
/// trial however the trial ends: exit 0, timeout, cancel, daemon stop; and the trial's end is
/// not held up by the pipe the grandchild inherited.
fn escapees_die_with_their_trial(containment: &str) {
    let mut d = Daemon::start(4, &format!("containment = \"{containment}\""));
    let kind = if d.log().contains("a cgroup each") {
        "cgroup"
    } else {
        "subreaper"
    };
    eprintln!("containment = {containment:?}: trials run in a {kind} box");

    // Exit 0: the trial is complete only once the grandchild is gone, and promptly.
    let pidfile = escape_study(&d, "exit0", "exit0", "30s");
    let pid = grandchild(&pidfile);
    let t = Instant::now();
    assert_eq!(d.wait_study("exit0", Duration::from_secs(20)), "completed");
    let took = t.elapsed();
    eprintln!("exit 0: recorded {took:?} after the grandchild started");
    dead_within_2s(pid, "exit 0");
    assert!(
        took < Duration::from_secs(3),
        "the trial took {took:?} to be recorded after it exited (waiting on an inherited pipe?)"
    );

    // Timeout.
    let pidfile = escape_study(&d, "timeout", "hang", "2s");
    let pid = grandchild(&pidfile);
    d.wait_study("timeout", Duration::from_secs(30));
    dead_within_2s(pid, "timeout");
    let trial = &d.trials("timeout")[0];
    assert_eq!(trial["state"], "failed", "{trial}");
    assert!(
        trial["reason"].as_str().unwrap_or("").contains("timeout"),
        "{trial}"
    );

    // Cancel.
    let pidfile = escape_study(&d, "cancel", "hang", "60s");
    let pid = grandchild(&pidfile);
    wait_for(Duration::from_secs(10), "the trial to run", || {
        (d.json(&["status", "cancel"])["state"] == "running").then_some(())
    });
    let out = d.cli(&["cancel", "cancel"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(d.wait_study("cancel", Duration::from_secs(20)), "cancelled");
    dead_within_2s(pid, "cancel");

    // Daemon stop.
    let pidfile = escape_study(&d, "stop", "hang", "60s");
    let pid = grandchild(&pidfile);
    assert!(d.stop(), "the daemon did not stop cleanly:\n{}", d.log());
    dead_within_2s(pid, "daemon stop");
}

/// The daemon is killed (`kill -9`) while a trial with an escaped grandchild runs: the next
/// start ends the grandchild by what the trial's box recorded (its cgroup, or its pids), though
/// the grandchild has no QUANTUNE_* variable to be found by.
fn leftovers_of_a_killed_daemon_are_reaped(containment: &str) {
    let mut d = Daemon::start(2, &format!("containment = \"{containment}\""));
    let pidfile = escape_study(&d, "crash", "hang", "60s");
    let pid = grandchild(&pidfile);
    // Long enough for the subreaper box to have seen it (it looks every 0.1 s).
    std::thread::sleep(Duration::from_millis(500));
    d.kill9();
    assert!(
        pid_alive(pid),
        "the grandchild died with the daemon already"
    );
    d.spawn();
    dead_within_2s(pid, "restart after kill -9");
    assert!(
        d.log()
            .contains("leftover process(es) of the interrupted attempt"),
        "{}",
        d.log()
    );
}

#[test]
fn leftovers_of_a_killed_daemon_are_reaped_by_cgroup_or_recorded_pids() {
    leftovers_of_a_killed_daemon_are_reaped("auto");
    leftovers_of_a_killed_daemon_are_reaped("subreaper");
}

#[test]
fn escaped_grandchildren_die_with_their_trial_in_a_cgroup_or_subreaper_box() {
    // `auto`: a cgroup where this machine offers one (the log says which was used).
    escapees_die_with_their_trial("auto");
}

#[test]
fn escaped_grandchildren_die_with_their_trial_under_the_subreaper_fallback() {
    escapees_die_with_their_trial("subreaper");
}

/// The daemon's peak resident memory so far (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024
}

/// The one trial of `study` once it is finished.
fn finished_trial(d: &Daemon, study: &str) -> serde_json::Value {
    d.wait_study(study, Duration::from_secs(30));
    d.trials(study)[0].clone()
}

/// A 2 GiB metrics line without a newline and a FIFO in place of the metrics file: each fails
/// its trial with a reason that says what is wrong, and the daemon's memory stays bounded.
#[test]
fn a_2gib_metrics_line_and_a_fifo_fail_their_trial_with_bounded_memory() {
    let d = Daemon::start(2, "");
    let pid = d.pid().unwrap();
    let script = fixture("bad_metrics.sh").display().to_string();
    for (name, mode) in [("longline", "longline"), ("fifo", "fifo")] {
        let command = format!("[\"sh\", {script:?}, {mode:?}]");
        let toml = study_toml_full(name, &command, 1, 1, "", "60s", "retries = 0");
        let f = d.write(&format!("{name}.toml"), &toml);
        let out = d.cli(&["submit", f.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let t = Instant::now();
    let long = finished_trial(&d, "longline");
    eprintln!("2 GiB line: trial ended after {:?}", t.elapsed());
    assert_eq!(long["state"], "failed", "{long}");
    let reason = long["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("line 1 is longer than 1024 KiB"),
        "reason: {reason}"
    );
    let fifo = finished_trial(&d, "fifo");
    assert_eq!(fifo["state"], "failed", "{fifo}");
    let reason = fifo["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("is a FIFO, not a regular file"),
        "reason: {reason}"
    );
    let peak = peak_rss_mib(pid);
    eprintln!("daemon peak RSS {peak} MiB");
    assert!(peak < 200, "the daemon's peak RSS was {peak} MiB");
    // What the trial wrote stopped soon after the limit: the disk is not filled either.
    let written = std::fs::metadata(d.state_dir().join("trials/longline/0/metrics.1.jsonl"))
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "2 GiB line: {} MiB written before the trial was stopped",
        written >> 20
    );
    assert!(
        written < 2 << 30,
        "the trial wrote its whole line ({written} bytes)"
    );
}

/// Opens `n` connections to the socket: even ones send nothing, odd ones half a request head.
fn idle_and_half_sent(socket: &std::path::Path, n: usize) -> Vec<std::os::unix::net::UnixStream> {
    use std::io::Write;
    (0..n)
        .map(|i| {
            let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect");
            if i % 2 == 1 {
                s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: q\r\nX-Slow: ")
                    .unwrap();
            }
            s
        })
        .collect()
}

/// Whether the server has closed `s` (EOF or reset), waiting up to `wait`.
fn closed_by_server(s: &mut std::os::unix::net::UnixStream, wait: Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or the like before the close is fine: read on to the end.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A `studies` command, timed.
fn timed_cli(d: &Daemon) -> Duration {
    let t = Instant::now();
    let out = d.cli(&["studies"]);
    assert!(out.status.success(), "the CLI failed: {}", text(&out));
    t.elapsed()
}

/// 300 idle and half-sent connections (and a keep-alive one left idle after a request) are
/// closed by the server within the configured timeouts, and the CLI answers throughout.
#[test]
fn idle_and_half_sent_connections_are_closed_within_the_timeouts() {
    use std::io::{Read, Write};
    let d = Daemon::start(
        1,
        "[http]\nheader_timeout = \"1s\"\nidle_timeout = \"2s\"\nmax_connections = 1000\n",
    );
    let t0 = Instant::now();
    let mut conns = idle_and_half_sent(&d.socket, 300);
    // One request on a keep-alive connection, then silence.
    let mut keep = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    keep.write_all(b"GET /v1/health HTTP/1.1\r\nHost: q\r\n\r\n")
        .unwrap();
    let mut got = [0u8; 4096];
    let n = keep.read(&mut got).unwrap();
    assert!(String::from_utf8_lossy(&got[..n]).starts_with("HTTP/1.1 200"));
    let keep_t = Instant::now();
    for _ in 0..3 {
        let took = timed_cli(&d);
        assert!(took < Duration::from_secs(2), "the CLI took {took:?}");
    }
    for (i, c) in conns.iter_mut().enumerate() {
        assert!(
            closed_by_server(c, Duration::from_secs(3)),
            "connection {i} still open {:?} after it was opened (header_timeout = 1s)",
            t0.elapsed()
        );
    }
    let all = t0.elapsed();
    eprintln!(
        "300 idle/half-sent connections all closed {all:?} after opening (header_timeout 1s)"
    );
    assert!(all < Duration::from_millis(2500), "closing took {all:?}");
    assert!(closed_by_server(&mut keep, Duration::from_secs(4)));
    let idle = keep_t.elapsed();
    eprintln!("idle keep-alive connection closed after {idle:?} (idle_timeout 2s)");
    assert!(
        idle >= Duration::from_millis(1900) && idle < Duration::from_millis(3500),
        "idle keep-alive closed after {idle:?}"
    );
}

/// Requests whose heads are complete but whose bodies trickle in (a byte every 100 ms) get a
/// clear error once `body_timeout` has passed and their connections are closed; the CLI
/// answers meanwhile.
#[test]
fn a_trickled_request_body_is_cut_off_at_the_body_timeout() {
    use std::io::{Read, Write};
    let d = Daemon::start(1, "[http]\nbody_timeout = \"1s\"\n");
    let t0 = Instant::now();
    let mut conns: Vec<std::os::unix::net::UnixStream> = (0..20)
        .map(|_| {
            let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
            s.write_all(
                b"POST /v1/studies/x/import HTTP/1.1\r\nHost: q\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
            )
            .unwrap();
            s
        })
        .collect();
    let tricklers: Vec<_> = conns
        .iter()
        .map(|c| {
            let mut w = c.try_clone().unwrap();
            std::thread::spawn(move || {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(6) && w.write_all(b" ").is_ok() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    let took = timed_cli(&d);
    assert!(took < Duration::from_secs(2), "the CLI took {took:?}");
    for (i, c) in conns.iter_mut().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        let at = t0.elapsed();
        let reply = String::from_utf8_lossy(&got);
        assert!(
            reply.starts_with("HTTP/1.1 400") && reply.contains("body_timeout"),
            "connection {i} after {at:?}: {reply:?}"
        );
        assert!(
            at >= Duration::from_millis(900) && at < Duration::from_millis(3000),
            "connection {i} answered after {at:?} (body_timeout = 1s)"
        );
        assert!(
            closed_by_server(c, Duration::from_secs(1)),
            "connection {i} left open"
        );
    }
    eprintln!(
        "20 trickled bodies cut off and closed {:?} after they began (body_timeout 1s)",
        t0.elapsed()
    );
    for t in tricklers {
        t.join().unwrap();
    }
    let took = timed_cli(&d);
    assert!(took < Duration::from_secs(2), "the CLI took {took:?}");
}

/// More connections than the cap: the oldest idle ones are closed to make room, so the
/// daemon's descriptors stay bounded and the CLI still gets in.
#[test]
fn a_connection_flood_cannot_crowd_out_the_cli() {
    let d = Daemon::start(
        1,
        "[http]\nheader_timeout = \"60s\"\nmax_connections = 50\ncli_reserve = 10\n",
    );
    let pid = d.pid().unwrap();
    let _conns = idle_and_half_sent(&d.socket, 300);
    for _ in 0..3 {
        let took = timed_cli(&d);
        assert!(took < Duration::from_secs(2), "the CLI took {took:?}");
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    eprintln!("daemon holds {fds} descriptors with 300 connections pressing on a cap of 50");
    assert!(fds < 120, "the daemon holds {fds} descriptors");
}

/// A SIGHUP is logged and ignored: the daemon goes on serving, its trials go on running.
#[test]
fn sighup_leaves_the_daemon_serving() {
    let d = Daemon::start(1, "");
    let pid = d.pid().unwrap();
    for _ in 0..3 {
        let st = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(pid_alive(pid), "SIGHUP killed the daemon:\n{}", d.log());
    let out = d.cli(&["studies"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(d.log().contains("SIGHUP: ignored"), "{}", d.log());
}

/// A store whose file was cut short while the daemon was stopped: the next start exits with
/// one short paragraph naming the file and the way back, and no panic.
#[test]
fn a_truncated_store_gives_a_short_error_naming_the_way_back() {
    let mut d = Daemon::start(2, "");
    let toml = common::study_toml("t", &common::objective_command(), 6, 2, "");
    let f = d.write("t.toml", &toml);
    assert!(d.cli(&["submit", f.to_str().unwrap()]).status.success());
    d.wait_study("t", Duration::from_secs(30));
    assert!(d.stop());
    let db = d.state_dir().join("store/db");
    let len = std::fs::metadata(&db).unwrap().len();
    let cut = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    cut.set_len(len / 2).unwrap();
    drop(cut);
    let out = std::process::Command::new(common::bin())
        .args(["serve", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or("");
    eprintln!("{} bytes of stderr; the error: {last}", err.len());
    assert!(err.len() < 2000, "{} bytes of stderr:\n{err}", err.len());
    assert!(!err.contains("panicked"), "{err}");
    for want in [
        "damaged",
        "truncated",
        "quantune restore",
        db.to_str().unwrap(),
    ] {
        assert!(last.contains(want), "no {want:?} in: {last}");
    }
}

/// Kills the `quantune web` forwarder when the test ends.
struct Forwarder(std::process::Child);

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One raw HTTP/1.0 request; returns the whole answer.
fn raw_http(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp
}

/// `quantune web` answers only requests that carry its token and name its own address as
/// `Host` (a DNS-rebinding page names its own host), and listens on loopback only.
#[test]
fn the_web_forwarder_refuses_requests_without_its_token_or_with_a_foreign_host() {
    use std::io::BufRead;
    let d = Daemon::start(1, "web = true");
    let out = d.cli(&["web", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not a loopback address"),
        "{}",
        text(&out)
    );
    let mut child = std::process::Command::new(common::bin())
        .arg("--socket")
        .arg(&d.socket)
        .args(["web", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _fwd = Forwarder(child);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let (base, token) = url.split_once("/ui/?token=").expect("a token in the URL");
    assert_eq!(token.len(), 32, "{url}");
    let addr = base.trim_start_matches("http://");

    let no_token = raw_http(addr, &format!("GET /ui/ HTTP/1.0\r\nHost: {addr}\r\n\r\n"));
    assert!(
        no_token.starts_with("HTTP/1.0 403") || no_token.starts_with("HTTP/1.1 403"),
        "{no_token}"
    );
    assert!(no_token.contains("needs the token"), "{no_token}");
    let wrong = raw_http(
        addr,
        &format!(
            "GET /ui/?token={} HTTP/1.0\r\nHost: {addr}\r\n\r\n",
            "0".repeat(32)
        ),
    );
    assert!(wrong.contains(" 403 "), "{wrong}");
    let foreign = raw_http(
        addr,
        &format!("GET /ui/?token={token} HTTP/1.0\r\nHost: evil.example:80\r\n\r\n"),
    );
    assert!(
        foreign.contains(" 403 ") && foreign.contains("evil.example"),
        "{foreign}"
    );

    // The token in the URL opens the page and sets the cookie; the cookie alone then does.
    let ok = raw_http(
        addr,
        &format!("GET /ui/?token={token} HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
    );
    assert!(ok.contains(" 200 "), "{ok}");
    assert!(ok.contains(&format!("quantune_web_token={token}")), "{ok}");
    assert!(
        ok.contains("SameSite=Strict") && ok.contains("HttpOnly"),
        "{ok}"
    );
    let cookie = raw_http(
        addr,
        &format!("GET /ui/ HTTP/1.0\r\nHost: {addr}\r\nCookie: quantune_web_token={token}\r\n\r\n"),
    );
    assert!(cookie.contains(" 200 "), "{cookie}");
}

/// A trial that writes 80 MiB to stdout completes; its log keeps the first 64 MiB and ends with
/// a note; the daemon's memory stays flat.
#[test]
fn trial_logs_are_capped_with_a_note() {
    let d = Daemon::start(1, "");
    let command = format!(
        "[\"sh\", {:?}, \"chatty\"]",
        fixture("bad_metrics.sh").display().to_string()
    );
    let toml = study_toml_full("chatty", &command, 1, 1, "", "60s", "retries = 0");
    let f = d.write("chatty.toml", &toml);
    assert!(d.cli(&["submit", f.to_str().unwrap()]).status.success());
    let trial = finished_trial(&d, "chatty");
    assert_eq!(trial["state"], "complete", "{trial}");
    let log = d.state_dir().join("trials/chatty/0/stdout.1.log");
    let len = std::fs::metadata(&log).unwrap().len();
    assert!(
        len > 64 << 20 && len < (64 << 20) + 1024,
        "stdout.1.log is {len} bytes"
    );
    let mut f = std::fs::File::open(&log).unwrap();
    use std::io::{Read, Seek};
    f.seek(std::io::SeekFrom::Start(64 << 20)).unwrap();
    let mut note = String::new();
    f.read_to_string(&mut note).unwrap();
    assert!(note.contains("reached its limit of 64 MiB"), "{note:?}");
    let peak = peak_rss_mib(d.pid().unwrap());
    assert!(peak < 200, "the daemon's peak RSS was {peak} MiB");
}

/// The smaller holes: state files readable by others, terminal escapes from a study printed
/// raw, a NUL byte in a choice, `tell --failed ""` without a reason.
#[test]
fn state_files_are_private_escapes_are_shown_escaped_and_empty_or_nul_text_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    // What a login shell usually has: files readable by everyone.
    // SAFETY: umask only sets this process's file mode mask.
    unsafe { libc::umask(0o022) };
    let d = Daemon::start(1, "");
    // A choice that would clear the screen and set the terminal title.
    let toml = study_toml_full("esc", &common::objective_command(), 1, 1, "", "30s", "").replace(
        r#"choices = ["a", "b"]"#,
        r#"choices = ["\u001b]0;pwned\u0007\u001b[2J"]"#,
    );
    let f = d.write("esc.toml", &toml);
    let out = d.cli(&["submit", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    d.wait_study("esc", Duration::from_secs(30));
    let out = d.cli(&["trials", "esc"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    assert!(shown.contains(r"\x1b]0;pwned\x07\x1b[2J"), "{shown}");

    for file in [
        "store/db",
        "trials/esc/0/stdout.1.log",
        "trials/esc/0/metrics.1.jsonl",
    ] {
        let mode = std::fs::metadata(d.state_dir().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} has mode {mode:o}");
    }

    let nul = study_toml_full("nul", &common::objective_command(), 1, 1, "", "30s", "")
        .replace(r#"choices = ["a", "b"]"#, r#"choices = ["a\u0000b", "c"]"#);
    let f = d.write("nul.toml", &nul);
    let out = d.cli(&["validate", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("NUL byte"), "{}", text(&out));

    let ext =
        "[study]\nname = \"ext\"\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\
               [space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[budget]\nmax_trials = 2\n\
               [trial]\nworkload = \"external\"\n";
    let f = d.write("ext.toml", ext);
    assert!(d.cli(&["submit", f.to_str().unwrap()]).status.success());
    assert!(d.cli(&["ask", "ext"]).status.success());
    let out = d.cli(&["tell", "ext", "0", "--failed", ""]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("needs a reason"), "{}", text(&out));
    assert_eq!(d.trials("ext")[0]["state"], "running");
}
