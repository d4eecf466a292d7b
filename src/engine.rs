//! The scheduler: it keeps every study's trials in memory (rebuilt from the store on start),
//! asks each study's strategy for new trials, hands them to the executor on free slots —
//! round-robin between studies, at most `budget.parallel` per study — and records every state
//! change durably before acting on it. `quantune serve` and `quantune run` both drive it.
//!
//! A trial's life: created (durable) → started on a slot → executor events (reports, finished)
//! → outcome recorded (durable) → slot freed → next trial. Failures are retried with the same
//! parameters while `trial.retries` allow; a restart fails and re-queues trials the previous
//! process left `running` ("interrupted").

use crate::api::{StudySummary, TrialView};
use crate::executor::{AttemptOutcome, CancelReason, ExecEvent, Executor, Launch};
use crate::leaderboard;
use crate::slots::{Slot, SlotPool, SlotUsage};
use crate::study::{StudyDefinition, TrialSpec, Workload};
use quantune_state::{
    AttemptRecord, Report, Store, StudyRecord, StudyState, TrialRecord, TrialState,
};
use quantune_strategies::{
    registry, Observation, Outcome, Params, Strategy, StrategyError, SuggestContext,
};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch, Notify};

/// An error the API turns into an HTTP status and the CLI into exit code 1.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// No such study or trial.
    NotFound(String),
    /// The request conflicts with the current state (name taken, study finished, …).
    Conflict(String),
    /// The request itself is invalid.
    BadRequest(String),
    /// The store failed.
    Internal(String),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::NotFound(m)
            | EngineError::Conflict(m)
            | EngineError::BadRequest(m)
            | EngineError::Internal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<quantune_state::StoreError> for EngineError {
    fn from(e: quantune_state::StoreError) -> Self {
        match e {
            quantune_state::StoreError::StudyExists(n) => EngineError::Conflict(format!(
                "a study named '{n}' already exists; choose another [study] name"
            )),
            quantune_state::StoreError::NoStudy(n) => {
                EngineError::NotFound(format!("no study named '{n}'"))
            }
            other => EngineError::Internal(other.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, EngineError>;

/// Why an attempt ended when the daemon (or `run`) stopped gracefully.
const SHUTDOWN_REASON: &str = "interrupted (quantune was stopped)";

/// Why an attempt that a previous process left running (a crash, `kill -9`, power loss) ended.
const CRASH_REASON: &str = "interrupted (the daemon stopped while it ran)";

/// Why an attempt that was running when its study was exported ended (it ran elsewhere).
const IMPORT_REASON: &str = "interrupted (the study was exported while it ran)";

/// Whether a failed attempt counts against `trial.retries`. A graceful stop is the operator's
/// doing and an import moves the study elsewhere: neither is the trial's fault. A crash does
/// count, so that a trial that keeps bringing the daemon down cannot loop forever.
fn costs_retry(reason: &str) -> bool {
    reason != SHUTDOWN_REASON && reason != IMPORT_REASON
}

/// Settings the engine is built with.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Directory under which each trial gets `<study>/<number>/` for its metrics and logs.
    pub run_root: PathBuf,
    /// CPU slots.
    pub cpu_slots: usize,
    /// CUDA device indices that get GPU slots.
    pub gpus: Vec<u32>,
    /// Trials that may share one GPU.
    pub trials_per_gpu: u32,
    /// Schedule only this study (`quantune run`); others in the store stay untouched.
    pub only_study: Option<String>,
}

/// What `tell` reports about a trial.
#[derive(Clone, Debug, PartialEq)]
pub enum TellOutcome {
    /// The final metrics.
    Complete(BTreeMap<String, f64>),
    /// The trial failed.
    Failed(String),
    /// The configuration is infeasible.
    Infeasible(String),
}

/// One study's live state.
struct StudyRuntime {
    /// The validated definition.
    def: Arc<StudyDefinition>,
    /// The trial part of it, shared with every launch.
    spec: Arc<TrialSpec>,
    /// The stored record (state, message).
    record: StudyRecord,
    /// Its strategy, rebuilt from the definition.
    strategy: Box<dyn Strategy>,
    /// Every trial, indexed by number.
    trials: Vec<TrialRecord>,
    /// Finished trials as the strategy sees them, in the order they finished.
    observations: Vec<Observation>,
    /// Slots held by this study's running local trials.
    held: HashMap<u64, Slot>,
    /// Seconds (unix) an external trial was last heard from.
    last_seen: HashMap<u64, f64>,
    /// The strategy has no more points (grid).
    exhausted: bool,
}

impl StudyRuntime {
    fn in_flight(&self) -> u64 {
        self.trials
            .iter()
            .filter(|t| t.state == TrialState::Running)
            .count() as u64
    }

    fn counts(&self) -> BTreeMap<&'static str, u64> {
        let mut c = BTreeMap::new();
        for t in &self.trials {
            *c.entry(t.state.as_str()).or_insert(0) += 1;
        }
        c
    }

    fn wall_exceeded(&self, now: f64) -> bool {
        self.def
            .budget
            .max_wall_secs
            .is_some_and(|w| now - self.record.created_at > w)
    }

    fn summary(&self) -> StudySummary {
        let board = leaderboard::build(&self.def, &self.trials, Some(1));
        StudySummary {
            name: self.record.name.clone(),
            state: self.record.state.as_str().to_string(),
            message: self.record.message.clone(),
            description: self.def.description.clone(),
            strategy: self.def.strategy.kind.clone(),
            workload: self.def.trial.workload.name().into(),
            max_trials: self.def.budget.max_trials,
            parallel: self.def.budget.parallel,
            trials: self.trials.len() as u64,
            counts: self
                .counts()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            best: board
                .into_iter()
                .next()
                .filter(|r| r.feasible)
                .map(|r| r.trial),
            created_at: self.record.created_at,
            updated_at: self.record.updated_at,
        }
    }
}

/// Mutable scheduler state, behind one lock.
struct Inner {
    /// Every study, by name.
    studies: BTreeMap<String, StudyRuntime>,
    /// Local slots.
    slots: SlotPool,
    /// Round-robin start position among runnable studies.
    rr: usize,
    /// No new trials start (shutting down).
    stopping: bool,
    /// Trials (study, number) changed in memory but not yet durable (a failed flush is
    /// retried). The flush writes their current in-memory record, so a record written directly
    /// meanwhile (`stop_study`) is never overwritten by an older version.
    dirty: Vec<(String, u64)>,
    /// Slots to give back once `dirty` is durable.
    to_release: Vec<Slot>,
}

/// The scheduler. Shared as `Arc<Engine>` by the API and the loop task.
pub struct Engine {
    /// The durable store; every change goes here before it is acted on.
    store: Arc<Store>,
    /// Where trials run.
    executor: Arc<dyn Executor>,
    /// Everything mutable.
    inner: Mutex<Inner>,
    /// Wakes the loop when there may be work to dispatch.
    wake: Notify,
    /// Root of trial run directories.
    run_root: PathBuf,
    /// Finished trials, for progress displays (`quantune run`).
    finished_tx: broadcast::Sender<TrialRecord>,
    /// Schedule only this study, when set.
    only_study: Option<String>,
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Engine {
    /// Builds the engine from the store, reconciling trials a previous process left running.
    pub fn open(
        store: Arc<Store>,
        executor: Arc<dyn Executor>,
        cfg: EngineConfig,
    ) -> Result<Engine> {
        let (finished_tx, _) = broadcast::channel(1024);
        let engine = Engine {
            store,
            executor,
            inner: Mutex::new(Inner {
                studies: BTreeMap::new(),
                slots: SlotPool::new(cfg.cpu_slots, &cfg.gpus, cfg.trials_per_gpu),
                rr: 0,
                stopping: false,
                dirty: Vec::new(),
                to_release: Vec::new(),
            }),
            wake: Notify::new(),
            run_root: cfg.run_root,
            finished_tx,
            only_study: cfg.only_study,
        };
        let records = engine.store.studies()?;
        let mut inner = engine.lock();
        let t = now();
        for record in records {
            let name = record.name.clone();
            let trials = engine.store.trials(&name)?;
            let mut rt = match runtime(record, trials) {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(study = %name, "cannot load study: {e}");
                    continue;
                }
            };
            // Reconcile (SPEC §7): a local trial left running was interrupted.
            for n in engine.reconcile(&mut rt, CRASH_REASON, t) {
                inner.dirty.push((name.clone(), n));
            }
            inner.studies.insert(name, rt);
        }
        engine.flush_dirty(&mut inner);
        if !inner.dirty.is_empty() {
            return Err(EngineError::Internal(
                "cannot record interrupted trials in the store".into(),
            ));
        }
        drop(inner);
        Ok(engine)
    }

    /// Fails (and re-queues while retries allow) the local trials of a freshly loaded study
    /// that are `running` although this process never started them; external ones keep
    /// running with a fresh timeout. Returns the trials changed, then checks the study.
    fn reconcile(&self, rt: &mut StudyRuntime, reason: &str, t: f64) -> Vec<u64> {
        let interrupted: Vec<u64> = rt
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Running && t.executor.as_deref() != Some("external"))
            .map(|t| t.number)
            .collect();
        for &n in &interrupted {
            tracing::warn!(study = %rt.record.name, trial = n, "{reason}");
            let tr = &rt.trials[n as usize];
            // After a crash the attempt's processes may still run here: they must not run
            // beside the retry (a GPU held twice, skewed timings).
            if reason == CRASH_REASON && tr.executor.as_deref() == Some(self.executor.name()) {
                let run_dir = self.run_root.join(&rt.record.name).join(n.to_string());
                self.executor.reap(&rt.record.name, n, tr.attempt, &run_dir);
            }
            self.apply_failure(rt, n, reason.into(), None, t);
        }
        for tr in rt.trials.iter().filter(|t| t.state == TrialState::Running) {
            rt.last_seen.insert(tr.number, t);
        }
        self.check_study(rt, t);
        interrupted
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Receives finished trials as they are recorded.
    pub fn subscribe(&self) -> broadcast::Receiver<TrialRecord> {
        self.finished_tx.subscribe()
    }

    /// The scheduler loop: handles executor events, timeouts and dispatch until `shutdown`
    /// turns true; then interrupts running trials, records them, and returns.
    pub async fn run(
        self: Arc<Self>,
        mut events: mpsc::UnboundedReceiver<ExecEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(1000));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.dispatch();
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    let mut batch = vec![ev];
                    while let Ok(more) = events.try_recv() { batch.push(more); }
                    self.handle_events(batch);
                }
                _ = self.wake.notified() => self.dispatch(),
                _ = tick.tick() => self.tick(),
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() { break; }
                }
            }
        }
        // Graceful stop: no new trials; interrupt local ones and record them.
        {
            let mut inner = self.lock();
            inner.stopping = true;
            // A finished study's running trials were already asked to stop (cancelled with
            // it): interrupting them instead would record them as failed.
            for rt in inner
                .studies
                .values()
                .filter(|rt| !rt.record.state.is_finished())
            {
                for n in rt.held.keys() {
                    self.executor
                        .cancel(&rt.record.name, *n, CancelReason::Shutdown);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.lock().studies.values().any(|rt| !rt.held.is_empty()) {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(ev)) => {
                    let mut batch = vec![ev];
                    while let Ok(more) = events.try_recv() {
                        batch.push(more);
                    }
                    self.handle_events(batch);
                }
                _ => break,
            }
        }
        let mut inner = self.lock();
        self.flush_dirty(&mut inner);
    }

    /// Asks the loop to look for work.
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Whether any study can still schedule or is waiting on trials (for `quantune run`).
    pub fn study_active(&self, name: &str) -> bool {
        let inner = self.lock();
        inner
            .studies
            .get(name)
            .is_some_and(|rt| !rt.record.state.is_finished() || rt.in_flight() > 0)
    }

    // ---- events ----

    fn handle_events(&self, events: Vec<ExecEvent>) {
        let mut inner = self.lock();
        let t = now();
        let mut finished = Vec::new();
        for ev in events {
            match ev {
                ExecEvent::Report {
                    study,
                    trial,
                    attempt,
                    step,
                    values,
                } => {
                    let Some(rt) = inner.studies.get(&study) else {
                        continue;
                    };
                    let current = rt
                        .trials
                        .get(trial as usize)
                        .is_some_and(|tr| tr.attempt == attempt && tr.state == TrialState::Running);
                    if current {
                        if let Err(e) = self.store.add_report(
                            &study,
                            trial,
                            &Report {
                                step,
                                values,
                                at: t,
                            },
                        ) {
                            tracing::error!(%study, trial, "cannot store a report: {e}");
                        }
                    }
                }
                ExecEvent::Finished {
                    study,
                    trial,
                    attempt,
                    outcome,
                } => {
                    let inner = &mut *inner;
                    let Some(rt) = inner.studies.get_mut(&study) else {
                        continue;
                    };
                    let Some(tr) = rt.trials.get(trial as usize) else {
                        continue;
                    };
                    if tr.attempt != attempt || tr.state != TrialState::Running {
                        continue;
                    }
                    if let Some(slot) = rt.held.remove(&trial) {
                        inner.to_release.push(slot);
                    }
                    let rec = self.apply_outcome(rt, trial, outcome, t);
                    if rec.state.is_finished() {
                        finished.push(rec);
                    }
                    inner.dirty.push((study.clone(), trial));
                    self.check_study(rt, t);
                }
            }
        }
        self.flush_dirty(&mut inner);
        drop(inner);
        for rec in finished {
            let _ = self.finished_tx.send(rec);
        }
        self.dispatch();
    }

    /// Writes `dirty` records in one flush; frees slots only once that succeeded.
    fn flush_dirty(&self, inner: &mut Inner) {
        if inner.dirty.is_empty() && inner.to_release.is_empty() {
            return;
        }
        if !inner.dirty.is_empty() {
            let mut keys = std::mem::take(&mut inner.dirty);
            keys.sort();
            keys.dedup();
            let records: Vec<TrialRecord> = keys
                .iter()
                .filter_map(|(study, n)| inner.studies.get(study)?.trials.get(*n as usize))
                .cloned()
                .collect();
            inner.dirty = keys;
            if let Err(e) = self.store.put_trials(&records) {
                tracing::error!(
                    "cannot record {} trial change(s), will retry: {e}",
                    inner.dirty.len()
                );
                return;
            }
            inner.dirty.clear();
        }
        let slots = std::mem::take(&mut inner.to_release);
        for s in &slots {
            inner.slots.release(s);
        }
    }

    /// Records how an attempt ended; returns the updated trial record.
    fn apply_outcome(
        &self,
        rt: &mut StudyRuntime,
        n: u64,
        outcome: AttemptOutcome,
        t: f64,
    ) -> TrialRecord {
        match outcome {
            AttemptOutcome::Complete { metrics, info } => {
                let missing = missing_metrics(&rt.def, &metrics);
                if !missing.is_empty() {
                    let reason = format!("final metrics line lacks {}", missing.join(", "));
                    return self.apply_failure(rt, n, reason, None, t);
                }
                let violated: Vec<String> = rt
                    .def
                    .constraints
                    .iter()
                    .filter(|c| !c.satisfied_by(&metrics))
                    .map(|c| {
                        let bound = match (c.min, c.max) {
                            (Some(lo), Some(hi)) => format!("in [{lo}, {hi}]"),
                            (Some(lo), None) => format!(">= {lo}"),
                            (None, Some(hi)) => format!("<= {hi}"),
                            (None, None) => String::new(),
                        };
                        format!("{} = {} (must be {bound})", c.metric, metrics[&c.metric])
                    })
                    .collect();
                let tr = &mut rt.trials[n as usize];
                tr.metrics = metrics;
                tr.info = info;
                tr.finished_at = Some(t);
                if violated.is_empty() {
                    tr.state = TrialState::Complete;
                    tr.reason = None;
                } else {
                    tr.state = TrialState::Infeasible;
                    tr.reason = Some(format!("constraint violated: {}", violated.join("; ")));
                }
                self.finish_trial(rt, n)
            }
            AttemptOutcome::Infeasible(reason) => {
                let tr = &mut rt.trials[n as usize];
                tr.state = TrialState::Infeasible;
                tr.reason = Some(reason);
                tr.finished_at = Some(t);
                self.finish_trial(rt, n)
            }
            AttemptOutcome::Failed {
                reason,
                stderr_tail,
            } => self.apply_failure(rt, n, reason, stderr_tail, t),
            AttemptOutcome::Cancelled {
                why: CancelReason::Shutdown,
                stderr_tail,
            } => self.apply_failure(rt, n, SHUTDOWN_REASON.into(), stderr_tail, t),
            AttemptOutcome::Cancelled { why, stderr_tail } => {
                let tr = &mut rt.trials[n as usize];
                tr.state = if why == CancelReason::Pruned {
                    TrialState::Pruned
                } else {
                    TrialState::Cancelled
                };
                tr.reason = Some(if why == CancelReason::Pruned {
                    "pruned".into()
                } else {
                    "cancelled".into()
                });
                tr.stderr_tail = stderr_tail;
                tr.finished_at = Some(t);
                self.finish_trial(rt, n)
            }
        }
    }

    /// A failed attempt: re-queued with the same parameters while retries remain, else failed.
    fn apply_failure(
        &self,
        rt: &mut StudyRuntime,
        n: u64,
        reason: String,
        stderr_tail: Option<String>,
        t: f64,
    ) -> TrialRecord {
        let retries = rt.def.trial.retries;
        let tr = &mut rt.trials[n as usize];
        tr.attempts.push(AttemptRecord {
            attempt: tr.attempt,
            reason: reason.clone(),
            stderr_tail: stderr_tail.clone(),
            started_at: tr.started_at,
            finished_at: t,
        });
        tr.slot = None;
        tr.job_id = None;
        let failures = tr
            .attempts
            .iter()
            .filter(|a| costs_retry(&a.reason))
            .count() as u32;
        if (failures <= retries || !costs_retry(&reason)) && !rt.record.state.is_finished() {
            tr.attempt += 1;
            tr.state = TrialState::Queued;
            tr.started_at = None;
            tr.reason = Some(format!("retrying after: {reason}"));
            tr.stderr_tail = stderr_tail;
            rt.last_seen.remove(&n);
            tr.clone()
        } else {
            tr.state = TrialState::Failed;
            tr.reason = Some(reason);
            tr.stderr_tail = stderr_tail;
            tr.finished_at = Some(t);
            self.finish_trial(rt, n)
        }
    }

    /// Bookkeeping for a trial that reached a final state.
    fn finish_trial(&self, rt: &mut StudyRuntime, n: u64) -> TrialRecord {
        rt.last_seen.remove(&n);
        let tr = &mut rt.trials[n as usize];
        tr.slot = None;
        let tr = tr.clone();
        rt.observations.push(observation(&tr));
        tr
    }

    /// Moves a study to completed/failed when its budget says so; durable.
    fn check_study(&self, rt: &mut StudyRuntime, t: f64) {
        let state = rt.record.state;
        if state.is_finished() {
            return;
        }
        let failed = rt
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Failed)
            .count() as u64;
        if failed >= rt.def.budget.max_failed {
            let msg = format!(
                "{failed} trials failed (budget.max_failed = {})",
                rt.def.budget.max_failed
            );
            self.stop_study(rt, StudyState::Failed, Some(msg), t);
            return;
        }
        let all_done = rt.trials.iter().all(|t| t.state.is_finished());
        let budget_done = rt.trials.len() as u64 >= rt.def.budget.max_trials
            || rt.exhausted
            || rt.wall_exceeded(t);
        if all_done && budget_done {
            let msg = if rt.exhausted {
                Some("every point of the design was tried".into())
            } else if rt.wall_exceeded(t) && (rt.trials.len() as u64) < rt.def.budget.max_trials {
                Some("budget.max_wall reached".into())
            } else {
                None
            };
            self.set_study_state(rt, StudyState::Completed, msg, t);
        }
    }

    /// Ends a study: queued trials are cancelled, running ones are asked to stop.
    fn stop_study(
        &self,
        rt: &mut StudyRuntime,
        state: StudyState,
        message: Option<String>,
        t: f64,
    ) {
        self.set_study_state(rt, state, message, t);
        let mut changed = Vec::new();
        for tr in rt.trials.iter_mut() {
            match tr.state {
                TrialState::Queued => {
                    tr.state = TrialState::Cancelled;
                    tr.reason = Some(format!("study {}", state.as_str()));
                    tr.finished_at = Some(t);
                    changed.push(tr.number);
                }
                TrialState::Running if tr.executor.as_deref() == Some("external") => {
                    tr.state = TrialState::Cancelled;
                    tr.reason = Some(format!("study {}", state.as_str()));
                    tr.finished_at = Some(t);
                    changed.push(tr.number);
                }
                TrialState::Running => {
                    self.executor
                        .cancel(&rt.record.name, tr.number, CancelReason::User)
                }
                _ => {}
            }
        }
        let recs: Vec<TrialRecord> = changed
            .into_iter()
            .map(|n| self.finish_trial(rt, n))
            .collect();
        if let Err(e) = self.store.put_trials(&recs) {
            tracing::error!(study = %rt.record.name, "cannot record cancelled trials: {e}");
        }
    }

    fn set_study_state(
        &self,
        rt: &mut StudyRuntime,
        state: StudyState,
        message: Option<String>,
        t: f64,
    ) {
        let mut rec = rt.record.clone();
        rec.state = state;
        rec.message = message;
        rec.updated_at = t;
        match self.store.update_study(&rec) {
            Ok(()) => {
                tracing::info!(study = %rec.name, state = state.as_str(), "study state changed");
                rt.record = rec;
            }
            Err(e) => {
                tracing::error!(study = %rec.name, "cannot record study state {}: {e}", state.as_str())
            }
        }
    }

    // ---- dispatch ----

    /// Starts as many trials as slots and budgets allow, round-robin between studies.
    fn dispatch(&self) {
        let mut launches = Vec::new();
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            if inner.stopping {
                return;
            }
            let names: Vec<String> = inner
                .studies
                .iter()
                .filter(|(_, rt)| {
                    rt.record.state == StudyState::Running
                        && rt.def.trial.workload.daemon_runs_trials()
                })
                .filter(|(n, _)| self.only_study.as_ref().is_none_or(|o| o == *n))
                .map(|(n, _)| n.clone())
                .collect();
            if names.is_empty() {
                return;
            }
            let t = now();
            let start = inner.rr % names.len();
            inner.rr = inner.rr.wrapping_add(1);
            let mut new_records = Vec::new();
            // One trial at a time, each to the study with the fewest trials in flight (ties in
            // round-robin order): a free slot goes to the study that holds the fewest, so a
            // study submitted later gets its share as soon as slots free up.
            loop {
                let mut order: Vec<usize> = (0..names.len()).collect();
                order.sort_by_cached_key(|&i| {
                    let name = &names[(start + i) % names.len()];
                    (inner.studies[name].in_flight(), i)
                });
                let mut progress = false;
                for i in order {
                    let name = &names[(start + i) % names.len()];
                    let rt = inner.studies.get_mut(name).expect("listed study exists");
                    if rt.in_flight() >= rt.def.budget.parallel
                        || rt.record.state != StudyState::Running
                    {
                        continue;
                    }
                    let Some(slot) = inner.slots.acquire(rt.def.trial.gpus) else {
                        continue;
                    };
                    let Some(n) = self.next_trial(rt, t) else {
                        inner.slots.release(&slot);
                        continue;
                    };
                    let tr = &mut rt.trials[n as usize];
                    tr.state = TrialState::Running;
                    tr.executor = Some(self.executor.name().to_string());
                    tr.slot = Some(slot.name.clone());
                    tr.started_at = Some(t);
                    tr.last_seen_at = Some(t);
                    new_records.push(tr.clone());
                    launches.push(Launch {
                        study: name.clone(),
                        trial: n,
                        attempt: tr.attempt,
                        params: tr.params.clone(),
                        spec: rt.spec.clone(),
                        slot: slot.clone(),
                        run_dir: self.run_root.join(name).join(n.to_string()),
                    });
                    rt.held.insert(n, slot);
                    progress = true;
                    break;
                }
                if !progress {
                    break;
                }
            }
            if new_records.is_empty() {
                return;
            }
            // Durable before the processes start.
            if let Err(e) = self.store.put_trials(&new_records) {
                tracing::error!(
                    "cannot record {} new trial(s); not starting them: {e}",
                    new_records.len()
                );
                for l in launches.drain(..) {
                    if let Some(rt) = inner.studies.get_mut(&l.study) {
                        if let Some(slot) = rt.held.remove(&l.trial) {
                            inner.slots.release(&slot);
                        }
                        let tr = &mut rt.trials[l.trial as usize];
                        tr.state = TrialState::Queued;
                        tr.slot = None;
                        tr.started_at = None;
                    }
                }
                return;
            }
        }
        for l in launches {
            tracing::debug!(study = %l.study, trial = l.trial, attempt = l.attempt, slot = %l.slot.name, "starting trial");
            self.executor.start(l);
        }
    }

    /// The number of the next trial to start: a queued one (retry) first, else a new one from
    /// the strategy (kept `queued` in memory until a slot is found).
    fn next_trial(&self, rt: &mut StudyRuntime, t: f64) -> Option<u64> {
        if let Some(tr) = rt.trials.iter().find(|t| t.state == TrialState::Queued) {
            return Some(tr.number);
        }
        if rt.exhausted || rt.trials.len() as u64 >= rt.def.budget.max_trials || rt.wall_exceeded(t)
        {
            return None;
        }
        let n = rt.trials.len() as u64;
        match suggest(rt, n) {
            Ok(params) => {
                rt.trials
                    .push(TrialRecord::new(&rt.record.name, n, params, t));
                Some(n)
            }
            Err(StrategyError::Exhausted { total }) => {
                tracing::info!(study = %rt.record.name, "design exhausted after {total} points");
                rt.exhausted = true;
                self.check_study(rt, t);
                None
            }
            Err(StrategyError::Invalid(m)) => {
                self.stop_study(
                    rt,
                    StudyState::Failed,
                    Some(format!("strategy error: {m}")),
                    t,
                );
                None
            }
        }
    }

    /// Periodic work: external-trial timeouts, wall-clock budgets, retrying failed flushes.
    fn tick(&self) {
        let t = now();
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            for rt in inner.studies.values_mut() {
                let timeout = rt.def.trial.timeout_secs;
                let stale: Vec<u64> = rt
                    .trials
                    .iter()
                    .filter(|tr| {
                        tr.state == TrialState::Running
                            && tr.executor.as_deref() == Some("external")
                    })
                    .filter(|tr| t - rt.last_seen.get(&tr.number).copied().unwrap_or(t) > timeout)
                    .map(|tr| tr.number)
                    .collect();
                for n in stale {
                    let reason = format!(
                        "timeout: no report for {}",
                        crate::duration::format_secs(timeout)
                    );
                    self.apply_failure(rt, n, reason, None, t);
                    inner.dirty.push((rt.record.name.clone(), n));
                }
                self.check_study(rt, t);
            }
            self.flush_dirty(inner);
        }
        self.dispatch();
    }

    // ---- API operations ----

    /// Registers a new study and wakes the scheduler.
    pub fn submit(&self, def: StudyDefinition, source: String) -> Result<StudySummary> {
        let mut inner = self.lock();
        if def.trial.workload.daemon_runs_trials()
            && def.trial.gpus > 0
            && inner.slots.gpu_devices() < def.trial.gpus as usize
        {
            return Err(EngineError::BadRequest(format!(
                "trial.gpus = {} but this daemon has {} GPU(s); set trial.gpus = 0 to run on CPU slots",
                def.trial.gpus,
                inner.slots.gpu_devices()
            )));
        }
        if inner.studies.contains_key(&def.name) {
            return Err(EngineError::Conflict(format!(
                "a study named '{}' already exists; choose another [study] name",
                def.name
            )));
        }
        let json = serde_json::to_value(&def).map_err(|e| EngineError::Internal(e.to_string()))?;
        let record = StudyRecord::new(&def.name, json, source, now());
        self.store.create_study(&record)?;
        let rt = runtime(record, Vec::new()).map_err(EngineError::Internal)?;
        let summary = rt.summary();
        tracing::info!(study = %def.name, "study submitted");
        inner.studies.insert(def.name.clone(), rt);
        drop(inner);
        self.poke();
        Ok(summary)
    }

    /// The stored definition and source of a study (for `run` to resume).
    pub fn definition(&self, name: &str) -> Result<(StudyDefinition, String)> {
        let inner = self.lock();
        let rt = inner.studies.get(name).ok_or_else(|| not_found(name))?;
        Ok(((*rt.def).clone(), rt.record.source.clone()))
    }

    /// Every study, by name.
    pub fn studies(&self) -> Vec<StudySummary> {
        self.lock()
            .studies
            .values()
            .map(StudyRuntime::summary)
            .collect()
    }

    /// One study.
    pub fn study(&self, name: &str) -> Result<StudySummary> {
        self.lock()
            .studies
            .get(name)
            .map(StudyRuntime::summary)
            .ok_or_else(|| not_found(name))
    }

    /// A study's trials by number.
    pub fn trials(&self, name: &str) -> Result<Vec<TrialView>> {
        let inner = self.lock();
        let rt = inner.studies.get(name).ok_or_else(|| not_found(name))?;
        Ok(rt.trials.iter().map(TrialView::from).collect())
    }

    /// One trial with its intermediate reports.
    pub fn trial(&self, name: &str, n: u64) -> Result<(TrialView, Vec<Report>)> {
        let view = {
            let inner = self.lock();
            let rt = inner.studies.get(name).ok_or_else(|| not_found(name))?;
            let tr = rt
                .trials
                .get(n as usize)
                .ok_or_else(|| EngineError::NotFound(format!("study '{name}' has no trial {n}")))?;
            TrialView::from(tr)
        };
        Ok((view, self.store.reports(name, n)?))
    }

    /// The leaderboard rows.
    pub fn leaderboard(&self, name: &str, top: Option<usize>) -> Result<Vec<leaderboard::Row>> {
        let inner = self.lock();
        let rt = inner.studies.get(name).ok_or_else(|| not_found(name))?;
        Ok(leaderboard::build(&rt.def, &rt.trials, top))
    }

    /// Stops starting new trials of a study; running ones go on.
    pub fn pause(&self, name: &str) -> Result<StudySummary> {
        self.transition(name, |s| match s {
            StudyState::Running | StudyState::Paused => Ok(StudyState::Paused),
            other => Err(format!(
                "study '{name}' is {} and cannot be paused",
                other.as_str()
            )),
        })
    }

    /// Lets a paused study schedule again.
    pub fn resume(&self, name: &str) -> Result<StudySummary> {
        let s = self.transition(name, |s| match s {
            StudyState::Paused | StudyState::Running => Ok(StudyState::Running),
            other => Err(format!(
                "study '{name}' is {} and cannot be resumed",
                other.as_str()
            )),
        })?;
        self.poke();
        Ok(s)
    }

    fn transition(
        &self,
        name: &str,
        f: impl FnOnce(StudyState) -> std::result::Result<StudyState, String>,
    ) -> Result<StudySummary> {
        let mut inner = self.lock();
        let rt = inner.studies.get_mut(name).ok_or_else(|| not_found(name))?;
        let next = f(rt.record.state).map_err(EngineError::Conflict)?;
        if next != rt.record.state {
            let mut rec = rt.record.clone();
            rec.state = next;
            rec.updated_at = now();
            self.store.update_study(&rec)?;
            rt.record = rec;
        }
        // A resumed study may already be done.
        self.check_study(rt, now());
        Ok(rt.summary())
    }

    /// Cancels a study: queued trials cancelled, running ones stopped.
    pub fn cancel(&self, name: &str) -> Result<StudySummary> {
        let mut inner = self.lock();
        let rt = inner.studies.get_mut(name).ok_or_else(|| not_found(name))?;
        if rt.record.state.is_finished() {
            return Err(EngineError::Conflict(format!(
                "study '{name}' is already {}",
                rt.record.state.as_str()
            )));
        }
        self.stop_study(
            rt,
            StudyState::Cancelled,
            Some("cancelled by a user".into()),
            now(),
        );
        if !rt.record.state.is_finished() {
            return Err(EngineError::Internal(
                "cannot record the cancellation".into(),
            ));
        }
        Ok(rt.summary())
    }

    /// `ask`: hands out the next trial of an external study and marks it running.
    pub fn ask(&self, name: &str) -> Result<(u64, Params)> {
        let mut inner = self.lock();
        let rt = inner.studies.get_mut(name).ok_or_else(|| not_found(name))?;
        if rt.def.trial.workload != Workload::External {
            return Err(EngineError::BadRequest(format!(
                "study '{name}' runs its own trials (trial.workload = \"command\"); ask/tell need workload = \"external\""
            )));
        }
        if rt.record.state != StudyState::Running {
            return Err(EngineError::Conflict(format!(
                "study '{name}' is {}; no new trials are handed out",
                rt.record.state.as_str()
            )));
        }
        if rt.in_flight() >= rt.def.budget.parallel {
            return Err(EngineError::Conflict(format!(
                "study '{name}' already has {} trial(s) running (budget.parallel = {}); tell one first",
                rt.in_flight(),
                rt.def.budget.parallel
            )));
        }
        let t = now();
        let Some(n) = self.next_trial(rt, t) else {
            return Err(EngineError::Conflict(format!(
                "study '{name}' has handed out all its trials (budget.max_trials = {})",
                rt.def.budget.max_trials
            )));
        };
        let tr = &mut rt.trials[n as usize];
        tr.state = TrialState::Running;
        tr.executor = Some("external".into());
        tr.started_at = Some(t);
        tr.last_seen_at = Some(t);
        let rec = tr.clone();
        if let Err(e) = self.store.put_trial(&rec) {
            let tr = &mut rt.trials[n as usize];
            tr.state = TrialState::Queued;
            tr.started_at = None;
            return Err(e.into());
        }
        rt.last_seen.insert(n, t);
        Ok((n, rec.params))
    }

    /// `report`: stores an intermediate value of a running trial; returns whether to prune.
    pub fn report(
        &self,
        name: &str,
        n: u64,
        step: u64,
        values: BTreeMap<String, f64>,
    ) -> Result<bool> {
        let mut inner = self.lock();
        let rt = inner.studies.get_mut(name).ok_or_else(|| not_found(name))?;
        let tr = rt
            .trials
            .get(n as usize)
            .ok_or_else(|| EngineError::NotFound(format!("study '{name}' has no trial {n}")))?;
        if tr.state != TrialState::Running {
            return Err(EngineError::Conflict(format!(
                "trial {n} of '{name}' is {}, not running",
                tr.state.as_str()
            )));
        }
        self.store.add_report(
            name,
            n,
            &Report {
                step,
                values,
                at: now(),
            },
        )?;
        rt.last_seen.insert(n, now());
        Ok(false)
    }

    /// `tell`: finishes a running external trial.
    pub fn tell(&self, name: &str, n: u64, outcome: TellOutcome) -> Result<TrialView> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let rt = inner.studies.get_mut(name).ok_or_else(|| not_found(name))?;
        let tr = rt
            .trials
            .get(n as usize)
            .ok_or_else(|| EngineError::NotFound(format!("study '{name}' has no trial {n}")))?;
        if tr.state != TrialState::Running || tr.executor.as_deref() != Some("external") {
            return Err(EngineError::Conflict(format!(
                "trial {n} of '{name}' is {}{}; only a running trial handed out by `ask` can be told",
                tr.state.as_str(),
                if tr.executor.as_deref() == Some("external") { "" } else { " (run by the daemon)" }
            )));
        }
        let outcome = match outcome {
            TellOutcome::Complete(metrics) => {
                let missing = missing_metrics(&rt.def, &metrics);
                if !missing.is_empty() {
                    return Err(EngineError::BadRequest(format!(
                        "--metrics lacks {} (every objective and constraint metric is needed)",
                        missing.join(", ")
                    )));
                }
                AttemptOutcome::Complete {
                    metrics,
                    info: BTreeMap::new(),
                }
            }
            TellOutcome::Failed(r) => AttemptOutcome::Failed {
                reason: r,
                stderr_tail: None,
            },
            TellOutcome::Infeasible(r) => AttemptOutcome::Infeasible(r),
        };
        let t = now();
        let before = rt.trials[n as usize].clone();
        let rec = self.apply_outcome(rt, n, outcome, t);
        if let Err(e) = self.store.put_trial(&rec) {
            rt.trials[n as usize] = before;
            if rec.state.is_finished() {
                rt.observations.pop();
            }
            return Err(e.into());
        }
        self.check_study(rt, t);
        let view = TrialView::from(&rec);
        drop(guard);
        if rec.state.is_finished() {
            let _ = self.finished_tx.send(rec);
        }
        Ok(view)
    }

    /// A study as JSON lines (SPEC §5 `export`).
    pub fn export(&self, name: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.store.export_study(name, &mut out)?;
        Ok(out)
    }

    /// Imports exported JSON lines as new studies and loads them.
    pub fn import(&self, data: &[u8]) -> Result<quantune_state::ImportSummary> {
        check_import(data)?;
        let mut inner = self.lock();
        let summary = self
            .store
            .import(&mut std::io::Cursor::new(data))
            .map_err(|e| match e {
                quantune_state::StoreError::Import { .. } => EngineError::BadRequest(e.to_string()),
                other => other.into(),
            })?;
        for name in &summary.studies {
            let record = self.store.study(name)?.ok_or_else(|| not_found(name))?;
            let trials = self.store.trials(name)?;
            let mut rt = runtime(record, trials).map_err(EngineError::BadRequest)?;
            // Trials that were running where the study was exported run nowhere here.
            for n in self.reconcile(&mut rt, IMPORT_REASON, now()) {
                inner.dirty.push((name.clone(), n));
            }
            inner.studies.insert(name.clone(), rt);
        }
        self.flush_dirty(&mut inner);
        drop(inner);
        self.poke();
        Ok(summary)
    }

    /// Slot usage.
    pub fn slots(&self) -> SlotUsage {
        self.lock().slots.usage()
    }
}

/// The objective and constraint metrics a final result lacks.
fn missing_metrics<'a>(def: &'a StudyDefinition, metrics: &BTreeMap<String, f64>) -> Vec<&'a str> {
    def.objectives
        .iter()
        .map(|o| o.metric.as_str())
        .chain(def.constraints.iter().map(|c| c.metric.as_str()))
        .filter(|m| !metrics.contains_key(*m))
        .collect()
}

fn not_found(name: &str) -> EngineError {
    EngineError::NotFound(format!("no study named '{name}' (see `quantune studies`)"))
}

/// Checks what the store's own format checks do not: that every imported study is one this
/// scheduler can load (readable definition, a known strategy, trials numbered without gaps).
/// The store keeps what it imports, so an unloadable study must be refused before that.
fn check_import(data: &[u8]) -> Result<()> {
    use quantune_state::ExportLine;
    let text = std::str::from_utf8(data).map_err(|e| {
        EngineError::BadRequest(format!("import: the data is not UTF-8 text ({e})"))
    })?;
    let mut studies: Vec<(usize, StudyRecord, Vec<TrialRecord>)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ExportLine>(raw) {
            Ok(ExportLine::Study(s)) => studies.push((i + 1, s, Vec::new())),
            Ok(ExportLine::Trial { trial, .. }) => {
                if let Some(last) = studies.last_mut() {
                    last.2.push(trial);
                }
            }
            // The store's import names the malformed line.
            Err(_) => return Ok(()),
        }
    }
    for (line, record, mut trials) in studies {
        trials.sort_by_key(|t| t.number);
        let name = record.name.clone();
        runtime(record, trials).map_err(|e| {
            EngineError::BadRequest(format!("import line {line}: study '{name}': {e}"))
        })?;
    }
    Ok(())
}

/// Rebuilds a study's runtime from its stored record and trials.
fn runtime(
    record: StudyRecord,
    trials: Vec<TrialRecord>,
) -> std::result::Result<StudyRuntime, String> {
    let def: StudyDefinition = serde_json::from_value(record.definition.clone())
        .map_err(|e| format!("stored definition of '{}' is unreadable: {e}", record.name))?;
    let strategy = registry::build(&def.strategy.kind, &def.strategy.options())?;
    for (i, t) in trials.iter().enumerate() {
        if t.number != i as u64 {
            return Err(format!(
                "study '{}' has a gap in its trial numbers at {i}",
                record.name
            ));
        }
    }
    let mut finished: Vec<&TrialRecord> = trials.iter().filter(|t| t.state.is_finished()).collect();
    finished.sort_by(|a, b| {
        a.finished_at
            .unwrap_or(0.0)
            .total_cmp(&b.finished_at.unwrap_or(0.0))
            .then(a.number.cmp(&b.number))
    });
    let observations = finished.into_iter().map(observation).collect();
    let spec = Arc::new(def.trial.clone());
    Ok(StudyRuntime {
        def: Arc::new(def),
        spec,
        record,
        strategy,
        trials,
        observations,
        held: HashMap::new(),
        last_seen: HashMap::new(),
        exhausted: false,
    })
}

fn observation(t: &TrialRecord) -> Observation {
    Observation {
        number: t.number,
        params: t.params.clone(),
        outcome: match t.state {
            TrialState::Complete => Outcome::Complete,
            TrialState::Pruned => Outcome::Pruned,
            TrialState::Infeasible => Outcome::Infeasible,
            _ => Outcome::Failed,
        },
        metrics: t.metrics.clone(),
    }
}

/// Asks the study's strategy for trial `n`, from the history and the pending trials.
fn suggest(rt: &StudyRuntime, n: u64) -> std::result::Result<Params, StrategyError> {
    let pending: Vec<Params> = rt
        .trials
        .iter()
        .filter(|t| !t.state.is_finished())
        .map(|t| t.params.clone())
        .collect();
    let ctx = SuggestContext {
        space: &rt.def.space,
        objectives: &rt.def.objectives,
        constraints: &rt.def.constraints,
        history: &rt.observations,
        pending: &pending,
        trial_number: n,
        seed: rt.def.seed,
    };
    let params = rt.strategy.suggest(&ctx)?;
    if !rt.def.space.contains(&params) {
        return Err(StrategyError::Invalid(format!(
            "strategy {} suggested a point outside the space",
            rt.strategy.name()
        )));
    }
    Ok(params)
}
