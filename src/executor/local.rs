//! The local executor: each attempt is a child process started from argv (never a shell) in its
//! own process group, speaking the trial protocol (docs/TRIALS.md) through its environment and a
//! metrics file. Timeouts and cancellation signal the whole group: SIGTERM, then SIGKILL after
//! a grace period.

use super::metrics_tail::MetricsTail;
use super::protocol::{self, Exit};
use super::{AttemptOutcome, CancelReason, ExecEvent, Executor, Launch};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::{HashMap, VecDeque};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

/// How much of stderr a trial keeps.
pub const STDERR_TAIL_BYTES: usize = 4096;

/// How often a running trial's metrics file is read for new intermediate reports.
const TAIL_INTERVAL: Duration = Duration::from_millis(250);

/// Cancel switches of the attempts in flight, by (study, trial).
type CancelSwitches = HashMap<(String, u64), watch::Sender<Option<CancelReason>>>;

/// Runs attempts as local child processes.
pub struct LocalExecutor {
    /// Where events go (the scheduler's inbox).
    events: mpsc::UnboundedSender<ExecEvent>,
    /// Cancel switches of the attempts in flight, by (study, trial).
    running: Arc<Mutex<CancelSwitches>>,
    /// Time between SIGTERM and SIGKILL.
    kill_grace: Duration,
    /// Where built-in workloads keep what they build once (the state directory's `cache/`).
    cache_dir: PathBuf,
}

impl LocalExecutor {
    /// An executor sending its events to `events`, waiting `kill_grace` between SIGTERM and SIGKILL.
    pub fn new(events: mpsc::UnboundedSender<ExecEvent>, kill_grace: Duration) -> LocalExecutor {
        LocalExecutor {
            events,
            running: Arc::default(),
            kill_grace,
            cache_dir: std::env::temp_dir().join("quantune-cache"),
        }
    }

    /// Sets where built-in workloads cache what they build once (default: a folder in the
    /// system's temp directory).
    pub fn with_cache_dir(mut self, dir: PathBuf) -> LocalExecutor {
        self.cache_dir = dir;
        self
    }
}

impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    fn start(&self, launch: Launch) {
        let (tx, rx) = watch::channel(None);
        let key = (launch.study.clone(), launch.trial);
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), tx);
        let events = self.events.clone();
        let running = self.running.clone();
        let grace = self.kill_grace;
        let cache_dir = self.cache_dir.clone();
        tokio::spawn(async move {
            let (study, trial, attempt) = (launch.study.clone(), launch.trial, launch.attempt);
            // Supervised in a task of its own: should it panic, the scheduler still hears that
            // the attempt is over (and frees its slot) instead of waiting forever.
            let tx = events.clone();
            let outcome =
                match tokio::spawn(
                    async move { run_attempt(launch, rx, grace, &cache_dir, &tx).await },
                )
                .await
                {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        tracing::error!(%study, trial, attempt, "trial supervisor failed: {e}");
                        AttemptOutcome::Failed {
                            reason: format!("internal error while supervising the trial: {e}"),
                            stderr_tail: None,
                        }
                    }
                };
            running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            let _ = events.send(ExecEvent::Finished {
                study,
                trial,
                attempt,
                outcome,
            });
        });
    }

    fn cancel(&self, study: &str, trial: u64, why: CancelReason) {
        if let Some(tx) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(study.to_string(), trial))
        {
            let _ = tx.send(Some(why));
        }
    }

    fn in_flight(&self) -> usize {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn reap(&self, study: &str, trial: u64, attempt: u32, run_dir: &Path) {
        // An attempt's processes (its descendants included, whatever group or session they
        // moved to) carry its metrics file in their environment: a path unique to this state
        // directory, study, trial and attempt.
        let want = {
            let mut v = b"QUANTUNE_METRICS_FILE=".to_vec();
            v.extend_from_slice(
                metrics_path(&absolute(run_dir), attempt)
                    .as_os_str()
                    .as_bytes(),
            );
            v
        };
        let own_group = nix::unistd::getpgrp();
        let mut killed = 0;
        for (pid, pgrp) in processes_with_env(&want) {
            if pgrp != own_group && pgrp.as_raw() > 1 {
                let _ = killpg(pgrp, Signal::SIGKILL);
            }
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            killed += 1;
        }
        if killed > 0 {
            tracing::warn!(
                study,
                trial,
                attempt,
                "killed {killed} leftover process(es) of the interrupted attempt"
            );
        }
    }
}

/// `path` made absolute against the current directory: a trial runs in its own working
/// directory, so every path it is handed must be absolute.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The metrics file of one attempt.
fn metrics_path(run_dir: &Path, attempt: u32) -> PathBuf {
    run_dir.join(format!("metrics.{attempt}.jsonl"))
}

/// Live processes (pid, process group) whose environment holds the entry `want`
/// (`NAME=value`). Reads `/proc`; processes of other users are not readable and not listed.
fn processes_with_env(want: &[u8]) -> Vec<(Pid, Pid)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|var| var == want) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        if fields.first() == Some(&"Z") {
            continue;
        }
        if let Some(pgrp) = fields.get(2).and_then(|g| g.parse::<i32>().ok()) {
            found.push((Pid::from_raw(pid), Pid::from_raw(pgrp)));
        }
    }
    found
}

async fn run_attempt(
    launch: Launch,
    mut cancel: watch::Receiver<Option<CancelReason>>,
    grace: Duration,
    cache_dir: &Path,
    events: &mpsc::UnboundedSender<ExecEvent>,
) -> AttemptOutcome {
    let fail = |reason: String| AttemptOutcome::Failed {
        reason,
        stderr_tail: None,
    };
    // The trial runs in its working directory: the metrics path it is given must be absolute.
    let run_dir = absolute(&launch.run_dir);
    if let Err(e) = tokio::fs::create_dir_all(&run_dir).await {
        return fail(format!(
            "cannot create the trial directory {}: {e}",
            run_dir.display()
        ));
    }
    let metrics_path = metrics_path(&run_dir, launch.attempt);
    let stdout_path = run_dir.join(format!("stdout.{}.log", launch.attempt));
    let stderr_path = run_dir.join(format!("stderr.{}.log", launch.attempt));
    // A fresh metrics file per attempt: a retry never sees its predecessor's lines.
    if let Err(e) = std::fs::File::create(&metrics_path) {
        return fail(format!(
            "cannot create the metrics file {}: {e}",
            metrics_path.display()
        ));
    }
    let stdout = match std::fs::File::create(&stdout_path) {
        Ok(f) => f,
        Err(e) => return fail(format!("cannot create {}: {e}", stdout_path.display())),
    };
    let argv = match &launch.spec.qat {
        // The built-in workload is this binary run as a trial (src/workload).
        Some(qat) => match crate::workload::qat::argv(qat, &launch.params, cache_dir) {
            Ok(a) => a,
            Err(e) => return fail(e),
        },
        None => match protocol::argv(
            &launch.spec.command,
            &launch.params,
            &launch.study,
            launch.trial,
        ) {
            Ok(a) => a,
            Err(e) => return fail(format!("bad command template: {e}")),
        },
    };
    let cuda: Vec<String> = launch.slot.gpus.iter().map(u32::to_string).collect();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&launch.spec.working_dir)
        .envs(&launch.spec.env)
        .env("QUANTUNE_STUDY", &launch.study)
        .env("QUANTUNE_TRIAL", launch.trial.to_string())
        .env("QUANTUNE_ATTEMPT", launch.attempt.to_string())
        .env("QUANTUNE_PARAMS", protocol::params_json(&launch.params))
        .env("QUANTUNE_METRICS_FILE", &metrics_path)
        .env("CUDA_VISIBLE_DEVICES", cuda.join(","))
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return fail(format!(
                "cannot start {:?} in {}: {e}",
                argv[0],
                launch.spec.working_dir.display()
            ))
        }
    };
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let stderr_task = child.stderr.take().map(|mut err| {
        let path = stderr_path.clone();
        tokio::spawn(async move {
            let mut tail: VecDeque<u8> = VecDeque::with_capacity(STDERR_TAIL_BYTES);
            let mut file = tokio::fs::File::create(&path).await.ok();
            let mut buf = [0u8; 8192];
            loop {
                match err.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Some(f) = file.as_mut() {
                            use tokio::io::AsyncWriteExt;
                            let _ = f.write_all(&buf[..n]).await;
                        }
                        tail.extend(&buf[..n]);
                        while tail.len() > STDERR_TAIL_BYTES {
                            tail.pop_front();
                        }
                    }
                }
            }
            let bytes: Vec<u8> = tail.into_iter().collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
    });

    let mut tail = MetricsTail::new(metrics_path.clone());
    // A timeout too large for a Duration (e.g. "1000000000y") means none.
    let timeout = Duration::try_from_secs_f64(launch.spec.timeout_secs).unwrap_or(Duration::MAX);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(TAIL_INTERVAL);
    ticker.tick().await;
    enum End {
        Exited(std::process::ExitStatus),
        WaitError(String),
        TimedOut,
        Cancelled(CancelReason),
    }
    let end = loop {
        tokio::select! {
            status = child.wait() => break match status {
                Ok(s) => End::Exited(s),
                Err(e) => End::WaitError(e.to_string()),
            },
            _ = &mut deadline => break End::TimedOut,
            changed = cancel.changed() => {
                if changed.is_err() { continue; }
                let why = *cancel.borrow();
                if let Some(why) = why {
                    // An attempt that has already exited keeps its own outcome.
                    if let Ok(Some(status)) = child.try_wait() {
                        break End::Exited(status);
                    }
                    break End::Cancelled(why);
                }
            }
            _ = ticker.tick() => tail.poll(&launch, events).await,
        }
    };
    if matches!(end, End::TimedOut | End::Cancelled(_)) {
        terminate_group(pgid, &mut child, grace).await;
    }
    // Whatever the leader did, nothing of the trial outlives it.
    if let Some(pg) = pgid {
        let _ = killpg(pg, Signal::SIGKILL);
    }
    let stderr_tail = match stderr_task {
        Some(t) => tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .ok()
            .and_then(|r| r.ok()),
        None => None,
    };
    let stderr_tail = stderr_tail.filter(|s| !s.is_empty());
    tail.poll(&launch, events).await;
    match end {
        End::TimedOut => AttemptOutcome::Failed {
            reason: format!(
                "timeout after {}",
                crate::model::duration::format_secs(launch.spec.timeout_secs)
            ),
            stderr_tail,
        },
        End::Cancelled(why) => AttemptOutcome::Cancelled { why, stderr_tail },
        End::WaitError(e) => AttemptOutcome::Failed {
            reason: format!("lost the trial process: {e}"),
            stderr_tail,
        },
        End::Exited(status) => {
            use std::os::unix::process::ExitStatusExt;
            let exit = match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(sig)) => Exit::Signal(sig),
                _ => Exit::Code(-1),
            };
            let text = std::fs::read_to_string(&metrics_path).unwrap_or_default();
            protocol::outcome(exit, &text, stderr_tail)
        }
    }
}

/// SIGTERM to the group, then SIGKILL after `grace` if the leader has not exited.
async fn terminate_group(pgid: Option<Pid>, child: &mut tokio::process::Child, grace: Duration) {
    let Some(pg) = pgid else { return };
    let _ = killpg(pg, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = killpg(pg, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}
