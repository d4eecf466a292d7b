//! The scheduler: it keeps every study's trials in memory (rebuilt from the store on start),
//! asks each study's strategy for new trials, hands them to the executor on free slots —
//! round-robin between studies, at most `budget.parallel` per study — and records every state
//! change durably before acting on it. `quantune serve` and `quantune run` both drive it.
//!
//! A trial's life: created (durable) → started on a slot → executor events (reports, finished)
//! → outcome recorded (durable) → slot freed → next trial. Failures are retried with the same
//! parameters while `trial.retries` allow; a restart fails and re-queues trials the previous
//! process left `running` ("interrupted").

use crate::api::{BudgetUsage, StudySummary, TrialView};
use crate::executor::{AttemptOutcome, CancelReason, ExecEvent, Executor, Launch};
use crate::gpu::gib;
use crate::gpu_monitor::GpuMonitor;
use crate::hardware;
use crate::leaderboard;
use crate::metrics::Metrics;
use crate::slots::{Slot, SlotPool, SlotUsage};
use crate::study::{OnExhausted, StudyDefinition, TrialSpec, Workload};
use quantune_state::{
    AttemptRecord, Report, Store, StudyRecord, StudyState, TrialRecord, TrialState,
};
use quantune_strategies::pruner::{
    self, Curve, PruneContext, Pruner, QualityGate, Report as CurveReport,
};
use quantune_strategies::restrict::{suggest_excluding, Exclusions};
use quantune_strategies::{
    registry, Observation, Outcome, Params, Strategy, StrategyError, SuggestContext,
};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Set once a store write has failed with an I/O error (a full disk, a failing device). sled
/// refuses every later write after one, even once space is freed, so the daemon watches this
/// and restarts itself (`quantune serve` exits 1; systemd starts it again): the fresh process
/// reopens the store, and what the failed writes were about is retried, not lost (acknowledged
/// changes are durable; the rest is reconciled: trials that were running run again).
static STORE_IO_FAILED: AtomicBool = AtomicBool::new(false);

/// Whether a store write has failed with an I/O error in this process (see [`STORE_IO_FAILED`]).
pub fn store_io_failed() -> bool {
    STORE_IO_FAILED.load(Ordering::SeqCst)
}

/// Records a failed store write (see [`STORE_IO_FAILED`]).
fn note_store_error(e: &quantune_state::StoreError) {
    if matches!(e, quantune_state::StoreError::Io(_)) {
        STORE_IO_FAILED.store(true, Ordering::SeqCst);
    }
}

impl From<quantune_state::StoreError> for EngineError {
    fn from(e: quantune_state::StoreError) -> Self {
        note_store_error(&e);
        match e {
            quantune_state::StoreError::StudyExists(n) => EngineError::Conflict(format!(
                "a study named '{n}' already exists; choose another [study] name"
            )),
            quantune_state::StoreError::NoStudy(n) => {
                EngineError::NotFound(format!("no study named '{n}'"))
            }
            other => EngineError::Internal(format!("{other}{}", disk_hint(&other))),
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
    reason != SHUTDOWN_REASON
        && reason != IMPORT_REASON
        && !reason.starts_with(crate::executor::slurm::REQUEUE_PREFIX)
}

/// How long GPU memory promised to a starting trial (`trial.gpu_memory`) is held back from
/// what NVML reports free: about the time a trial takes to allocate it.
pub const GPU_RESERVE_SECS: f64 = 60.0;

/// Settings the engine is built with.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Directory under which each trial gets `<study>/<number>/` for its metrics and logs.
    pub run_root: PathBuf,
    /// CPU slots.
    pub cpu_slots: usize,
    /// The CUDA devices that get GPU slots (from discovery).
    pub gpus: Vec<crate::gpu::GpuInfo>,
    /// The CUDA version the driver supports (`"12.4"`), when a driver answered.
    pub cuda_version: Option<String>,
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
    /// Intermediate reports of every trial, by step (pruners compare these).
    curves: HashMap<u64, Vec<CurveReport>>,
    /// The study's pruner, if any.
    pruner: Option<Box<dyn Pruner>>,
    /// Why a running trial is being stopped (pruned, budget), until its attempt ends.
    stop_reasons: HashMap<u64, String>,
    /// The executor's own state of running trials (Slurm PENDING/RUNNING), for `status`.
    job_states: HashMap<u64, String>,
    /// Why no trial could start although the study has room (GPU memory, hardware), for
    /// `status`; cleared when one starts.
    waiting: Option<String>,
}

impl StudyRuntime {
    /// Trials that count against `budget.max_trials`: all but imported results.
    fn budgeted(&self) -> u64 {
        self.trials.iter().filter(|t| !t.imported).count() as u64
    }

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

    /// GPU time spent so far (every attempt, running ones up to `now`), in hours.
    fn gpu_hours(&self, now: f64) -> f64 {
        let gpus = f64::from(self.def.trial.gpus);
        if gpus == 0.0 {
            return 0.0;
        }
        let secs: f64 = self
            .trials
            .iter()
            .map(|t| {
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
            })
            .sum();
        // + 0.0: an empty float sum is -0.0, which would show as "-0.0" GPU-hours.
        gpus * secs / 3600.0 + 0.0
    }

    /// Which budget, other than `max_trials`, has run out.
    fn budget_exhausted(&self, now: f64) -> Option<&'static str> {
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
            trials: self.budgeted(),
            imported: self.trials.iter().filter(|t| t.imported).count() as u64,
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
            budget: BudgetUsage {
                wall_s: (if self.record.state.is_finished() {
                    self.record.updated_at
                } else {
                    now()
                } - self.record.created_at)
                    .max(0.0),
                max_wall_s: self.def.budget.max_wall_secs,
                gpu_hours: self.gpu_hours(now()),
                max_gpu_hours: self.def.budget.max_gpu_hours,
            },
            waiting: self.waiting.clone(),
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
    /// GPU memory promised to trials that started recently, per device: (start time, bytes).
    /// A trial allocates its memory some seconds after it starts; until then NVML's free
    /// figure still counts it as free.
    gpu_reserved: HashMap<u32, Vec<(f64, u64)>>,
}

/// The scheduler. Shared as `Arc<Engine>` by the API and the loop task.
pub struct Engine {
    /// The durable store; every change goes here before it is acted on.
    store: Arc<Store>,
    /// Where trials run.
    executors: Vec<Arc<dyn Executor>>,
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
    /// Prometheus metrics.
    metrics: Arc<Metrics>,
    /// GPU sampling (NVML) of local GPU trials.
    gpu_monitor: Arc<GpuMonitor>,
    /// The GPUs found at start, by CUDA index.
    gpus: BTreeMap<u32, crate::gpu::GpuInfo>,
    /// The CUDA version the driver supports.
    cuda_version: Option<String>,
    /// Bumped by every pass of the scheduler loop's periodic work: the systemd watchdog pings
    /// only while it moves, so a hung loop gets the daemon restarted.
    heartbeat: AtomicU64,
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
        executors: Vec<Arc<dyn Executor>>,
        cfg: EngineConfig,
    ) -> Result<Engine> {
        let (finished_tx, _) = broadcast::channel(1024);
        let engine = Engine {
            store,
            executors,
            inner: Mutex::new(Inner {
                studies: BTreeMap::new(),
                slots: SlotPool::new(
                    cfg.cpu_slots,
                    &cfg.gpus.iter().map(|g| g.index).collect::<Vec<_>>(),
                    cfg.trials_per_gpu,
                ),
                rr: 0,
                stopping: false,
                dirty: Vec::new(),
                to_release: Vec::new(),
                gpu_reserved: HashMap::new(),
            }),
            wake: Notify::new(),
            run_root: cfg.run_root,
            finished_tx,
            only_study: cfg.only_study,
            metrics: Arc::new(Metrics::new()),
            gpu_monitor: GpuMonitor::new(cfg.gpus.iter().map(|g| g.index).collect()),
            gpus: cfg.gpus.iter().map(|g| (g.index, g.clone())).collect(),
            cuda_version: cfg.cuda_version,
            heartbeat: AtomicU64::new(0),
        };
        let records = engine.store.studies()?;
        let mut inner = engine.lock();
        let t = now();
        for record in records {
            let name = record.name.clone();
            let trials = engine.store.trials(&name)?;
            let curves = engine.load_curves(&name, &trials)?;
            let mut rt = match runtime(record, trials, curves) {
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
        engine.count_finished(&inner);
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
        // Work that outlives the daemon (Slurm jobs) is followed on, not interrupted.
        for tr in rt.trials.iter().filter(|t| t.state == TrialState::Running) {
            if let Some(ex) = self
                .executor_named(tr.executor.as_deref())
                .filter(|e| e.survives_restart())
            {
                tracing::info!(study = %rt.record.name, trial = tr.number, job = ?tr.job_id, "re-attaching to a {} job", ex.name());
                ex.attach(
                    self.launch(rt, tr.number, Slot::detached(ex.name())),
                    tr.job_id.clone(),
                );
            }
        }
        let interrupted: Vec<u64> = rt
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Running && t.executor.as_deref() != Some("external"))
            .filter(|t| {
                !self
                    .executor_named(t.executor.as_deref())
                    .is_some_and(|e| e.survives_restart())
            })
            .map(|t| t.number)
            .collect();
        for &n in &interrupted {
            tracing::warn!(study = %rt.record.name, trial = n, "{reason}");
            let tr = &rt.trials[n as usize];
            // After a crash the attempt's processes may still run here: they must not run
            // beside the retry (a GPU held twice, skewed timings).
            if let Some(ex) = self
                .executor_named(tr.executor.as_deref())
                .filter(|_| reason == CRASH_REASON)
            {
                let run_dir = self.run_root.join(&rt.record.name).join(n.to_string());
                ex.reap(&rt.record.name, n, tr.attempt, &run_dir);
            }
            self.apply_failure(rt, n, reason.into(), None, t);
        }
        for tr in rt.trials.iter().filter(|t| t.state == TrialState::Running) {
            rt.last_seen.insert(tr.number, t);
        }
        self.check_study(rt, t);
        interrupted
    }

    /// Every trial's intermediate reports, from the store.
    fn load_curves(
        &self,
        study: &str,
        trials: &[TrialRecord],
    ) -> Result<HashMap<u64, Vec<CurveReport>>> {
        let mut curves = HashMap::new();
        for t in trials {
            let reports = self.store.reports(study, t.number)?;
            if !reports.is_empty() {
                curves.insert(
                    t.number,
                    reports.into_iter().map(|r| (r.step, r.values)).collect(),
                );
            }
        }
        Ok(curves)
    }

    /// Stores an intermediate report of a running trial and asks the quality gate and the
    /// pruner about it; returns why the trial should stop, if it should.
    fn record_report(
        &self,
        rt: &mut StudyRuntime,
        n: u64,
        step: u64,
        values: BTreeMap<String, f64>,
        t: f64,
    ) -> Result<Option<String>> {
        let name = rt.record.name.clone();
        self.store.add_report(
            &name,
            n,
            &Report {
                step,
                values: values.clone(),
                at: t,
            },
        )?;
        rt.last_seen.insert(n, t);
        if rt.stop_reasons.contains_key(&n) {
            // Reports written after the decision do not count: pruners see the curve as it was.
            return Ok(None);
        }
        let curve = rt.curves.entry(n).or_default();
        match curve.iter().position(|(s, _)| *s >= step) {
            Some(i) if curve[i].0 == step => curve[i].1 = values.clone(),
            Some(i) => curve.insert(i, (step, values.clone())),
            None => curve.push((step, values.clone())),
        }
        if let Some(grace) = rt.def.pruner.constraint_grace {
            let gate = QualityGate {
                constraints: rt.def.constraints.clone(),
                grace,
            };
            if let Some(reason) = gate.check(step, &values) {
                return Ok(Some(reason));
            }
        }
        let Some(p) = rt.pruner.as_ref() else {
            return Ok(None);
        };
        // Only a report at the trial's newest step is a new decision point.
        if rt.curves[&n].last().is_some_and(|(s, _)| *s != step) {
            return Ok(None);
        }
        let others: Vec<Curve> = rt
            .curves
            .iter()
            .filter(|(k, _)| **k != n)
            .map(|(k, c)| Curve {
                number: *k,
                reports: c,
                complete: rt
                    .trials
                    .get(*k as usize)
                    .is_some_and(|t| t.state == TrialState::Complete),
            })
            .collect();
        let ctx = PruneContext {
            trial: Curve {
                number: n,
                reports: &rt.curves[&n],
                complete: false,
            },
            others: &others,
            metrics: &rt.def.pruner.metrics,
        };
        Ok(p.decide(&ctx)
            .map(|r| format!("pruned at step {step}: {r}")))
    }

    /// Sets the finished-trials counters to what the studies hold (after loading them).
    fn count_finished(&self, inner: &Inner) {
        self.metrics.trials_finished.reset();
        for rt in inner.studies.values() {
            for (state, n) in rt.counts() {
                if !matches!(state, "queued" | "running") {
                    self.metrics
                        .trials_finished
                        .with_label_values(&[rt.record.name.as_str(), state])
                        .inc_by(n);
                }
            }
        }
    }

    /// The Prometheus exposition, with the gauges set from the current state.
    pub fn render_metrics(&self) -> String {
        {
            let inner = self.lock();
            let m = &self.metrics;
            m.trials_running.reset();
            m.trials_queued.reset();
            let mut slurm_busy = 0;
            for rt in inner.studies.values() {
                let counts = rt.counts();
                let name = rt.record.name.as_str();
                m.trials_running
                    .with_label_values(&[name])
                    .set(counts.get("running").copied().unwrap_or(0) as i64);
                m.trials_queued
                    .with_label_values(&[name])
                    .set(counts.get("queued").copied().unwrap_or(0) as i64);
                slurm_busy += rt
                    .trials
                    .iter()
                    .filter(|t| {
                        t.state == TrialState::Running && t.executor.as_deref() == Some("slurm")
                    })
                    .count();
            }
            let u = inner.slots.usage();
            for (kind, total, busy) in [
                ("cpu", u.cpu_total, u.cpu_busy),
                ("gpu", u.gpu_total, u.gpu_busy),
            ] {
                m.slots.with_label_values(&[kind, "busy"]).set(busy as i64);
                m.slots
                    .with_label_values(&[kind, "free"])
                    .set(total.saturating_sub(busy) as i64);
            }
            if self.executor_named(Some("slurm")).is_some() {
                m.slots
                    .with_label_values(&["slurm", "busy"])
                    .set(slurm_busy as i64);
            }
            m.studies.set(inner.studies.len() as i64);
        }
        self.metrics.render()
    }

    /// Every local GPU with its last sample and the trial holding it.
    pub fn gpu_states(&self) -> Vec<crate::gpu_monitor::GpuState> {
        self.gpu_monitor.snapshot()
    }

    /// The executor a trial record or study names (`None` for external trials).
    fn executor_named(&self, name: Option<&str>) -> Option<&Arc<dyn Executor>> {
        self.executors.iter().find(|e| Some(e.name()) == name)
    }

    /// Asks whatever runs a trial to stop it.
    fn stop_trial(&self, study: &str, tr: &TrialRecord, why: CancelReason) {
        if let Some(ex) = self.executor_named(tr.executor.as_deref()) {
            ex.cancel(study, tr.number, why);
        }
    }

    /// What an executor needs to start (or re-attach to) the current attempt of trial `n`.
    fn launch(&self, rt: &StudyRuntime, n: u64, slot: Slot) -> Launch {
        let tr = &rt.trials[n as usize];
        Launch {
            study: rt.record.name.clone(),
            trial: n,
            attempt: tr.attempt,
            params: tr.params.clone(),
            spec: rt.spec.clone(),
            slot,
            run_dir: self.run_root.join(&rt.record.name).join(n.to_string()),
        }
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
        self.gpu_monitor.spawn(self.metrics.clone());
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
                // `held` has the trials running on local slots; Slurm jobs run on.
                for n in rt.held.keys() {
                    self.stop_trial(
                        &rt.record.name,
                        &rt.trials[*n as usize],
                        CancelReason::Shutdown,
                    );
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
                    let Some(rt) = inner.studies.get_mut(&study) else {
                        continue;
                    };
                    let current = rt
                        .trials
                        .get(trial as usize)
                        .is_some_and(|tr| tr.attempt == attempt && tr.state == TrialState::Running);
                    if current {
                        match self.record_report(rt, trial, step, values, t) {
                            Ok(Some(reason)) => {
                                tracing::info!(%study, trial, "{reason}");
                                rt.stop_reasons.insert(trial, reason);
                                self.stop_trial(
                                    &study,
                                    &rt.trials[trial as usize],
                                    CancelReason::Pruned,
                                );
                            }
                            Ok(None) => {}
                            Err(e) => tracing::error!(%study, trial, "cannot store a report: {e}"),
                        }
                    }
                }
                ExecEvent::Started {
                    study,
                    trial,
                    attempt,
                    job_id,
                } => {
                    let inner = &mut *inner;
                    let Some(rt) = inner.studies.get_mut(&study) else {
                        continue;
                    };
                    let Some(tr) = rt.trials.get_mut(trial as usize) else {
                        continue;
                    };
                    if tr.attempt == attempt
                        && tr.state == TrialState::Running
                        && tr.job_id.as_deref() != Some(job_id.as_str())
                    {
                        tracing::info!(%study, trial, %job_id, "submitted");
                        tr.job_id = Some(job_id);
                        inner.dirty.push((study.clone(), trial));
                    }
                }
                ExecEvent::JobState {
                    study,
                    trial,
                    attempt,
                    state,
                } => {
                    let Some(rt) = inner.studies.get_mut(&study) else {
                        continue;
                    };
                    if rt
                        .trials
                        .get(trial as usize)
                        .is_some_and(|tr| tr.attempt == attempt)
                    {
                        rt.job_states.insert(trial, state);
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
                        if !slot.gpus.is_empty() {
                            let tr = &mut rt.trials[trial as usize];
                            self.gpu_monitor.finished(&study, trial, 0.0, &mut tr.gpu);
                        }
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
            let t0 = std::time::Instant::now();
            let written = self.store.put_trials(&records);
            self.metrics
                .flush_seconds
                .with_label_values(&["put_trials"])
                .observe(t0.elapsed().as_secs_f64());
            if let Err(e) = written {
                note_store_error(&e);
                tracing::error!(
                    "cannot record {} trial change(s), will retry every second: {e}{}",
                    inner.dirty.len(),
                    disk_hint(&e)
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
                // What the daemon recorded at the start (host, GPU), overridden by the trial's.
                tr.info.extend(info);
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
                let fallback = if why == CancelReason::Pruned {
                    "pruned"
                } else {
                    "cancelled"
                };
                tr.reason = Some(
                    rt.stop_reasons
                        .remove(&n)
                        .unwrap_or_else(|| fallback.into()),
                );
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
        rt.stop_reasons.remove(&n);
        rt.job_states.remove(&n);
        let gpus = f64::from(rt.def.trial.gpus);
        let tr = &mut rt.trials[n as usize];
        if gpus > 0.0 {
            let secs: f64 = tr
                .attempts
                .iter()
                .map(|a| (a.finished_at - a.started_at.unwrap_or(a.finished_at)).max(0.0))
                .sum::<f64>()
                + tr.duration().unwrap_or(0.0).max(0.0);
            tr.gpu.get_or_insert_with(Default::default).gpu_seconds = gpus * secs;
        }
        self.metrics
            .trials_finished
            .with_label_values(&[rt.record.name.as_str(), tr.state.as_str()])
            .inc();
        if let Some(d) = tr.duration() {
            self.metrics
                .trial_seconds
                .with_label_values(&[tr.state.as_str()])
                .observe(d.max(0.0));
        }
        tr.slot = None;
        let tr = tr.clone();
        rt.observations.push(observation(&tr, rt.curves.get(&n)));
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
        let exhausted_by = rt.budget_exhausted(t);
        if let (Some(why), OnExhausted::Cancel) = (exhausted_by, rt.def.budget.on_exhausted) {
            // Stop what still runs; the trials are recorded as cancelled with the reason.
            for tr in rt.trials.iter().filter(|t| t.state == TrialState::Running) {
                if tr.executor.as_deref() != Some("external")
                    && !rt.stop_reasons.contains_key(&tr.number)
                {
                    rt.stop_reasons
                        .insert(tr.number, format!("cancelled: {why}"));
                    self.stop_trial(&rt.record.name, tr, CancelReason::User);
                }
            }
        }
        let all_done = rt.trials.iter().all(|t| t.state.is_finished());
        let budget_done =
            rt.budgeted() >= rt.def.budget.max_trials || rt.exhausted || exhausted_by.is_some();
        if all_done && budget_done {
            let msg = if rt.exhausted {
                Some("every point of the design was tried".into())
            } else if rt.budgeted() < rt.def.budget.max_trials {
                exhausted_by.map(String::from)
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
                TrialState::Running => self.stop_trial(&rt.record.name, tr, CancelReason::User),
                _ => {}
            }
        }
        let recs: Vec<TrialRecord> = changed
            .into_iter()
            .map(|n| self.finish_trial(rt, n))
            .collect();
        if let Err(e) = self.store.put_trials(&recs) {
            note_store_error(&e);
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
                note_store_error(&e);
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
                    let Some(ex) = self.executor_named(Some(rt.def.trial.executor.as_str())) else {
                        // Submitted to a daemon that had it (submit refuses otherwise), then
                        // restarted without it: wait, saying why, rather than fail the study.
                        let why = format!(
                            "waiting: trial.executor = \"{0}\" but this daemon has no such executor; configure [executor.{0}] in the daemon config (see docs/DEPLOY.md) and restart it",
                            rt.def.trial.executor
                        );
                        if rt.waiting.as_deref() != Some(why.as_str()) {
                            tracing::error!(study = %name, "{why}");
                            rt.waiting = Some(why);
                        }
                        continue;
                    };
                    // Local trials take a slot here; a cluster's scheduler places the others.
                    let local = !ex.survives_restart();
                    let slot = if local {
                        match self.acquire_slot(rt, &mut inner.slots, &mut inner.gpu_reserved, t) {
                            Some(slot) => slot,
                            None => continue,
                        }
                    } else {
                        Slot::detached(ex.name())
                    };
                    let exclusions = if local {
                        self.exclusions_for(&rt.def, &slot)
                    } else {
                        Exclusions::none()
                    };
                    let Some(n) = self.next_trial(rt, t, &exclusions) else {
                        inner.slots.release(&slot);
                        continue;
                    };
                    rt.waiting = None;
                    if let Some(bytes) = rt.def.trial.gpu_memory.filter(|_| local) {
                        for d in &slot.gpus {
                            inner.gpu_reserved.entry(*d).or_default().push((t, bytes));
                        }
                    }
                    let tr = &mut rt.trials[n as usize];
                    let queued_since = tr.attempts.last().map_or(tr.created_at, |a| a.finished_at);
                    self.metrics
                        .queue_seconds
                        .with_label_values(&[ex.name()])
                        .observe((t - queued_since).max(0.0));
                    if !slot.gpus.is_empty() {
                        self.gpu_monitor.started(name, n, &slot.gpus);
                    }
                    tr.state = TrialState::Running;
                    tr.executor = Some(ex.name().to_string());
                    if local {
                        self.record_environment(tr, &slot);
                    }
                    tr.slot = Some(slot.name.clone());
                    tr.job_id = None;
                    tr.started_at = Some(t);
                    tr.last_seen_at = Some(t);
                    new_records.push(tr.clone());
                    launches.push(self.launch(rt, n, slot.clone()));
                    if local {
                        rt.held.insert(n, slot);
                    }
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
            let t0 = std::time::Instant::now();
            let written = self.store.put_trials(&new_records);
            self.metrics
                .flush_seconds
                .with_label_values(&["put_trials"])
                .observe(t0.elapsed().as_secs_f64());
            if let Err(e) = written {
                note_store_error(&e);
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
            if let Some(ex) = self.executor_named(Some(l.spec.executor.as_str())) {
                ex.start(l);
            }
        }
    }

    /// Takes a slot for one of `rt`'s trials: a CPU slot, or GPUs that are healthy and have
    /// the free memory the study asks for (`trial.gpu_memory`, less what trials started in the
    /// last [`GPU_RESERVE_SECS`] have been promised). When GPUs are free but none qualifies,
    /// notes why on the study (`status` shows it) and returns `None`: the trial waits.
    fn acquire_slot(
        &self,
        rt: &mut StudyRuntime,
        slots: &mut SlotPool,
        reserved: &mut HashMap<u32, Vec<(f64, u64)>>,
        t: f64,
    ) -> Option<Slot> {
        let gpus = rt.def.trial.gpus;
        if gpus == 0 {
            return slots.acquire(0);
        }
        for list in reserved.values_mut() {
            list.retain(|(at, _)| t - at < GPU_RESERVE_SECS);
        }
        let need = rt.def.trial.gpu_memory;
        let mut refused: Vec<String> = Vec::new();
        let slot = slots.acquire_where(gpus, |d| match self.gpu_monitor.free_memory(d) {
            Err(e) => {
                refused.push(format!("gpu{d} unhealthy ({e})"));
                false
            }
            Ok(None) => true, // no NVML: cannot check; the trial finds out
            Ok(Some(free)) => {
                let promised: u64 = reserved.get(&d).map_or(0, |l| l.iter().map(|r| r.1).sum());
                let free = free.saturating_sub(promised);
                match need {
                    Some(need) if free < need => {
                        refused.push(format!("gpu{d} has {} free", gib(free)));
                        false
                    }
                    _ => true,
                }
            }
        });
        if slot.is_none() && !refused.is_empty() {
            let why = match need {
                Some(need) => format!(
                    "waiting for GPUs: trial.gpu_memory = {} per GPU; {}",
                    gib(need),
                    refused.join(", ")
                ),
                None => format!("waiting for GPUs: {}", refused.join(", ")),
            };
            if rt.waiting.as_deref() != Some(why.as_str()) {
                tracing::info!(study = %rt.record.name, "{why}");
                rt.waiting = Some(why);
            }
        }
        slot
    }

    /// The choices a trial on `slot` cannot run (`space.<p>.requires`).
    fn exclusions_for(&self, def: &StudyDefinition, slot: &Slot) -> Exclusions {
        if def.requires.is_empty() {
            return Exclusions::none();
        }
        let gpus: Vec<&crate::gpu::GpuInfo> =
            slot.gpus.iter().filter_map(|d| self.gpus.get(d)).collect();
        hardware::exclusions(&def.requires, &gpus)
    }

    /// The choices no slot of this daemon can run for `def` (a CPU study: every choice with a
    /// requirement; a GPU study: those fewer than `trial.gpus` of the GPUs meet).
    fn impossible(&self, def: &StudyDefinition) -> Exclusions {
        let mut e = Exclusions::none();
        for r in &def.requires {
            let meeting = self.gpus.values().filter(|g| r.met_by(&[g])).count();
            if def.trial.gpus == 0 || meeting < def.trial.gpus as usize {
                e.exclude(&r.param, r.choice.clone());
            }
        }
        e
    }

    /// The GPUs this daemon has, for messages: `NVIDIA H100 (cc 9.0)`, or `none`.
    fn gpu_list(&self) -> String {
        if self.gpus.is_empty() {
            return "none".into();
        }
        self.gpus
            .values()
            .map(|g| format!("gpu{} {}", g.index, g.label()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Stores where a local trial runs: the host, quantune's version, and its GPUs with the
    /// driver and CUDA versions (the trial's own values of these keys win when it reports them).
    fn record_environment(&self, tr: &mut TrialRecord, slot: &Slot) {
        tr.info
            .insert("host".into(), crate::host::description().to_string());
        tr.info
            .insert("quantune_version".into(), env!("CARGO_PKG_VERSION").into());
        if slot.gpus.is_empty() {
            return;
        }
        let names: Vec<String> = slot
            .gpus
            .iter()
            .map(|d| self.gpus.get(d).map_or(format!("gpu{d}"), |g| g.label()))
            .collect();
        tr.info.insert("gpu".into(), names.join(", "));
        if let Some(v) = self.gpu_monitor.driver_version() {
            tr.info.insert("gpu_driver".into(), v);
        }
        if let Some(v) = &self.cuda_version {
            tr.info.insert("cuda_version".into(), v.clone());
        }
    }

    /// The number of the next trial to start on a slot that cannot run `exclusions`: a queued
    /// one (retry, enqueued) it can run first, else a new one from the strategy (kept `queued`
    /// in memory until a slot is found).
    fn next_trial(&self, rt: &mut StudyRuntime, t: f64, exclusions: &Exclusions) -> Option<u64> {
        if let Some(tr) = rt
            .trials
            .iter()
            .find(|t| t.state == TrialState::Queued && exclusions.allows(&t.params))
        {
            return Some(tr.number);
        }
        if rt.exhausted
            || rt.budgeted() >= rt.def.budget.max_trials
            || rt.budget_exhausted(t).is_some()
        {
            return None;
        }
        let n = rt.trials.len() as u64;
        let t0 = std::time::Instant::now();
        let suggested = suggest(rt, n, exclusions);
        // Under exclusions only this slot is out of points; the study is, only when no slot
        // of this daemon can run the excluded choices either.
        let slot_only = !exclusions.is_empty() && *exclusions != self.impossible(&rt.def);
        self.metrics
            .suggestion_seconds
            .with_label_values(&[rt.def.strategy.kind.as_str()])
            .observe(t0.elapsed().as_secs_f64());
        match suggested {
            Ok(params) => {
                rt.trials
                    .push(TrialRecord::new(&rt.record.name, n, params, t));
                Some(n)
            }
            Err(StrategyError::Exhausted { .. } | StrategyError::Invalid(_)) if slot_only => None,
            Err(StrategyError::Exhausted { total }) => {
                tracing::info!(study = %rt.record.name, "design exhausted after {total} points");
                rt.exhausted = true;
                self.check_study(rt, t);
                None
            }
            Err(StrategyError::Invalid(m)) => {
                let message = if exclusions.is_empty() {
                    format!("strategy error: {m}")
                } else {
                    let needs: Vec<String> = rt.def.requires.iter().map(|r| r.describe()).collect();
                    format!(
                        "{m}: {} (GPUs of this daemon: {})",
                        needs.join("; "),
                        self.gpu_list()
                    )
                };
                self.stop_study(rt, StudyState::Failed, Some(message), t);
                None
            }
        }
    }

    /// Periodic work: external-trial timeouts, wall-clock budgets, retrying failed flushes.
    fn tick(&self) {
        let t = now();
        {
            let mut guard = self.lock();
            // Counted with the lock held: a loop stuck on it (or anywhere) stops the count.
            self.heartbeat.fetch_add(1, Ordering::Relaxed);
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
            && self
                .executor_named(Some(def.trial.executor.as_str()))
                .is_none()
        {
            return Err(EngineError::BadRequest(format!(
                "trial.executor = \"{}\" but this daemon has no such executor; configure [executor.{}] in the daemon config (see docs/DEPLOY.md) or use \"local\"",
                def.trial.executor, def.trial.executor
            )));
        }
        if def.trial.workload.daemon_runs_trials()
            && def.trial.executor == "local"
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
        let rt = runtime(record, Vec::new(), HashMap::new()).map_err(EngineError::Internal)?;
        let summary = rt.summary();
        tracing::info!(study = %def.name, "study submitted");
        if def.trial.executor == "local" && def.trial.workload.daemon_runs_trials() {
            let gpus: Vec<crate::gpu::GpuInfo> = self.gpus.values().cloned().collect();
            for w in hardware::unmet_warnings(&def.requires, def.trial.gpus, &gpus) {
                tracing::warn!(study = %def.name, "{w}");
            }
        }
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
        Ok(rt
            .trials
            .iter()
            .map(|t| {
                let mut v = TrialView::from(t);
                v.job_state = rt.job_states.get(&t.number).cloned();
                v
            })
            .collect())
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
        // Ranked outside the lock: a dashboard polling a large study must not hold up the
        // scheduler and every ask/tell (a copy of the records is cheaper than the ranking).
        let (def, trials) = {
            let inner = self.lock();
            let rt = inner.studies.get(name).ok_or_else(|| not_found(name))?;
            (rt.def.clone(), rt.trials.clone())
        };
        Ok(leaderboard::build(&def, &trials, top))
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
        let Some(n) = self.next_trial(rt, t, &Exclusions::none()) else {
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
        let pending = match self.store.put_trials_pending(std::slice::from_ref(&rec)) {
            Ok(p) => p,
            Err(e) => {
                let tr = &mut rt.trials[n as usize];
                tr.state = TrialState::Queued;
                tr.started_at = None;
                return Err(e.into());
            }
        };
        rt.last_seen.insert(n, t);
        // Durable before the reply, but flushed outside the scheduler lock: concurrent asks and
        // tells share one flush. A failed flush stops the daemon (note_store_error), so the
        // in-memory state need not be rolled back.
        drop(inner);
        pending.commit()?;
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
        let t = now();
        let Some(reason) = self.record_report(rt, n, step, values, t)? else {
            return Ok(false);
        };
        // The client stops on {"prune": true}; the trial is recorded as pruned now.
        let before = rt.trials[n as usize].clone();
        let tr = &mut rt.trials[n as usize];
        tr.state = TrialState::Pruned;
        tr.reason = Some(reason);
        tr.finished_at = Some(t);
        let rec = self.finish_trial(rt, n);
        if let Err(e) = self.store.put_trial(&rec) {
            rt.trials[n as usize] = before;
            rt.observations.pop();
            return Err(e.into());
        }
        self.check_study(rt, t);
        drop(inner);
        let _ = self.finished_tx.send(rec);
        self.poke();
        Ok(true)
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
        let pending = match self.store.put_trials_pending(std::slice::from_ref(&rec)) {
            Ok(p) => p,
            Err(e) => {
                rt.trials[n as usize] = before;
                if rec.state.is_finished() {
                    rt.observations.pop();
                }
                return Err(e.into());
            }
        };
        self.check_study(rt, t);
        let view = TrialView::from(&rec);
        drop(guard);
        // As in `ask`: the flush outside the lock, shared with concurrent callers.
        pending.commit()?;
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
            let curves = self.load_curves(name, &trials)?;
            let mut rt = runtime(record, trials, curves).map_err(EngineError::BadRequest)?;
            // Trials that were running where the study was exported run nowhere here.
            for n in self.reconcile(&mut rt, IMPORT_REASON, now()) {
                inner.dirty.push((name.clone(), n));
            }
            inner.studies.insert(name.clone(), rt);
        }
        self.flush_dirty(&mut inner);
        self.count_finished(&inner);
        drop(inner);
        self.poke();
        Ok(summary)
    }

    /// Stores results measured elsewhere (`quantune import STUDY FILES…`) as finished trials
    /// marked `imported`: complete, or infeasible when they break a constraint. They are
    /// history for the strategy and cost no budget. All or nothing, durable before the reply.
    pub fn import_results(
        &self,
        name: &str,
        results: Vec<crate::results::ImportedResult>,
    ) -> Result<Vec<TrialView>> {
        let mut inner = self.lock();
        let rt = inner.studies.get_mut(name).ok_or_else(|| not_found(name))?;
        if results.is_empty() {
            return Err(EngineError::BadRequest("no results to import".into()));
        }
        let t = now();
        let first = rt.trials.len() as u64;
        let mut recs = Vec::with_capacity(results.len());
        for (i, r) in results.into_iter().enumerate() {
            let at = r
                .source
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            crate::results::check(&rt.def, &r.params, &r.metrics)
                .map_err(|e| EngineError::BadRequest(format!("results[{i}]{at}: {e}")))?;
            let mut tr = TrialRecord::new(name, first + i as u64, r.params, t);
            let violated = crate::results::violations(&rt.def, &r.metrics);
            tr.state = if violated.is_empty() {
                TrialState::Complete
            } else {
                tr.reason = Some(format!("constraint violated: {}", violated.join("; ")));
                TrialState::Infeasible
            };
            tr.metrics = r.metrics;
            tr.info = r.info;
            if let Some(s) = r.source {
                tr.info.insert("imported_from".into(), s);
            }
            tr.finished_at = Some(t);
            tr.imported = true;
            recs.push(tr);
        }
        self.store.put_trials(&recs)?;
        for rec in &recs {
            rt.observations.push(observation(rec, None));
            self.metrics
                .trials_finished
                .with_label_values(&[name, rec.state.as_str()])
                .inc();
        }
        tracing::info!(study = %name, "imported {} result(s) as trials {first}..{}", recs.len(), first + recs.len() as u64 - 1);
        let views = recs.iter().map(TrialView::from).collect();
        rt.trials.extend(recs);
        drop(inner);
        self.poke();
        Ok(views)
    }

    /// Queues a configuration to run before any new suggestion (`quantune enqueue`). Missing
    /// parameters are filled from the strategy's suggestion for that trial; numbers are
    /// converted to the parameter's type (an integer for a float parameter, and back). Durable
    /// before the reply; counts against `budget.max_trials` like any trial.
    pub fn enqueue(&self, name: &str, mut params: Params) -> Result<TrialView> {
        let mut inner = self.lock();
        let rt = inner.studies.get_mut(name).ok_or_else(|| not_found(name))?;
        if rt.record.state.is_finished() {
            return Err(EngineError::Conflict(format!(
                "study '{name}' is {}; only a running or paused study takes queued trials",
                rt.record.state.as_str()
            )));
        }
        if rt.budgeted() >= rt.def.budget.max_trials {
            return Err(EngineError::Conflict(format!(
                "study '{name}' has created all its trials (budget.max_trials = {})",
                rt.def.budget.max_trials
            )));
        }
        for (k, v) in params.iter_mut() {
            let p = rt
                .def
                .space
                .params()
                .iter()
                .find(|p| &p.name == k)
                .ok_or_else(|| {
                    EngineError::BadRequest(format!("'{k}' is not a parameter of study '{name}'"))
                })?;
            let field = match v {
                quantune_strategies::ParamValue::Float(x) => crate::results::Field::Num(*x),
                quantune_strategies::ParamValue::Int(i) => crate::results::Field::Num(*i as f64),
                quantune_strategies::ParamValue::Bool(b) => crate::results::Field::Bool(*b),
                quantune_strategies::ParamValue::Str(s) => crate::results::Field::Text(s.clone()),
            };
            *v = crate::results::param_value(&p.domain, &field)
                .map_err(|e| EngineError::BadRequest(format!("{k}: {e}")))?;
        }
        let n = rt.trials.len() as u64;
        let impossible = if rt.def.trial.workload.daemon_runs_trials() {
            self.impossible(&rt.def)
        } else {
            Exclusions::none()
        };
        if !impossible.allows(&params) {
            let why: Vec<String> = rt
                .def
                .requires
                .iter()
                .filter(|r| params.get(&r.param).is_some_and(|v| *v == r.choice))
                .map(|r| r.describe())
                .collect();
            return Err(EngineError::BadRequest(format!(
                "{}, and no slot of this daemon can run it (GPUs: {}); choose another value",
                why.join("; "),
                self.gpu_list()
            )));
        }
        params =
            crate::study::complete_params(&rt.def.space, params, || suggest(rt, n, &impossible))?;
        let tr = TrialRecord::new(name, n, params, now());
        self.store.put_trial(&tr)?;
        tracing::info!(study = %name, trial = n, "trial enqueued");
        let view = TrialView::from(&tr);
        rt.trials.push(tr);
        drop(inner);
        self.poke();
        Ok(view)
    }

    /// Slot usage.
    pub fn slots(&self) -> SlotUsage {
        self.lock().slots.usage()
    }

    /// How many times the scheduler loop has done its periodic work (about once a second).
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed)
    }

    /// Trials running and queued over every study (for systemd's `STATUS=`).
    pub fn trial_counts(&self) -> (usize, usize) {
        let inner = self.lock();
        let mut running = 0;
        let mut queued = 0;
        for t in inner.studies.values().flat_map(|rt| &rt.trials) {
            match t.state {
                TrialState::Running => running += 1,
                TrialState::Queued => queued += 1,
                _ => {}
            }
        }
        (running, queued)
    }

    /// Every study as export JSON lines (`quantune backup`), taken under the scheduler lock:
    /// every store write the engine makes happens under it, so the export is one consistent
    /// moment: no trial finishes, starts or is told between two studies' lines. It holds what
    /// is durable; a change whose write is still being retried is not in it (and was not
    /// acknowledged either).
    pub fn backup(&self) -> Result<Vec<u8>> {
        let inner = self.lock();
        let mut out = Vec::new();
        for name in inner.studies.keys() {
            self.store.export_study(name, &mut out)?;
        }
        Ok(out)
    }
}

/// An operator's hint for a store error: a full disk is common and fixable.
fn disk_hint(e: &quantune_state::StoreError) -> &'static str {
    let text = e.to_string();
    if text.contains("No space left on device") || text.contains("os error 28") {
        " (the disk holding the state directory is full: free space there; what was not recorded was not acknowledged, and is retried)"
    } else {
        ""
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
        runtime(record, trials, HashMap::new()).map_err(|e| {
            EngineError::BadRequest(format!("import line {line}: study '{name}': {e}"))
        })?;
    }
    Ok(())
}

/// Rebuilds a study's runtime from its stored record and trials.
fn runtime(
    record: StudyRecord,
    trials: Vec<TrialRecord>,
    curves: HashMap<u64, Vec<CurveReport>>,
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
    let observations = finished
        .into_iter()
        .map(|t| observation(t, curves.get(&t.number)))
        .collect();
    let kind = if def.pruner.kind.is_empty() {
        "none"
    } else {
        def.pruner.kind.as_str()
    };
    let pruner =
        pruner::build(kind, &def.pruner.options).map_err(|(k, m)| format!("pruner.{k}: {m}"))?;
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
        curves,
        pruner,
        stop_reasons: HashMap::new(),
        job_states: HashMap::new(),
        waiting: None,
    })
}

/// A finished trial as strategies see it; a pruned trial carries its last reported values.
fn observation(t: &TrialRecord, curve: Option<&Vec<CurveReport>>) -> Observation {
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
            (TrialState::Pruned, Some((_, values))) => values.clone(),
            _ => t.metrics.clone(),
        },
    }
}

/// Asks the study's strategy for trial `n`, from the history and the pending trials.
fn suggest(
    rt: &StudyRuntime,
    n: u64,
    exclusions: &Exclusions,
) -> std::result::Result<Params, StrategyError> {
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
    let suggestion = suggest_excluding(rt.strategy.as_ref(), &ctx, exclusions)?;
    if let Some(note) = &suggestion.note {
        tracing::warn!(study = %rt.record.name, trial = n, strategy = rt.strategy.name(), "{note}");
    }
    let params = suggestion.params;
    if !rt.def.space.contains(&params) {
        return Err(StrategyError::Invalid(format!(
            "strategy {} suggested a point outside the space",
            rt.strategy.name()
        )));
    }
    Ok(params)
}
