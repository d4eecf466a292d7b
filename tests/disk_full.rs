//! A full disk under the state directory (a tiny tmpfs; needs root to mount it): requests that
//! cannot be recorded fail with a message that says so and are not acknowledged; the daemon
//! stops with exit 1 (sled refuses every write after a failed one, so only a fresh process can
//! write again; systemd restarts it); a start on the still-full disk says why it cannot; once
//! space is freed the daemon starts, every acknowledged result is there, and the `tell` that
//! could not be recorded is retried and lands: nothing is lost.

mod common;

use common::{study_toml_full, text, Daemon};
use std::process::Command;
use std::time::Duration;

/// A tmpfs mounted on a directory for the life of the value (lazily unmounted on drop).
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes zeros to `path` until the disk is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn a_full_disk_loses_nothing_acknowledged() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: mounting a small tmpfs needs root");
        return;
    }
    let mut d = Daemon::prepare(1, "");
    std::fs::create_dir_all(d.state_dir()).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(d.state_dir())
        .output()
        .unwrap();
    if !mounted.status.success() {
        eprintln!("SKIPPED: cannot mount a tmpfs here: {}", text(&mounted));
        return;
    }
    let _tmpfs = Tmpfs(d.state_dir());
    d.spawn();
    let ext = d.write(
        "ext.toml",
        "[study]\nname = \"ext\"\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\
         [space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[strategy]\nkind = \"random\"\n\
         [budget]\nmax_trials = 1000\nparallel = 1\n[trial]\nworkload = \"external\"\ntimeout = \"10m\"\n",
    );
    let command = format!(
        "[\"sh\", {:?}, \"{{x}}\", \"{{q}}\"]",
        common::fixture("objective.sh").display().to_string()
    );
    let cmd = d.write(
        "cmd.toml",
        &study_toml_full(
            "cmd",
            &command,
            6,
            1,
            "",
            "30s",
            "retries = 5\nenv = { MODE = \"sleep\", SLEEP = \"0.2\" }",
        ),
    );
    for f in [&ext, &cmd] {
        let out = d.cli(&["submit", f.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
    }

    // A few results while there is space; then fill the disk, and ask and tell until a write
    // fails.
    let filler = d.state_dir().join("filler");
    let mut acked = Vec::new();
    let mut unrecorded = None;
    let mut error = String::new();
    for i in 0..505 {
        if i == 5 {
            fill(&filler);
        }
        let ask = d.cli(&["ask", "ext"]);
        if !ask.status.success() {
            error = text(&ask);
            break;
        }
        let n = serde_json::from_slice::<serde_json::Value>(&ask.stdout).unwrap()["trial"]
            .as_u64()
            .unwrap();
        let loss = format!("{{\"loss\": {}.25}}", n);
        let tell = d.cli(&["tell", "ext", &n.to_string(), "--metrics", &loss]);
        if !tell.status.success() {
            error = text(&tell);
            unrecorded = Some(n);
            break;
        }
        acked.push(n);
    }
    assert!(
        !error.is_empty(),
        "500 asks and tells fitted on a full disk"
    );
    assert!(
        error.contains("No space left on device")
            && error.contains("the disk holding the state directory is full"),
        "unclear error: {error}"
    );
    eprintln!(
        "{} tell(s) acknowledged (5 before the disk was filled); then: {}",
        acked.len(),
        error.trim()
    );

    // The daemon stops by itself, with a reason.
    let code = d.wait_exit(Duration::from_secs(30));
    assert_eq!(
        code,
        Some(1),
        "daemon did not stop with 1; log:\n{}",
        d.log()
    );
    assert!(
        d.log().contains("could not be written (is its disk full?)"),
        "{}",
        d.log()
    );
    // A start on the still-full disk fails and says why.
    let out = Command::new(common::bin())
        .args(["serve", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("No space left on device"),
        "{}",
        text(&out)
    );

    // Space freed: everything acknowledged is there, and the unrecorded tell lands now.
    std::fs::remove_file(&filler).unwrap();
    d.spawn();
    let trials = d.trials("ext");
    for n in &acked {
        let t = &trials[*n as usize];
        assert_eq!(t["state"], "complete", "{t}");
        assert_eq!(t["metrics"]["loss"].as_f64(), Some(*n as f64 + 0.25), "{t}");
    }
    if let Some(n) = unrecorded {
        assert_eq!(
            trials[n as usize]["state"], "running",
            "{}",
            trials[n as usize]
        );
        let loss = format!("{{\"loss\": {}.25}}", n);
        let out = d.cli(&["tell", "ext", &n.to_string(), "--metrics", &loss]);
        assert!(out.status.success(), "retried tell: {}", text(&out));
    }
    // The command study, interrupted by the stop, runs to completion.
    assert_eq!(d.wait_study("cmd", Duration::from_secs(120)), "completed");
    assert_eq!(common::count_state(&d.trials("cmd"), "complete"), 6);
}
