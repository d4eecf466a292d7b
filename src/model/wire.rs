//! The wire types of the daemon's HTTP/JSON API (documented in `docs/API.md`): the JSON
//! requests it takes and the views it returns. The server is `crate::daemon::api`, the CLI's
//! client `crate::client::http`; both use these types, so they cannot disagree.

use crate::model::openapi;
use quantune_state::{AttemptRecord, TrialRecord};
use quantune_strategies::Params;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A trial as the API and `--format json` show it (docs/CLI.md, "Trial object").
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct TrialView {
    /// Trial number.
    pub trial: u64,
    /// State name (docs/TRIALS.md).
    pub state: String,
    /// Parameters.
    #[schemars(with = "openapi::ParamsSchema")]
    pub params: Params,
    /// Final numeric metrics.
    pub metrics: BTreeMap<String, f64>,
    /// Final non-numeric values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub info: BTreeMap<String, String>,
    /// Current (or last) attempt, from 1.
    pub attempt: u32,
    /// Why it ended as it did.
    pub reason: Option<String>,
    /// Last 4 KiB of stderr of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr_tail: Option<String>,
    /// Earlier attempts that failed or were interrupted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<openapi::AnyObject>")]
    pub failed_attempts: Vec<AttemptRecord>,
    /// `local` or `external`.
    pub executor: Option<String>,
    /// Slot it runs on.
    pub slot: Option<String>,
    /// The executor's handle (Slurm job id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The executor's own state of a running trial (Slurm `PENDING`, `RUNNING`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_state: Option<String>,
    /// Seconds from start to finish of the last attempt.
    pub duration_s: Option<f64>,
    /// GPU-seconds and utilization samples (trials with `gpus > 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<openapi::AnyObject>")]
    pub gpu: Option<quantune_state::GpuUsage>,
    /// Unix time created.
    pub created_at: f64,
    /// Unix time the last attempt started.
    pub started_at: Option<f64>,
    /// Unix time it finished.
    pub finished_at: Option<f64>,
    /// A result imported from a file (`quantune import STUDY FILES…`), not run here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub imported: bool,
    /// A user's note (`quantune note STUDY TRIAL "text"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl From<&TrialRecord> for TrialView {
    fn from(t: &TrialRecord) -> Self {
        TrialView {
            trial: t.number,
            state: t.state.as_str().to_string(),
            params: (*t.params).clone(),
            metrics: (*t.metrics).clone(),
            info: (*t.info).clone(),
            attempt: t.attempt,
            reason: t.reason.clone(),
            stderr_tail: t.stderr_tail.clone(),
            failed_attempts: t.attempts.clone(),
            executor: t.executor.clone(),
            slot: t.slot.clone(),
            job_id: t.job_id.clone(),
            job_state: None,
            duration_s: t.duration(),
            gpu: t.gpu.clone(),
            created_at: t.created_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            imported: t.imported,
            note: t.note.clone(),
        }
    }
}

/// A study as `studies` and `status` show it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct StudySummary {
    /// Name.
    pub name: String,
    /// `running | paused | completed | failed | cancelled`.
    pub state: String,
    /// Why it is in that state, when that needs saying.
    pub message: Option<String>,
    /// Free text from the study file.
    pub description: Option<String>,
    /// Labels (`[study] tags`, `quantune tag`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// A user's notes on the study (`[study] notes`, `quantune note`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Strategy kind.
    pub strategy: String,
    /// `command` or `external`.
    pub workload: String,
    /// `budget.max_trials`.
    pub max_trials: u64,
    /// `budget.parallel`.
    pub parallel: u64,
    /// Trials created so far (imported results not counted: they cost no budget).
    pub trials: u64,
    /// Results imported from files (finished trials outside the budget).
    #[serde(default)]
    pub imported: u64,
    /// Trials per state.
    pub counts: BTreeMap<String, u64>,
    /// The best feasible trial so far.
    pub best: Option<TrialView>,
    /// Unix time created.
    pub created_at: f64,
    /// Unix time of the last state change.
    pub updated_at: f64,
    /// Budget used so far.
    #[serde(default)]
    pub budget: BudgetUsage,
    /// Why no trial starts although the study has room (e.g. no GPU has the free memory
    /// `trial.gpu_memory` asks for); absent when nothing waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// What the daemon noticed while the study ran, each said once (a pruner metric that no
    /// report carries); absent when nothing was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The objective metrics, in the study file's order (what tables show by default).
    #[serde(default)]
    pub objectives: Vec<String>,
    /// The constraint metrics, in the study file's order.
    #[serde(default)]
    pub constraints: Vec<String>,
}

impl StudySummary {
    /// The metrics tables show by default: the objectives, then the constraints.
    pub fn key_metrics(&self) -> Vec<String> {
        let mut m = self.objectives.clone();
        m.extend(self.constraints.iter().cloned());
        m
    }
}

/// How much of a study's time budgets is used.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct BudgetUsage {
    /// Seconds since the study was created (until it finished).
    pub wall_s: f64,
    /// `budget.max_wall` in seconds.
    pub max_wall_s: Option<f64>,
    /// GPU-hours spent by every attempt so far.
    pub gpu_hours: f64,
    /// `budget.max_gpu_hours`.
    pub max_gpu_hours: Option<f64>,
}

/// Body of `POST /v1/studies`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The study file's TOML text.
    pub source: String,
    /// The file name, used in error messages.
    #[serde(default)]
    pub file: Option<String>,
    /// Absolute directory relative paths are resolved against (the file's directory).
    #[serde(default)]
    pub base_dir: Option<String>,
}

/// Body of `POST …/report`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// The step.
    pub step: u64,
    /// The values.
    pub metrics: BTreeMap<String, f64>,
}

/// Body of `POST …/tell`: exactly one of the three.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TellRequest {
    /// Final metrics.
    #[serde(default)]
    pub metrics: Option<BTreeMap<String, f64>>,
    /// Failure reason.
    #[serde(default)]
    pub failed: Option<String>,
    /// Infeasibility reason.
    #[serde(default)]
    pub infeasible: Option<String>,
}

/// Reply of `ask`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct AskReply {
    /// Trial number.
    pub trial: u64,
    /// Its parameters.
    #[schemars(with = "openapi::ParamsSchema")]
    pub params: Params,
}

/// Reply of `GET /v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct DaemonStatus {
    /// quantune version.
    pub version: String,
    /// Daemon pid.
    pub pid: u32,
    /// State directory.
    pub state_dir: String,
    /// Slot usage.
    #[schemars(with = "openapi::AnyObject")]
    pub slots: crate::gpu::slots::SlotUsage,
    /// GPUs found.
    #[schemars(with = "openapi::AnyObject")]
    pub gpus: crate::gpu::GpuDiscovery,
    /// Each local GPU's last utilization sample and the trial holding it.
    #[serde(default)]
    #[schemars(with = "Vec<openapi::AnyObject>")]
    pub gpu_usage: Vec<crate::gpu::monitor::GpuState>,
    /// Every study.
    pub studies: Vec<StudySummary>,
}

/// Which output of a trial `GET …/trials/{n}/logs` reads.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// The trial's standard output.
    Stdout,
    /// The trial's standard error (the default: tracebacks are there).
    #[default]
    Stderr,
}

impl LogStream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// Reply of `GET /v1/studies/{name}/trials/{n}/logs`: one piece of an attempt's stdout or
/// stderr file, from `offset`. Read on from `next_offset` until it reaches `size` (and, to
/// follow a running attempt, poll while `running`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct TrialLog {
    /// The trial number.
    pub trial: u64,
    /// The attempt (from 1).
    pub attempt: u32,
    /// `stdout` or `stderr`.
    pub stream: LogStream,
    /// Where `text` starts in the file, in bytes.
    pub offset: u64,
    /// Where the next piece starts.
    pub next_offset: u64,
    /// The file's size now.
    pub size: u64,
    /// The bytes read, as UTF-8 (invalid sequences replaced; never cut inside a character).
    pub text: String,
    /// Whether the attempt may still write (it runs or has yet to start).
    pub running: bool,
    /// Whether the file exists yet (an attempt that has not started, or failed to, has none).
    pub exists: bool,
}

/// Body of `POST /v1/studies/{name}/extend`: the budgets to raise (at least one). A
/// completed study runs again; see docs/API.md.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// New `budget.max_trials` (not below the current one).
    #[serde(default)]
    pub max_trials: Option<u64>,
    /// New `budget.max_wall`, a duration such as `"12h"` (from the study's creation).
    #[serde(default)]
    pub max_wall: Option<String>,
    /// New `budget.max_gpu_hours`.
    #[serde(default)]
    pub max_gpu_hours: Option<f64>,
}

/// Body of `POST /v1/studies/{name}/tags`: tags to add and to remove.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    /// Tags to add (present ones are kept once).
    #[serde(default)]
    pub add: Vec<String>,
    /// Tags to remove (absent ones are ignored).
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Body of `POST /v1/studies/{name}/note` and `POST …/trials/{n}/note`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    /// The note; an empty one removes it.
    pub note: String,
}

/// Body of `POST /v1/studies/{name}/copy`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyRequest {
    /// The new study's name.
    pub to: String,
}

/// Reply of `DELETE /v1/studies/{name}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct DeleteReply {
    /// The study deleted.
    pub name: String,
    /// How many trials it had.
    pub trials: u64,
}
