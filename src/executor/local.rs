//! The local executor: each attempt is a child process started from argv (never a shell) in a
//! box of its own (a cgroup or a subreaper's process tree, see [`super::contain`]), speaking
//! the trial protocol (docs/TRIALS.md) through its environment and a metrics file. Timeouts and cancellation
//! signal everything in the box: SIGTERM, then SIGKILL after a grace period; however the
//! attempt ends, it is over (and its slot free) only when the box is empty. Its stdout and
//! stderr go through pipes to capped log files ([`LOG_LIMIT`]).

use super::contain::{self, Containment, TRACK_INTERVAL};
use super::metrics_tail::MetricsTail;
use super::protocol::{self, Exit};
use super::{AttemptOutcome, CancelReason, ExecEvent, Executor, Launch};
use crate::model::study::Workload;
use nix::sys::signal::Signal;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

/// How much of stderr a trial keeps.
pub const STDERR_TAIL_BYTES: usize = 4096;

/// How often a running trial's metrics file is read for new intermediate reports.
const TAIL_INTERVAL: Duration = Duration::from_millis(250);

/// The most of a trial's stdout, and of its stderr, kept in its log files (64 MiB each);
/// beyond it the file ends with a note and the output is dropped.
pub const LOG_LIMIT: u64 = 64 << 20;

/// How long the end of an attempt waits for its output pipes to close once every process of
/// the trial is gone.
const PIPE_DRAIN: Duration = Duration::from_millis(500);

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
        // By what the attempt's box recorded (its cgroup, or its processes with their start
        // times), not by anything the trial could have changed.
        let killed = contain::reap_recorded(&absolute(run_dir), attempt);
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
    let argv = match &launch.spec.workload {
        // A built-in workload is this binary run as a trial (src/workload).
        Workload::Builtin(name) => {
            let built = match (launch.spec.workload.builtin(), launch.spec.builtin_settings()) {
                (Some(b), Some(settings)) => b.argv(settings, &launch.params, cache_dir),
                _ => Err(format!(
                    "this quantune has no built-in workload \"{name}\" (or the study's settings for it are missing)"
                )),
            };
            match built {
                Ok(a) => a,
                Err(e) => return fail(e),
            }
        }
        _ => match protocol::argv(
            &launch.spec.command,
            &launch.params,
            &launch.study,
            launch.trial,
        ) {
            Ok(a) => a,
            Err(e) => return fail(format!("bad command template: {e}")),
        },
    };
    let mut bx = match Containment::current().and_then(|c| {
        c.open_box(&run_dir, launch.attempt)
            .map_err(|e| format!("cannot set up the trial's {} box: {e}", c.kind()))
    }) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let cuda: Vec<String> = launch.slot.gpus.iter().map(u32::to_string).collect();
    // A program that cannot be found fails here, with the PATH it was looked for on; the
    // spawn then needs no search of its own.
    let path = crate::model::preflight::search_path(&launch.spec.env);
    let program =
        match crate::model::preflight::find_program(&argv[0], &launch.spec.working_dir, &path) {
            Ok(p) => p,
            Err(why) => {
                return fail(format!(
                    "cannot start {:?} in {}: {why}",
                    argv[0],
                    launch.spec.working_dir.display()
                ))
            }
        };
    let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> = launch
        .spec
        .env
        .iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    for (k, v) in [
        ("QUANTUNE_STUDY", launch.study.clone()),
        ("QUANTUNE_TRIAL", launch.trial.to_string()),
        ("QUANTUNE_ATTEMPT", launch.attempt.to_string()),
        ("QUANTUNE_PARAMS", protocol::params_json(&launch.params)),
        ("CUDA_VISIBLE_DEVICES", cuda.join(",")),
    ] {
        env.push((k.into(), v.into()));
    }
    env.push(("QUANTUNE_METRICS_FILE".into(), metrics_path.clone().into()));
    let mut child = match bx.spawn(&program, &argv, env, &launch.spec.working_dir) {
        Ok(c) => c,
        Err(e) => {
            return fail(format!(
                "cannot start {:?} in {}: {e}",
                argv[0],
                launch.spec.working_dir.display()
            ))
        }
    };
    let stdout_task = child
        .stdout
        .take()
        .map(|out| tokio::spawn(capture(out, stdout_path, LOG_LIMIT)));
    let stderr_task = child
        .stderr
        .take()
        .map(|err| tokio::spawn(capture(err, stderr_path, LOG_LIMIT)));

    let mut tail = MetricsTail::new(metrics_path.clone());
    // A timeout too large for a Duration (e.g. "1000000000y") means none.
    let timeout = Duration::try_from_secs_f64(launch.spec.timeout_secs).unwrap_or(Duration::MAX);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(TRACK_INTERVAL);
    ticker.tick().await;
    let mut last_tail = std::time::Instant::now();
    enum End {
        Exited(std::process::ExitStatus),
        WaitError(String),
        TimedOut,
        Cancelled(CancelReason),
        Refused(String),
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
            _ = ticker.tick() => {
                bx.track();
                if last_tail.elapsed() >= TAIL_INTERVAL {
                    last_tail = std::time::Instant::now();
                    if let Err(e) = tail.poll(&launch, events).await {
                        break End::Refused(e);
                    }
                }
            }
        }
    };
    if matches!(end, End::TimedOut | End::Cancelled(_) | End::Refused(_)) {
        // SIGTERM to everything in the box; SIGKILL (below) once the first process has
        // exited or after the grace period.
        bx.signal_all(Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            bx.signal_all(Signal::SIGKILL);
        }
    }
    // Whatever the first process did, nothing of the trial outlives it: the attempt is over
    // (and its slot free) only once the box is empty.
    bx.kill_all().await;
    let _ = child.wait().await;
    drop(bx);
    // Every writer is gone, so the pipes are at their end; a process that escaped the box
    // anyway may keep one open, and is not waited for.
    let stderr_tail = match stderr_task {
        Some(t) => tokio::time::timeout(PIPE_DRAIN, t)
            .await
            .ok()
            .and_then(|r| r.ok()),
        None => None,
    };
    if let Some(t) = stdout_task {
        let _ = tokio::time::timeout(PIPE_DRAIN, t).await;
    }
    let stderr_tail = stderr_tail.filter(|s| !s.is_empty());
    let metrics = tail.finish(&launch, events).await;
    match end {
        End::TimedOut => AttemptOutcome::Failed {
            reason: format!(
                "timeout after {}",
                crate::model::duration::format_secs(launch.spec.timeout_secs)
            ),
            stderr_tail,
        },
        End::Cancelled(why) => AttemptOutcome::Cancelled { why, stderr_tail },
        End::Refused(reason) => AttemptOutcome::Failed {
            reason,
            stderr_tail,
        },
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
            protocol::outcome_of(exit, metrics, stderr_tail)
        }
    }
}

/// Copies a trial's stdout or stderr from its pipe to `path`, keeping the first `limit`
/// bytes in the file (then a note saying the rest was dropped); returns the last
/// [`STDERR_TAIL_BYTES`] of everything it read. Memory is constant however much comes. The
/// file is written directly (a write to the page cache does not block for long), so that the
/// end of an attempt does not wait on the blocking pool.
async fn capture(mut from: impl tokio::io::AsyncRead + Unpin, path: PathBuf, limit: u64) -> String {
    use std::io::Write;
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(STDERR_TAIL_BYTES);
    let mut file = std::fs::File::create(&path).ok();
    let mut written: u64 = 0;
    let mut dropped: u64 = 0;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let keep = (limit.saturating_sub(written)).min(n as u64) as usize;
                if let Some(f) = file.as_mut() {
                    if keep > 0 {
                        let _ = f.write_all(&buf[..keep]);
                    }
                    if keep < n && dropped == 0 {
                        let note = format!(
                            "\n[quantune: this log reached its limit of {} MiB; the rest of the output is dropped (the trial's record keeps its last {} bytes)]\n",
                            limit >> 20,
                            STDERR_TAIL_BYTES
                        );
                        let _ = f.write_all(note.as_bytes());
                    }
                }
                written += keep as u64;
                dropped += (n - keep) as u64;
                tail.extend(&buf[..n]);
                while tail.len() > STDERR_TAIL_BYTES {
                    tail.pop_front();
                }
            }
        }
    }
    if dropped > 0 {
        tracing::warn!(
            "{}: {dropped} byte(s) of trial output over the {} MiB limit dropped",
            path.display(),
            limit >> 20
        );
    }
    let bytes: Vec<u8> = tail.into_iter().collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
