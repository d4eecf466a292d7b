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

#[test]
fn escaped_grandchildren_die_with_their_trial_in_a_cgroup_or_subreaper_box() {
    // `auto`: a cgroup where this machine offers one (the log says which was used).
    escapees_die_with_their_trial("auto");
}

#[test]
fn escaped_grandchildren_die_with_their_trial_under_the_subreaper_fallback() {
    escapees_die_with_their_trial("subreaper");
}
