//! What the scheduler publishes for readers. After every turn of its loop the scheduler
//! replaces the snapshot of each study that changed (cheap: the trial list is shared in
//! copy-on-write chunks), so `studies`, `status`, `trials`, `leaderboard`, `/metrics` and the
//! web page read without waiting for the loop. The leaderboard's ranking is computed by the
//! first reader of a study version and shared until a trial finishes.

use super::study::{gpu_hours, StudyRuntime};
use super::trials::Trials;
use crate::gpu::slots::SlotUsage;
use crate::model::leaderboard::{Ranking, Row};
use crate::model::study::StudyDefinition;
use crate::model::wire::{BudgetUsage, StudySummary, TrialView};
use quantune_state::{StudyRecord, TrialState};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

/// One study as of the end of a turn.
pub struct StudySnapshot {
    /// The stored record (state, message, source).
    pub record: StudyRecord,
    /// The definition.
    pub def: Arc<StudyDefinition>,
    /// Every trial.
    pub trials: Trials,
    /// Executor states of running trials (Slurm PENDING/RUNNING).
    pub job_states: BTreeMap<u64, String>,
    /// Why no trial can start although the study has room.
    pub waiting: Option<String>,
    /// Trials per state.
    pub counts: BTreeMap<String, u64>,
    /// Trials that count against `max_trials`.
    pub budgeted: u64,
    /// Imported trials.
    pub imported: u64,
    /// Trials running on each remote executor (Slurm, Ray), for the slot gauge.
    pub remote_running: BTreeMap<String, u64>,
    /// The running trials, by number.
    running: Vec<u64>,
    /// Attempt seconds of the trials that are not running (for the GPU-hours figure).
    settled_secs: f64,
    /// Whether the study still schedules or waits on trials.
    pub active: bool,
    /// What the daemon noticed about the study while it ran.
    pub warnings: Vec<String>,
    /// The best trial of a single-objective study (kept by the loop; no ranking needed).
    best_single: Option<u64>,
    /// The ranking's cache key.
    rank_version: u64,
    /// The ranking, computed on first use and shared with later snapshots of the same
    /// `rank_version`.
    ranking: Arc<OnceLock<Arc<Ranking>>>,
}

impl StudySnapshot {
    /// The best trade-off: the one definition `status`, `watch`, `run`, the leaderboard, the
    /// web page and `/metrics` use (single objective: the best feasible value, kept by the
    /// loop; several: the ranking's front point with the largest hypervolume contribution).
    pub fn best(&self) -> Option<u64> {
        if self.def.objectives.len() == 1 {
            self.best_single
        } else {
            self.ranking().best
        }
    }

    /// The study's leaderboard order (cached).
    pub fn ranking(&self) -> Arc<Ranking> {
        self.ranking
            .get_or_init(|| Arc::new(Ranking::of(&self.def, self.trials.iter())))
            .clone()
    }

    /// The first `top` leaderboard rows.
    pub fn leaderboard(&self, top: Option<usize>) -> Vec<Row> {
        let mut rows = self.ranking().rows(&self.def, |n| self.trials.get(n), top);
        let best = self.best();
        for r in &mut rows {
            r.best = Some(r.trial.trial) == best;
        }
        rows
    }

    /// The study as `studies`/`status` show it.
    pub fn summary(&self) -> StudySummary {
        let now = crate::model::now();
        let best = self
            .best()
            .and_then(|n| self.trials.get(n))
            .map(TrialView::from);
        let finished = self.record.state.is_finished();
        StudySummary {
            name: self.record.name.clone(),
            state: self.record.state.as_str().to_string(),
            message: self.record.message.clone(),
            description: self.def.description.clone(),
            tags: self.def.tags.clone(),
            notes: self.def.notes.clone(),
            strategy: self.def.strategy.kind.clone(),
            workload: self.def.trial.workload.name(),
            max_trials: self.def.budget.max_trials,
            parallel: self.def.budget.parallel,
            trials: self.budgeted,
            imported: self.imported,
            counts: self.counts.clone(),
            best,
            created_at: self.record.created_at,
            updated_at: self.record.updated_at,
            budget: BudgetUsage {
                wall_s: (if finished {
                    self.record.updated_at
                } else {
                    now
                } - self.record.created_at)
                    .max(0.0),
                max_wall_s: self.def.budget.max_wall_secs,
                gpu_hours: gpu_hours(
                    &self.def,
                    self.settled_secs,
                    self.running.iter().filter_map(|n| self.trials.get(*n)),
                    now,
                ),
                max_gpu_hours: self.def.budget.max_gpu_hours,
            },
            waiting: self.waiting.clone(),
            warnings: self.warnings.clone(),
            objectives: self
                .def
                .objectives
                .iter()
                .map(|o| o.metric.clone())
                .collect(),
            constraints: self
                .def
                .constraints
                .iter()
                .map(|c| c.metric.clone())
                .collect(),
        }
    }

    /// Every trial as the API shows it.
    pub fn trial_views(&self) -> Vec<TrialView> {
        self.trials
            .iter()
            .map(|t| {
                let mut v = TrialView::from(t);
                v.job_state = self.job_states.get(&t.number).cloned();
                v
            })
            .collect()
    }
}

/// The trials one import stored, read from the snapshot published with them: a reply of
/// 100,000 trials is written from the shared records, without a copy of all of them.
pub struct ImportedTrials {
    /// The study's snapshot, which holds them.
    pub snapshot: Arc<StudySnapshot>,
    /// Their numbers, in the order of the imported results.
    pub numbers: Vec<u64>,
}

impl ImportedTrials {
    /// How many.
    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }

    /// The views of trials `range` (of [`ImportedTrials::numbers`]), as the API shows them.
    pub fn views(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = TrialView> + '_ {
        self.numbers[range]
            .iter()
            .filter_map(|n| self.snapshot.trials.get(*n))
            .map(TrialView::from)
    }
}

/// Daemon-wide figures as of the end of a turn.
#[derive(Clone, Debug, Default)]
pub struct DaemonSnapshot {
    /// Slot usage.
    pub slots: SlotUsage,
    /// Trials running over every study.
    pub running: usize,
    /// Trials queued over every study.
    pub queued: usize,
}

/// Everything published, shared between the loop (the only writer) and every reader.
#[derive(Default)]
pub struct Snapshots {
    studies: RwLock<BTreeMap<String, Arc<StudySnapshot>>>,
    daemon: RwLock<DaemonSnapshot>,
}

impl Snapshots {
    /// One study.
    pub fn study(&self, name: &str) -> Option<Arc<StudySnapshot>> {
        self.studies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Every study, by name.
    pub fn studies(&self) -> Vec<Arc<StudySnapshot>> {
        self.studies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Daemon-wide figures.
    pub fn daemon(&self) -> DaemonSnapshot {
        self.daemon
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Publishes a study's current state (the loop calls this after each turn that changed it).
    pub(crate) fn publish(&self, rt: &StudyRuntime) {
        let name = rt.name().to_string();
        let previous = self.study(&name);
        let ranking = match &previous {
            Some(p) if p.rank_version == rt.rank_version => p.ranking.clone(),
            _ => Arc::new(OnceLock::new()),
        };
        let snap = StudySnapshot {
            record: rt.record.clone(),
            def: rt.def.clone(),
            trials: rt.trials().clone(),
            job_states: rt.job_states.clone(),
            waiting: rt.waiting.clone(),
            counts: rt
                .counts()
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            budgeted: rt.budgeted(),
            imported: rt.imported(),
            remote_running: {
                let mut m = BTreeMap::new();
                for n in rt.running() {
                    let ex = rt.trial(n).and_then(|t| t.executor.as_deref());
                    if let Some(ex) = ex.filter(|e| !matches!(*e, "local" | "external")) {
                        *m.entry(ex.to_string()).or_insert(0) += 1;
                    }
                }
                m
            },
            running: rt.running().collect(),
            settled_secs: rt.settled_secs(),
            active: !rt.record.state.is_finished() || rt.count(TrialState::Running) > 0,
            warnings: rt.warnings.clone(),
            best_single: rt.best.map(|(_, n)| n),
            rank_version: rt.rank_version,
            ranking,
        };
        self.studies
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, Arc::new(snap));
    }

    /// Drops a deleted study's snapshot.
    pub(crate) fn remove(&self, name: &str) {
        self.studies
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Publishes the daemon-wide figures.
    pub(crate) fn publish_daemon(&self, d: DaemonSnapshot) {
        *self.daemon.write().unwrap_or_else(|p| p.into_inner()) = d;
    }
}
