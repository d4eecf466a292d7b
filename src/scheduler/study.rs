//! One study's live state, owned by the scheduler loop: its definition, trials (with indexes
//! of the queued and running ones and counts by state, kept as trials change), the strategy's
//! history, the pruner's curves, and what the study is waiting for.

use super::trials::Trials;
use super::Want;
use crate::gpu::slots::Slot;
use crate::model::study::{StudyDefinition, TrialSpec};
use quantune_state::{StudyRecord, TrialRecord, TrialState};
use quantune_strategies::pruner::{self, Pruner, Report as CurveReport};
use quantune_strategies::{registry, Observation, Outcome, Strategy};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// One study's live state.
pub(crate) struct StudyRuntime {
    /// The validated definition.
    pub def: Arc<StudyDefinition>,
    /// The trial part of it, shared with every launch.
    pub spec: Arc<TrialSpec>,
    /// The stored record (state, message).
    pub record: StudyRecord,
    /// Its strategy, rebuilt from the definition; shared with the suggestion worker.
    pub strategy: Arc<dyn Strategy>,
    /// Every trial, by number. Change them only through [`StudyRuntime::edit`] and
    /// [`StudyRuntime::push`], which keep the indexes below.
    trials: Trials,
    /// Trials `queued`, by number.
    queued: BTreeSet<u64>,
    /// Trials `running`, by number.
    running: BTreeSet<u64>,
    /// Trials per state.
    counts: BTreeMap<&'static str, u64>,
    /// Imported trials (they cost no budget).
    imported: u64,
    /// Seconds of every attempt of the trials that are not running (for the GPU budget:
    /// [`StudyRuntime::gpu_hours`] adds the running ones, so that no check scans the study).
    settled_secs: f64,
    /// Finished trials as the strategy sees them, in the order they finished. Shared with a
    /// suggestion in progress; trials finishing meanwhile wait in `history_tail`.
    pub history: Arc<Vec<Observation>>,
    /// Finished while a suggestion was being computed; joins `history` when it returns.
    pub history_tail: Vec<Observation>,
    /// Slots held by this study's running local trials.
    pub held: HashMap<u64, Slot>,
    /// Seconds (unix) an external trial was last heard from.
    pub last_seen: HashMap<u64, f64>,
    /// The strategy has no more points (grid).
    pub exhausted: bool,
    /// Intermediate reports of trials, by step: every report of every trial when the study
    /// has a pruner (it compares them); without one, a finished trial keeps only its last
    /// report (all its observation needs), so a study of many reporting trials does not hold
    /// them all in memory.
    pub curves: HashMap<u64, Vec<CurveReport>>,
    /// The study's pruner, if any.
    pub pruner: Option<Box<dyn Pruner>>,
    /// Why a running trial is being stopped (pruned, budget), until its attempt ends.
    pub stop_reasons: HashMap<u64, String>,
    /// The executor's own state of running trials (Slurm PENDING/RUNNING), for `status`.
    pub job_states: BTreeMap<u64, String>,
    /// Why no trial could start although the study has room, for `status`.
    pub waiting: Option<String>,
    /// Suggestions being computed off the loop (one job, in order), and what each is for.
    pub suggesting: Vec<Want>,
    /// Requests that need a new trial (slots taken for one, asks, enqueues), waiting for the
    /// next job: all of them go into it at the end of the turn.
    pub wants: VecDeque<Want>,
    /// Bumped whenever a trial finishes or is imported: the leaderboard's cache key.
    pub rank_version: u64,
    /// Trials past the report cap (warned about once).
    pub capped: std::collections::HashSet<u64>,
    /// The best feasible trial of a single-objective study (loss, number), kept as trials
    /// finish so that `status` needs no ranking.
    pub best: Option<(f64, u64)>,
    /// Finished trials that failed in a row, the latest last (0 once one does not fail;
    /// cancelled trials leave it as it is): what `consecutive_failures` notifications count.
    pub failed_streak: u64,
    /// What the daemon noticed about the study while it ran (a pruner metric no report
    /// carries), each said once; shown by `status` (not stored: it is noticed again).
    pub warnings: Vec<String>,
}

impl StudyRuntime {
    /// Rebuilds a study's runtime from its stored record, trials (by number, taken one at a
    /// time) and reports.
    pub fn load(
        record: StudyRecord,
        trials: impl IntoIterator<Item = TrialRecord>,
        curves: HashMap<u64, Vec<CurveReport>>,
    ) -> Result<StudyRuntime, String> {
        let def: StudyDefinition = serde_json::from_value(record.definition.clone())
            .map_err(|e| format!("stored definition of '{}' is unreadable: {e}", record.name))?;
        let strategy: Arc<dyn Strategy> = Arc::from(registry::build(
            &def.strategy.kind,
            &def.strategy.options(),
        )?);
        let kind = if def.pruner.kind.is_empty() {
            "none"
        } else {
            def.pruner.kind.as_str()
        };
        let pruner = pruner::build(kind, &def.pruner.options)
            .map_err(|(k, m)| format!("pruner.{k}: {m}"))?;
        let spec = Arc::new(def.trial.clone());
        let mut rt = StudyRuntime {
            def: Arc::new(def),
            spec,
            record,
            strategy,
            trials: Trials::default(),
            queued: BTreeSet::new(),
            running: BTreeSet::new(),
            counts: BTreeMap::new(),
            imported: 0,
            settled_secs: 0.0,
            history: Arc::default(),
            history_tail: Vec::new(),
            held: HashMap::new(),
            last_seen: HashMap::new(),
            exhausted: false,
            curves,
            pruner,
            stop_reasons: HashMap::new(),
            job_states: BTreeMap::new(),
            waiting: None,
            suggesting: Vec::new(),
            wants: VecDeque::new(),
            rank_version: 0,
            capped: Default::default(),
            best: None,
            failed_streak: 0,
            warnings: Vec::new(),
        };
        // Trials imported together carry the same `info` (the import's digest): one map for
        // all of them instead of one each.
        let mut last_info: Option<Arc<quantune_state::Info>> = None;
        for mut t in trials {
            let n = t.number;
            if n != rt.trials.len() as u64 {
                return Err(format!(
                    "study '{}' has a gap in its trial numbers at {}",
                    rt.record.name,
                    rt.trials.len()
                ));
            }
            if t.state.is_finished() {
                rt.trim_curve(n);
            }
            match &last_info {
                Some(i) if **i == *t.info => t.info = i.clone(),
                _ => last_info = Some(t.info.clone()),
            }
            rt.push(t);
            rt.note_best(n);
        }
        let mut finished: Vec<&TrialRecord> =
            rt.trials.iter().filter(|t| t.state.is_finished()).collect();
        finished.sort_by(|a, b| {
            a.finished_at
                .unwrap_or(0.0)
                .total_cmp(&b.finished_at.unwrap_or(0.0))
                .then(a.number.cmp(&b.number))
        });
        let failed_streak = finished
            .iter()
            .fold(0, |streak, t| next_streak(streak, t.state));
        let history: Vec<Observation> = finished
            .into_iter()
            .map(|t| observation(t, rt.curves.get(&t.number)))
            .collect();
        rt.history = Arc::new(history);
        rt.failed_streak = failed_streak;
        Ok(rt)
    }

    /// The study's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// Every trial.
    pub fn trials(&self) -> &Trials {
        &self.trials
    }

    /// Trial `n`.
    pub fn trial(&self, n: u64) -> Option<&TrialRecord> {
        self.trials.get(n)
    }

    /// Appends a new trial (numbered `trials().len()`).
    pub fn push(&mut self, t: TrialRecord) {
        self.index(t.number, t.state, 1);
        self.settled_secs += settled_secs(&t);
        if t.imported {
            self.imported += 1;
        }
        self.trials.push(t);
    }

    /// Changes trial `n` through `f`, keeping the indexes true. Panics if `n` does not exist:
    /// callers look the trial up first.
    pub fn edit<R>(&mut self, n: u64, f: impl FnOnce(&mut TrialRecord) -> R) -> R {
        let tr = self.trials.get_mut(n).expect("edit of an existing trial");
        let before = tr.state;
        let settled_before = settled_secs(tr);
        let out = f(tr);
        let after = tr.state;
        self.settled_secs += settled_secs(tr) - settled_before;
        if before != after {
            self.index(n, before, -1);
            self.index(n, after, 1);
        }
        out
    }

    /// Adds (`+1`) or removes (`-1`) a trial from the indexes.
    fn index(&mut self, n: u64, state: TrialState, sign: i64) {
        let set = match state {
            TrialState::Queued => Some(&mut self.queued),
            TrialState::Running => Some(&mut self.running),
            _ => None,
        };
        if let Some(set) = set {
            if sign > 0 {
                set.insert(n);
            } else {
                set.remove(&n);
            }
        }
        let c = self.counts.entry(state.as_str()).or_insert(0);
        *c = c.saturating_add_signed(sign);
    }

    /// Whether `attempt` is the running attempt of trial `n` (events of older attempts, or
    /// of a trial already ended, are stale).
    pub fn is_current(&self, n: u64, attempt: u32) -> bool {
        self.trials
            .get(n)
            .is_some_and(|tr| tr.attempt == attempt && tr.state == TrialState::Running)
    }

    /// Trials `queued`, by number.
    pub fn queued(&self) -> impl Iterator<Item = u64> + '_ {
        self.queued.iter().copied()
    }

    /// Trials `running`, by number.
    pub fn running(&self) -> impl Iterator<Item = u64> + '_ {
        self.running.iter().copied()
    }

    /// Trials per state.
    pub fn counts(&self) -> &BTreeMap<&'static str, u64> {
        &self.counts
    }

    /// Trials in a state.
    pub fn count(&self, state: TrialState) -> u64 {
        self.counts.get(state.as_str()).copied().unwrap_or(0)
    }

    /// Trials that count against `budget.max_trials`: all but imported results.
    pub fn budgeted(&self) -> u64 {
        self.trials.len() as u64 - self.imported
    }

    /// Imported trials.
    pub fn imported(&self) -> u64 {
        self.imported
    }

    /// Trials running, plus slots held and asks waiting for trials whose parameters are being
    /// suggested: what `budget.parallel` limits.
    pub fn in_flight(&self) -> u64 {
        let waiting = self
            .suggesting
            .iter()
            .chain(self.wants.iter())
            .filter(|w| matches!(w, Want::Slot { .. } | Want::Ask(_)))
            .count();
        self.running.len() as u64 + waiting as u64
    }

    /// New trials asked for but not yet created (being suggested, or waiting to be).
    pub fn pending_new(&self) -> u64 {
        (self.suggesting.len() + self.wants.len()) as u64
    }

    /// Whether every trial has finished.
    pub fn all_finished(&self) -> bool {
        self.queued.is_empty() && self.running.is_empty()
    }

    /// Records a finished trial for the strategy and the leaderboard.
    pub fn observe(&mut self, n: u64) {
        let Some(t) = self.trials.get(n) else { return };
        let o = observation(t, self.curves.get(&n));
        if !self.suggesting.is_empty() {
            self.history_tail.push(o);
        } else {
            Arc::make_mut(&mut self.history).push(o);
        }
        self.rank_version += 1;
        self.failed_streak = next_streak(self.failed_streak, t.state);
        self.note_best(n);
        self.trim_curve(n);
    }

    /// Without a pruner, keeps only the last report of finished trial `n` (see `curves`).
    fn trim_curve(&mut self, n: u64) {
        if self.pruner.is_some() {
            return;
        }
        if let Some(c) = self.curves.get_mut(&n) {
            if c.len() > 1 {
                c.drain(..c.len() - 1);
                c.shrink_to_fit();
            }
        }
    }

    /// Takes trial `n` into account for [`StudyRuntime::best`] (single objective only).
    fn note_best(&mut self, n: u64) {
        if self.def.objectives.len() != 1 {
            return;
        }
        let Some(t) = self.trials.get(n) else { return };
        if !crate::model::leaderboard::feasible(&self.def, t) {
            return;
        }
        let Some(loss) = crate::model::leaderboard::losses(&self.def, t).map(|l| l[0]) else {
            return;
        };
        let better = match self.best {
            None => true,
            Some((b, m)) => loss.total_cmp(&b).then(n.cmp(&m)).is_lt(),
        };
        if better {
            self.best = Some((loss, n));
        }
    }

    /// Moves what finished during a suggestion into the history (call when none is running).
    pub fn join_history(&mut self) {
        if !self.history_tail.is_empty() {
            let tail = std::mem::take(&mut self.history_tail);
            Arc::make_mut(&mut self.history).extend(tail);
        }
    }

    /// Wall-clock budget exceeded.
    pub fn wall_exceeded(&self, now: f64) -> bool {
        self.def
            .budget
            .max_wall_secs
            .is_some_and(|w| now - self.record.created_at > w)
    }

    /// GPU time spent so far (every attempt, running ones up to `now`), in hours: the kept
    /// sum of the others plus the running trials (found through their index).
    pub fn gpu_hours(&self, now: f64) -> f64 {
        gpu_hours(&self.def, self.settled_secs, self.running_trials(), now)
    }

    /// The running trials' records.
    fn running_trials(&self) -> impl Iterator<Item = &TrialRecord> {
        self.running.iter().filter_map(|n| self.trials.get(*n))
    }

    /// Seconds of every attempt of the trials that are not running (see `settled_secs`).
    pub fn settled_secs(&self) -> f64 {
        self.settled_secs
    }

    /// Which budget, other than `max_trials`, has run out.
    pub fn budget_exhausted(&self, now: f64) -> Option<&'static str> {
        if self.wall_exceeded(now) {
            Some("budget.max_wall reached")
        } else if self
            .def
            .budget
            .max_gpu_hours
            .is_some_and(|h| self.gpu_hours(now) >= h)
        {
            Some("budget.max_gpu_hours reached")
        } else {
            None
        }
    }
}

/// GPU time of a study, in hours: `settled_secs` (the attempts of its trials that are not
/// running) plus its `running` trials' attempts up to `now`.
pub(crate) fn gpu_hours<'a>(
    def: &StudyDefinition,
    settled_secs: f64,
    running: impl Iterator<Item = &'a TrialRecord>,
    now: f64,
) -> f64 {
    let gpus = f64::from(def.trial.gpus);
    if gpus == 0.0 {
        return 0.0;
    }
    let secs: f64 = settled_secs + running.map(|t| trial_secs(t, now)).sum::<f64>();
    // + 0.0: an empty float sum is -0.0, which would show as "-0.0" GPU-hours.
    gpus * secs / 3600.0 + 0.0
}

/// Seconds of trial `t`'s attempts: the earlier ones, and the current one (a running one up
/// to `now`).
fn trial_secs(t: &TrialRecord, now: f64) -> f64 {
    let earlier: f64 = t
        .attempts
        .iter()
        .map(|a| (a.finished_at - a.started_at.unwrap_or(a.finished_at)).max(0.0))
        .sum();
    let current = match (t.started_at, t.finished_at) {
        (Some(s), Some(f)) => f - s,
        (Some(s), None) if t.state == TrialState::Running => now - s,
        _ => 0.0,
    };
    earlier + current.max(0.0)
}

/// [`trial_secs`] of a trial that is not running (it does not change with time), else 0: what
/// [`StudyRuntime`] keeps summed.
fn settled_secs(t: &TrialRecord) -> f64 {
    if t.state == TrialState::Running {
        0.0
    } else {
        trial_secs(t, 0.0)
    }
}

/// The run of failed trials after one more trial finished in `state`.
fn next_streak(streak: u64, state: TrialState) -> u64 {
    match state {
        TrialState::Failed => streak + 1,
        TrialState::Cancelled => streak,
        _ => 0,
    }
}

/// A finished trial as strategies see it; a pruned trial carries its last reported values.
/// Shares the trial's maps: the history costs a few words per trial, not a copy of it.
pub(crate) fn observation(t: &TrialRecord, curve: Option<&Vec<CurveReport>>) -> Observation {
    Observation {
        number: t.number,
        params: t.params.clone(),
        outcome: match t.state {
            TrialState::Complete => Outcome::Complete,
            TrialState::Pruned => Outcome::Pruned,
            TrialState::Infeasible => Outcome::Infeasible,
            _ => Outcome::Failed,
        },
        metrics: match (t.state, curve.and_then(|c| c.last())) {
            (TrialState::Pruned, Some((_, values))) => Arc::new(values.clone()),
            _ => t.metrics.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantune_strategies::{ParamValue, Params};

    /// A runtime of `n` complete trials, each with three reports, loaded as after a restart.
    fn loaded(pruner: &str, n: u64) -> StudyRuntime {
        let source = format!(
            "[study]\nname = \"s\"\nseed = 1\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\
             [space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[budget]\nmax_trials = 10\n{pruner}[trial]\nworkload = \"external\"\n"
        );
        let def =
            crate::model::study::parse(&source, "s.toml", std::path::Path::new("/"), None).unwrap();
        let record = StudyRecord::new("s", serde_json::to_value(&def).unwrap(), source, 0.0);
        let info = quantune_state::Info::from([("import_batch".to_string(), "ab".to_string())]);
        let trials = (0..n).map(|i| {
            let mut t = TrialRecord::new(
                "s",
                i,
                Params::from([("x".to_string(), ParamValue::Float(i as f64 / n as f64))]),
                0.0,
            );
            t.state = TrialState::Complete;
            t.metrics = Arc::new([("loss".to_string(), i as f64)].into());
            t.info = Arc::new(info.clone());
            t.finished_at = Some(i as f64);
            t
        });
        let curves = (0..n)
            .map(|i| {
                (
                    i,
                    (1..=3)
                        .map(|s| (s, [("loss".to_string(), s as f64)].into()))
                        .collect(),
                )
            })
            .collect();
        StudyRuntime::load(record, trials, curves).unwrap()
    }

    #[test]
    fn the_kept_gpu_seconds_match_a_scan_of_every_trial() {
        let mut rt = loaded("", 5);
        let scan = |rt: &StudyRuntime, now: f64| -> f64 {
            rt.trials().iter().map(|t| trial_secs(t, now)).sum()
        };
        let kept = |rt: &StudyRuntime, now: f64| -> f64 {
            rt.settled_secs + rt.running_trials().map(|t| trial_secs(t, now)).sum::<f64>()
        };
        let mut t = TrialRecord::new("s", 5, Params::new(), 0.0);
        t.state = TrialState::Running;
        t.started_at = Some(100.0);
        rt.push(t);
        assert_eq!(kept(&rt, 130.0), scan(&rt, 130.0));
        // The attempt fails and the trial is queued again; then it runs and completes.
        rt.edit(5, |t| {
            t.attempts.push(quantune_state::AttemptRecord {
                attempt: 1,
                reason: "boom".into(),
                stderr_tail: None,
                started_at: t.started_at,
                finished_at: 140.0,
            });
            t.state = TrialState::Queued;
            t.started_at = None;
        });
        assert_eq!(kept(&rt, 150.0), 40.0);
        rt.edit(5, |t| {
            t.state = TrialState::Running;
            t.started_at = Some(200.0);
        });
        assert_eq!(kept(&rt, 210.0), 50.0);
        assert_eq!(kept(&rt, 210.0), scan(&rt, 210.0));
        rt.edit(5, |t| {
            t.state = TrialState::Complete;
            t.finished_at = Some(260.0);
        });
        assert_eq!(kept(&rt, 999.0), 100.0);
        assert_eq!(kept(&rt, 999.0), scan(&rt, 999.0));
    }

    #[test]
    fn the_history_shares_the_trials_maps_and_imports_share_one_info() {
        let rt = loaded("", 300);
        assert_eq!(rt.history.len(), 300);
        for o in rt.history.iter() {
            let t = rt.trial(o.number).unwrap();
            assert!(Arc::ptr_eq(&o.params, &t.params), "trial {}", o.number);
            assert!(Arc::ptr_eq(&o.metrics, &t.metrics), "trial {}", o.number);
        }
        let first = rt.trial(0).unwrap();
        assert!(rt
            .trials()
            .iter()
            .all(|t| Arc::ptr_eq(&t.info, &first.info)));
        // The history is what it was before the maps were shared.
        assert_eq!(rt.history[7].metrics["loss"], 7.0);
        assert_eq!(rt.history[7].params["x"], ParamValue::Float(7.0 / 300.0));
    }

    #[test]
    fn without_a_pruner_a_finished_trial_keeps_only_its_last_report() {
        let rt = loaded("", 5);
        assert!(rt.curves.values().all(|c| c.len() == 1 && c[0].0 == 3));
        let rt = loaded("[pruner]\nkind = \"median\"\n", 5);
        assert!(rt.curves.values().all(|c| c.len() == 3));
    }
}
