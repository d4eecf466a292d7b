//! Who gets in, end to end through the real binary: another local user cannot connect to the
//! socket (permission denied) while a member of `socket_group` can, and the daemon logs the
//! peer uid of each mutating request; the TCP listener answers 401 without the bearer token or
//! with a wrong one, and serves the CLI with it; a token file others can read stops the daemon
//! from starting. Also the storage guards that belong to operations: one daemon per state
//! directory, and `backup`/`restore` while the daemon runs.

mod common;

use common::{bin, objective_command, study_toml, text, Daemon};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A free TCP port on 127.0.0.1 (bound, then released for the daemon).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends one raw HTTP request to 127.0.0.1:port; returns the status code and the body.
fn tcp_request(port: u16, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn get(port: u16, path: &str, auth: Option<&str>) -> (u16, String) {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    tcp_request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: q\r\n{auth}Connection: close\r\n\r\n"),
    )
}

const TOKEN: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

#[test]
fn tcp_listener_needs_the_bearer_token() {
    let port = free_port();
    let d = Daemon::prepare(1, "");
    let token_file = d.write("token", &format!("{TOKEN}\n"));
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        format!(
            "{cfg}\n[tcp]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = {:?}\n",
            token_file.display().to_string()
        ),
    )
    .unwrap();
    let mut d = d;
    d.spawn();

    let bearer = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {}x", &TOKEN[..TOKEN.len() - 1]);
    #[rustfmt::skip]
    let cases: Vec<(&str, Option<&str>, u16)> = vec![
        ("no Authorization header", None, 401),
        ("a wrong token", Some(wrong.as_str()), 401),
        ("the token's prefix", Some(&bearer[..bearer.len() - 1]), 401),
        ("the token plus a byte", Some(&format!("{bearer}0")), 401),
        ("an empty bearer", Some("Bearer "), 401),
        ("basic auth", Some("Basic dXNlcjpwYXNz"), 401),
        ("the token without 'Bearer'", Some(TOKEN), 401),
        ("the token", Some(bearer.as_str()), 200),
    ]
    .into_iter()
    .map(|(w, a, s)| (w, a.map(|a| Box::leak(a.to_string().into_boxed_str()) as &str), s))
    .collect();
    for (what, auth, want) in cases {
        for path in ["/v1/studies", "/v1/health", "/v1/nope"] {
            let (status, body) = get(port, path, auth);
            let want = if want == 200 && path == "/v1/nope" {
                404
            } else {
                want
            };
            assert_eq!(status, want, "{what} on {path}: {body}");
            if want == 401 {
                assert!(body.contains("Bearer"), "{what}: {body}");
            }
        }
    }
    // A mutating request without the token never reaches the API.
    let (status, _) = tcp_request(
        port,
        "POST /v1/import HTTP/1.1\r\nHost: q\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert_eq!(status, 401);

    // The CLI over TCP: without a token it explains; with $QUANTUNE_TOKEN or --token-file it works.
    let url = format!("http://127.0.0.1:{port}");
    let cli = |env: Option<&str>, extra: &[&str]| {
        let mut c = Command::new(bin());
        c.args(["--url", &url])
            .args(extra)
            .env_remove("QUANTUNE_TOKEN");
        if let Some(t) = env {
            c.env("QUANTUNE_TOKEN", t);
        }
        c.output().unwrap()
    };
    let out = cli(None, &["studies"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("Authorization: Bearer"),
        "{}",
        text(&out)
    );
    let out = cli(Some("not-the-token-at-all"), &["studies"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = cli(Some(TOKEN), &["studies", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let study = d.write(
        "s.toml",
        &study_toml("over-tcp", &objective_command(), 2, 1, ""),
    );
    let out = cli(
        None,
        &[
            "--token-file",
            token_file.to_str().unwrap(),
            "submit",
            study.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        d.wait_study("over-tcp", Duration::from_secs(60)),
        "completed"
    );
    let log = d.log();
    assert!(log.contains("by tcp 127.0.0.1:"), "{log}");
    assert!(
        log.contains("-> 401 (no token)") && log.contains("-> 401 (wrong token)"),
        "{log}"
    );
}

#[test]
fn a_token_file_others_can_read_stops_the_daemon() {
    let d = Daemon::prepare(1, "");
    let token_file = d.write("token", TOKEN);
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        format!(
            "{cfg}\n[tcp]\nlisten = \"127.0.0.1:{}\"\ntoken_file = {:?}\n",
            free_port(),
            token_file.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("mode 0644") && text(&out).contains("chmod 600"),
        "{}",
        text(&out)
    );
    assert!(!d.socket.exists(), "the daemon bound its socket anyway");
}

#[test]
fn one_daemon_per_state_directory() {
    let d = Daemon::start(1, "");
    // Same state directory, another socket: refused with a message naming the holder.
    let other = d.write(
        "other.toml",
        &format!(
            "state_dir = {:?}\nsocket = {:?}\ngpu_discovery = false\n",
            d.state_dir(),
            d.dir.path().join("other.sock")
        ),
    );
    let out = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("is in use by another quantune process")
            && msg.contains(&format!("pid {}", d.pid().unwrap())),
        "{msg}"
    );
    // `quantune run` on the daemon's state directory: the same refusal.
    let study = d.write("r.toml", &study_toml("r", &objective_command(), 1, 1, ""));
    let out = Command::new(bin())
        .arg("run")
        .arg(&study)
        .arg("--state")
        .arg(d.state_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is in use by another quantune process"),
        "{}",
        text(&out)
    );
    // The first daemon is unaffected.
    assert!(d.cli(&["studies"]).status.success());
}

#[test]
fn backup_while_running_and_restore_elsewhere() {
    let d = Daemon::start(2, "");
    let long = d.write(
        "long.toml",
        &study_toml("long", &objective_command(), 40, 2, ""),
    );
    assert!(d.cli(&["submit", long.to_str().unwrap()]).status.success());
    let ext = d.write(
        "ext.toml",
        "[study]\nname = \"ext\"\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\
         [space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[strategy]\nkind = \"random\"\n\
         [budget]\nmax_trials = 10\nparallel = 2\n[trial]\nworkload = \"external\"\ntimeout = \"10m\"\n",
    );
    assert!(d.cli(&["submit", ext.to_str().unwrap()]).status.success());
    for _ in 0..3 {
        let a: serde_json::Value = serde_json::from_slice(&d.cli(&["ask", "ext"]).stdout).unwrap();
        let n = a["trial"].as_u64().unwrap().to_string();
        let out = d.cli(&["tell", "ext", &n, "--metrics", r#"{"loss": 0.25}"#]);
        assert!(out.status.success(), "{}", text(&out));
    }
    // One asked and not told: running in the backup.
    assert!(d.cli(&["ask", "ext"]).status.success());
    // Back up while the command study runs.
    std::thread::sleep(Duration::from_millis(300));
    let dir = d.dir.path().join("backup");
    let out = d.cli(&["backup", dir.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["studies"], serde_json::json!(["ext", "long"]));
    let n_trials = manifest["trials"].as_u64().unwrap();
    assert!(n_trials >= 4, "{manifest}");
    // A second backup into the same directory is refused.
    let again = d.cli(&["backup", dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again).contains("already holds a backup"),
        "{}",
        text(&again)
    );

    // Restore into a fresh daemon.
    let e = Daemon::start(2, "");
    let out = e.cli(&["restore", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let names: Vec<String> = e
        .json(&["studies"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["ext", "long"]);
    let told = e
        .trials("ext")
        .iter()
        .filter(|t| t["state"] == "complete" && t["metrics"]["loss"] == 0.25)
        .count();
    assert_eq!(told, 3, "{:?}", e.trials("ext"));
    // Restoring twice is refused as a whole; --skip-existing leaves them out.
    let out = e.cli(&["restore", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    let out = e.cli(&["restore", dir.to_str().unwrap(), "--skip-existing"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("nothing to restore") || text(&out).contains("skipping"),
        "{}",
        text(&out)
    );
    // The restored command study runs on to completion in its new home.
    assert_eq!(e.wait_study("long", Duration::from_secs(120)), "completed");
    // A damaged backup is refused before anything is imported.
    let data = dir.join("quantune-backup.jsonl");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes.truncate(bytes.len() / 2);
    let cut = bytes.iter().rposition(|b| *b == b'\n').unwrap() + 1;
    bytes.truncate(cut);
    std::fs::write(&data, bytes).unwrap();
    let f = Daemon::start(1, "");
    let out = f.cli(&["restore", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("does not match its manifest"),
        "{}",
        text(&out)
    );
    assert_eq!(f.json(&["studies"]), serde_json::json!([]));
}

/// A user who is not in `socket_group` gets "permission denied"; one who is gets in, and the
/// daemon logs that user's uid on a mutating request. Needs root (it creates users).
#[test]
fn other_local_users_cannot_connect() {
    if !is_root() {
        eprintln!("SKIPPED: creating users needs root");
        return;
    }
    let group = "quantune-test-sock";
    let (member, outsider) = ("qt-test-member", "qt-test-outsider");
    let run = |args: &[&str]| {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        (out.status.success(), text(&out))
    };
    if !run(&["getent", "group", group]).0 {
        let (ok, t) = run(&["groupadd", group]);
        assert!(ok || t.contains("already exists"), "{t}");
    }
    for (user, groups) in [(member, group), (outsider, "")] {
        if !run(&["id", user]).0 {
            let mut args = vec!["useradd", "--no-create-home", "--shell", "/bin/sh"];
            if !groups.is_empty() {
                args.extend(["-G", groups]);
            }
            args.push(user);
            let (ok, t) = run(&args);
            assert!(ok || t.contains("already exists"), "{t}");
        }
    }
    // The temp dir and the binary's directories must be traversable by the test users: the
    // socket's own mode is what is being tested.
    let d = Daemon::prepare(1, &format!("socket_group = {group:?}"));
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut d = d;
    d.spawn();
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    // A copy of the binary the test users can reach (the build tree may be under /root).
    let exe = d.dir.path().join("quantune");
    std::fs::copy(bin(), &exe).unwrap();
    let as_user = |user: &str, args: &[&str]| {
        Command::new("runuser")
            .args(["-u", user, "--"])
            .arg(&exe)
            .arg("--socket")
            .arg(&d.socket)
            .args(args)
            .output()
            .unwrap()
    };
    let probe = as_user(outsider, &["--version"]);
    if !probe.status.success() {
        eprintln!(
            "SKIPPED: user {outsider} cannot run {} here: {}",
            exe.display(),
            text(&probe)
        );
        return;
    }
    let out = as_user(outsider, &["studies"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));
    assert!(text(&out).contains("socket_group"), "{}", text(&out));
    let out = as_user(outsider, &["pause", "x"]);
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));

    let out = as_user(member, &["studies"]);
    assert!(out.status.success(), "member: {}", text(&out));
    let out = as_user(member, &["pause", "nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let uid = String::from_utf8(
        Command::new("id")
            .args(["-u", member])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    common::wait_for(Duration::from_secs(5), "the audit line", || {
        d.log()
            .contains(&format!("POST /v1/studies/nope/pause by unix uid={uid} "))
            .then_some(())
    });
    // GETs are not logged as audit lines.
    assert!(!d.log().contains("GET /v1/studies by"), "{}", d.log());
}
