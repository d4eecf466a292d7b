//! Executors run one attempt of a trial somewhere and report what happened. The scheduler only
//! sees this interface: start an attempt, cancel it, and a stream of [`ExecEvent`]s back.

pub mod contain;
pub mod local;
pub mod metrics_tail;
pub mod protocol;
pub mod ray;
pub mod slurm;
pub mod spawn;

use crate::gpu::slots::Slot;
use crate::model::study::TrialSpec;
use quantune_strategies::Params;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Everything needed to start one attempt of one trial.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The study name.
    pub study: String,
    /// The trial number.
    pub trial: u64,
    /// The attempt (from 1).
    pub attempt: u32,
    /// The trial's parameters.
    pub params: Params,
    /// How to run it.
    pub spec: Arc<TrialSpec>,
    /// Where it runs (GPU indices for `CUDA_VISIBLE_DEVICES`).
    pub slot: Slot,
    /// Directory for this trial's metrics and log files.
    pub run_dir: PathBuf,
}

/// Why the scheduler stops a running attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// A user cancelled the study (or the study stopped).
    User,
    /// A pruner stopped it.
    Pruned,
    /// The daemon is shutting down: the attempt is interrupted.
    Shutdown,
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    /// Exit 0 with a final metrics line.
    Complete {
        /// Numeric final metrics.
        metrics: BTreeMap<String, f64>,
        /// Non-numeric final values.
        info: BTreeMap<String, String>,
    },
    /// The trial declared its configuration infeasible.
    Infeasible(String),
    /// Non-zero exit, signal, timeout, malformed or missing metrics, failure to start.
    Failed {
        /// What went wrong.
        reason: String,
        /// The last 4 KiB of stderr.
        stderr_tail: Option<String>,
    },
    /// Stopped by the scheduler.
    Cancelled {
        /// Why.
        why: CancelReason,
        /// The last 4 KiB of stderr.
        stderr_tail: Option<String>,
    },
}

/// What an executor tells the scheduler.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecEvent {
    /// An intermediate report line.
    Report {
        /// Study.
        study: String,
        /// Trial.
        trial: u64,
        /// Attempt it came from.
        attempt: u32,
        /// Step.
        step: u64,
        /// Values.
        values: BTreeMap<String, f64>,
    },
    /// The executor's handle for a started attempt (a Slurm job id); recorded durably.
    Started {
        /// Study.
        study: String,
        /// Trial.
        trial: u64,
        /// Attempt.
        attempt: u32,
        /// The job id.
        job_id: String,
    },
    /// The executor's own state of an attempt changed (e.g. Slurm PENDING → RUNNING).
    JobState {
        /// Study.
        study: String,
        /// Trial.
        trial: u64,
        /// Attempt.
        attempt: u32,
        /// The state, in the executor's words.
        state: String,
    },
    /// The attempt is over.
    Finished {
        /// Study.
        study: String,
        /// Trial.
        trial: u64,
        /// Attempt.
        attempt: u32,
        /// How it ended.
        outcome: AttemptOutcome,
    },
}

/// Somewhere trials run.
pub trait Executor: Send + Sync {
    /// The name stored with each trial (`local`, `slurm`).
    fn name(&self) -> &'static str;
    /// Starts an attempt; its events arrive on the channel the executor was built with.
    fn start(&self, launch: Launch);
    /// Asks a running attempt to stop; a `Finished` event with `Cancelled` follows.
    fn cancel(&self, study: &str, trial: u64, why: CancelReason);
    /// Attempts in flight.
    fn in_flight(&self) -> usize;
    /// Ends whatever is left of an attempt that a previous process started and lost track of
    /// (the daemon was killed); `run_dir` is the directory its [`Launch`] had. The default
    /// does nothing.
    fn reap(&self, _study: &str, _trial: u64, _attempt: u32, _run_dir: &std::path::Path) {}
    /// Whether attempts go on while the daemon is down (then a restart re-attaches to them
    /// instead of failing them as interrupted).
    fn survives_restart(&self) -> bool {
        false
    }
    /// Follows an attempt a previous daemon process started (`job_id` as recorded, if it
    /// was). Only called when [`Executor::survives_restart`].
    fn attach(&self, _launch: Launch, _job_id: Option<String>) {}
    /// Where an attempt's `stdout.K.log` and `stderr.K.log` are, given the directory under the
    /// daemon's state dir a [`Launch`] starts with (`quantune logs`); `None` when this executor
    /// keeps the output elsewhere (Ray's job logs). The default is that directory.
    fn logs_dir(&self, study: &str, trial: u64, run_dir: PathBuf) -> Option<PathBuf> {
        let _ = (study, trial);
        Some(run_dir)
    }
}

// ---- the registry: the one place that lists every executor kind ----

/// `[executor.*]` tables of the daemon config: one optional table per remote kind (the local
/// executor needs none).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorsConfig {
    /// `[executor.slurm]`: run `trial.executor = "slurm"` studies as Slurm jobs.
    pub slurm: Option<slurm::SlurmConfig>,
    /// `[executor.ray]`: run `trial.executor = "ray"` studies as Ray jobs.
    pub ray: Option<ray::RayConfig>,
}

/// Every `trial.executor` name, and whether trials of that kind run on this machine (only
/// those may run the daemon's own binary, `builtin:qat-bench`).
pub const KINDS: &[(&str, bool)] = &[("local", true), ("slurm", false), ("ray", false)];

/// The executors a daemon has: the local one always, the others when configured. `kill_grace`
/// is how long a stopped local trial gets between SIGTERM and SIGKILL.
pub fn build(
    cfg: ExecutorsConfig,
    events: mpsc::UnboundedSender<ExecEvent>,
    state_dir: &std::path::Path,
    kill_grace: std::time::Duration,
    tasks: &crate::tasks::Tasks,
) -> Result<Vec<Arc<dyn Executor>>, String> {
    let mut executors: Vec<Arc<dyn Executor>> = vec![Arc::new(
        local::LocalExecutor::new(events.clone(), kill_grace)
            .with_cache_dir(state_dir.join("cache")),
    )];
    if let Some(c) = cfg.slurm {
        executors.push(Arc::new(slurm::SlurmExecutor::new(
            c,
            events.clone(),
            tasks,
        )?));
    }
    if let Some(c) = cfg.ray {
        executors.push(Arc::new(ray::RayExecutor::new(c, events, tasks)?));
    }
    Ok(executors)
}
