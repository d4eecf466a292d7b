//! The typed records kept in the store, serialized as JSON values inside sled.

use quantune_strategies::{Metrics, Params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Non-numeric values by name (a trial's `info`).
pub type Info = BTreeMap<String, String>;

/// A study's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StudyState {
    /// Trials are being scheduled.
    Running,
    /// No new trials start; running ones go on.
    Paused,
    /// `max_trials` trials have finished (or the design is exhausted).
    Completed,
    /// Stopped after `max_failed` failures (or another fatal problem, see `message`).
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl StudyState {
    /// Whether the study will schedule no more trials.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            StudyState::Completed | StudyState::Failed | StudyState::Cancelled
        )
    }

    /// The name used in JSON and on the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            StudyState::Running => "running",
            StudyState::Paused => "paused",
            StudyState::Completed => "completed",
            StudyState::Failed => "failed",
            StudyState::Cancelled => "cancelled",
        }
    }
}

/// A study as stored: its validated definition (opaque JSON owned by the binary) plus the TOML
/// source it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyRecord {
    /// Unique name (`[a-z0-9_-]`, ≤ 64 chars; validated by the caller).
    pub name: String,
    /// Lifecycle state.
    pub state: StudyState,
    /// The validated study definition, as the binary serialized it.
    pub definition: serde_json::Value,
    /// The TOML text the study was submitted as.
    pub source: String,
    /// Why the study is in its state, when that needs saying (e.g. "10 trials failed").
    pub message: Option<String>,
    /// Unix time (seconds) of creation.
    pub created_at: f64,
    /// Unix time (seconds) of the last state change.
    pub updated_at: f64,
}

impl StudyRecord {
    /// A new running study.
    pub fn new(name: &str, definition: serde_json::Value, source: String, now: f64) -> Self {
        StudyRecord {
            name: name.to_string(),
            state: StudyState::Running,
            definition,
            source,
            message: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A trial's state (docs/TRIALS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    /// Waiting for a slot (new, or re-queued for a retry).
    Queued,
    /// Started on an executor (or handed out by `ask`).
    Running,
    /// Finished with all objective and constraint metrics.
    Complete,
    /// Stopped early by a pruner.
    Pruned,
    /// Failed after its retries.
    Failed,
    /// The trial declared its configuration infeasible.
    Infeasible,
    /// Cancelled by a user or by the study stopping.
    Cancelled,
}

impl TrialState {
    /// Every state.
    pub const ALL: [TrialState; 7] = [
        TrialState::Queued,
        TrialState::Running,
        TrialState::Complete,
        TrialState::Pruned,
        TrialState::Failed,
        TrialState::Infeasible,
        TrialState::Cancelled,
    ];

    /// Whether the trial will not run again.
    pub fn is_finished(self) -> bool {
        !matches!(self, TrialState::Queued | TrialState::Running)
    }

    /// The name used in JSON and on the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Queued => "queued",
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Failed => "failed",
            TrialState::Infeasible => "infeasible",
            TrialState::Cancelled => "cancelled",
        }
    }
}

/// One earlier attempt of a trial that failed and was retried (or interrupted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1-based attempt number.
    pub attempt: u32,
    /// Why it failed (e.g. "exit status 1", "timeout after 2s", "interrupted").
    pub reason: String,
    /// The last 4 KiB of its stderr.
    pub stderr_tail: Option<String>,
    /// Unix time it started.
    pub started_at: Option<f64>,
    /// Unix time it ended.
    pub finished_at: f64,
}

/// A trial as stored. Its maps are shared (`Arc`): the strategy's history points at the same
/// parameters and metrics, and the trials of one import share one `info`; change them with
/// `Arc::make_mut`. Stored as plain JSON maps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// The study it belongs to.
    pub study: String,
    /// Its number within the study, from 0, never reused.
    pub number: u64,
    /// Its state.
    pub state: TrialState,
    /// Its parameters (fixed for the trial's life, retries included).
    #[serde(with = "shared")]
    pub params: Arc<Params>,
    /// Final numeric metrics (empty until complete).
    #[serde(with = "shared")]
    pub metrics: Arc<Metrics>,
    /// Final non-numeric values the trial reported (host/GPU descriptions and the like).
    #[serde(default, with = "shared")]
    pub info: Arc<Info>,
    /// Current attempt, from 1.
    pub attempt: u32,
    /// Why it ended as it did (failed, infeasible, pruned, cancelled).
    pub reason: Option<String>,
    /// The last 4 KiB of stderr of the last attempt.
    pub stderr_tail: Option<String>,
    /// Earlier attempts that failed.
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
    /// Which executor runs it ("local", "external", "slurm").
    pub executor: Option<String>,
    /// The slot it runs on (e.g. "cpu0", "gpu1").
    pub slot: Option<String>,
    /// The executor's handle for it (Slurm job id, local pid).
    pub job_id: Option<String>,
    /// Unix time created.
    pub created_at: f64,
    /// Unix time the current attempt started.
    pub started_at: Option<f64>,
    /// Unix time it finished.
    pub finished_at: Option<f64>,
    /// Unix time of the last intermediate report (or start), for external-trial timeouts.
    pub last_seen_at: Option<f64>,
    /// Whether the trial was imported rather than run.
    #[serde(default)]
    pub imported: bool,
    /// GPU time and samples of the trial (every attempt), when it ran on GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuUsage>,
    /// A user's note on the trial (`quantune note STUDY TRIAL "text"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a trial cost in GPU time, and how busy its GPUs were while it ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuUsage {
    /// GPUs × seconds over every attempt.
    pub gpu_seconds: f64,
    /// Mean utilization (0–1) over the samples, when NVML was available.
    pub mean_utilization: Option<f64>,
    /// Highest sampled utilization (0–1).
    pub max_utilization: Option<f64>,
    /// Highest sampled memory in use on one of its GPUs, bytes.
    pub peak_memory_bytes: Option<u64>,
    /// Number of samples taken.
    pub samples: u64,
}

impl TrialRecord {
    /// A new queued trial.
    pub fn new(study: &str, number: u64, params: Params, now: f64) -> Self {
        TrialRecord {
            study: study.to_string(),
            number,
            state: TrialState::Queued,
            params: Arc::new(params),
            metrics: Arc::default(),
            info: Arc::default(),
            attempt: 1,
            reason: None,
            stderr_tail: None,
            attempts: Vec::new(),
            executor: None,
            slot: None,
            job_id: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            last_seen_at: None,
            imported: false,
            gpu: None,
            note: None,
        }
    }

    /// Seconds from start to finish, when both are known.
    pub fn duration(&self) -> Option<f64> {
        Some(self.finished_at? - self.started_at?)
    }
}

/// One intermediate report (`{"step": 200, "eval_loss": 2.31}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The step the values were measured at.
    pub step: u64,
    /// The values.
    pub values: BTreeMap<String, f64>,
    /// Unix time it was recorded.
    pub at: f64,
}

/// One entry of the event log: a trial or study state change, appended by the store itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Monotonic sequence number.
    pub seq: u64,
    /// Unix time.
    pub at: f64,
    /// The study concerned.
    pub study: String,
    /// The trial concerned, if any.
    pub trial: Option<u64>,
    /// What happened, e.g. "trial running (attempt 1)" or "study paused".
    pub what: String,
}

/// Serde for a shared map: the map itself, as if it were not shared.
mod shared {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<T: Serialize, S: Serializer>(v: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
        T::serialize(v, s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(d).map(Arc::new)
    }
}
