//! The shipped systemd unit and installer, checked with systemd's own tools: `systemd-analyze
//! verify` finds nothing to say, `systemd-analyze security --offline=true` rates the sandbox
//! at most 2.0 ("OK"), the unit starts for real under a systemd user manager (READY=1, STATUS=,
//! a trial in the sandbox, a watchdog restart: `tests/systemd/user_unit.sh`), and
//! `deploy/install.sh` can run twice with the same result.
//!
//! `.ci/run` installs systemd's tools, so in CI (`CI` set) a missing tool is a failure; on a
//! developer machine without them these tests say so and pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `tool` can run here; when not, fails under CI and explains elsewhere.
fn have(tool: &str, why: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!("{tool} is not installed ({why}); `apt-get install systemd` brings it");
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The shipped unit with `ExecStart=` pointing at the binary under test (`verify` checks that
/// the program exists, and /usr/bin/quantune is not installed here).
fn unit_for_test(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("deploy/quantune.service")).unwrap();
    assert!(
        text.contains("ExecStart=/usr/bin/quantune serve --config /etc/quantune/quantune.toml"),
        "the unit must start /usr/bin/quantune serve --config /etc/quantune/quantune.toml"
    );
    let text = text.replace("/usr/bin/quantune", common::bin().to_str().unwrap());
    let p = dir.join("quantune.service");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if !have("systemd-analyze", "needed to check the unit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and other mistakes only warn (exit 0), so an empty stderr is required too.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: exit {:?}\n{stderr}",
        out.status.code()
    );
}

#[test]
fn unit_sandbox_exposure_is_at_most_2() {
    if !have("systemd-analyze", "needed to rate the unit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = common::text(&out);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    let score: f64 = line
        .rsplit(':')
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    eprintln!("{line}");
    assert!(
        score <= 2.0 && line.contains("OK"),
        "exposure {score} > 2.0:\n{text}"
    );
}

#[test]
fn unit_runs_under_a_systemd_user_manager() {
    if !is_root() {
        eprintln!("SKIPPED: the real-unit test needs root (a mount namespace and a tmpfs on /run/systemd/system)");
        return;
    }
    if !Path::new("/lib/systemd/systemd").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "/lib/systemd/systemd missing; .ci/run installs systemd"
        );
        eprintln!("SKIPPED: /lib/systemd/systemd is not installed");
        return;
    }
    let out = Command::new("timeout")
        .args([
            "120",
            "setsid",
            "-w",
            "unshare",
            "-m",
            "--propagation",
            "private",
        ])
        .arg(repo().join("tests/systemd/user_unit.sh"))
        .arg(common::bin())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = common::text(&out);
    eprintln!("{text}");
    assert!(out.status.success(), "user_unit.sh failed:\n{text}");
}

#[test]
fn install_script_is_idempotent() {
    if !is_root() {
        eprintln!("SKIPPED: deploy/install.sh runs as root");
        return;
    }
    // A staged root: the script adds the user and group to copies of the account files.
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    for f in ["passwd", "group", "shadow", "gshadow"] {
        let src = Path::new("/etc").join(f);
        if src.exists() {
            std::fs::copy(&src, etc.join(f)).unwrap();
        } else {
            std::fs::write(etc.join(f), "").unwrap();
        }
    }
    let run = || {
        let out = Command::new("sh")
            .arg(repo().join("deploy/install.sh"))
            .arg("--bin")
            .arg(common::bin())
            .args(["--tcp", "--root"])
            .arg(root.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "install.sh: {}", common::text(&out));
        common::text(&out)
    };
    let snapshot = || {
        [
            "etc/passwd",
            "etc/group",
            "etc/quantune/quantune.toml",
            "etc/quantune/token",
            "etc/systemd/system/quantune.service",
        ]
        .map(|f| std::fs::read(root.path().join(f)).unwrap_or_else(|e| panic!("{f}: {e}")))
    };
    let first = run();
    assert!(first.contains("created user quantune"), "{first}");
    let before = snapshot();
    let second = run();
    assert!(
        second.contains("user quantune exists") && second.contains("kept the existing"),
        "{second}"
    );
    assert_eq!(before, snapshot(), "a second install changed the result");
    let passwd = String::from_utf8(before[0].clone()).unwrap();
    assert_eq!(
        passwd
            .lines()
            .filter(|l| l.starts_with("quantune:"))
            .count(),
        1
    );
    use std::os::unix::fs::PermissionsExt;
    let token = std::fs::metadata(root.path().join("etc/quantune/token")).unwrap();
    assert_eq!(token.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::read(root.path().join("etc/systemd/system/quantune.service")).unwrap(),
        std::fs::read(repo().join("deploy/quantune.service")).unwrap()
    );
    // The installed config is one the daemon accepts.
    let cfg = quantune::daemon::config::DaemonConfig::load(Some(
        &root.path().join("etc/quantune/quantune.toml"),
    ));
    assert!(cfg.is_ok(), "{cfg:?}");
}
