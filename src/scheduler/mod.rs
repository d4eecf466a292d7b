//! The scheduler: the one owner of live state.
//!
//! One task — the loop in [`Scheduler::run`] — owns every study, trial and slot. Nothing else
//! changes them: API handlers send it a [`Command`] and wait for the reply, executors send it
//! [`ExecEvent`]s, suggestions computed on a blocking worker come back as a message, and a
//! timer ticks once a second. Each turn of the loop takes every message that is waiting (up to
//! a bound), lets each change the state in memory and note what it wants done in the
//! [`turn::Turn`] — records to persist, trials to start or stop, replies to send — and then
//! [`turn`] applies it: one store transaction and one flush for the whole turn, and only when
//! that is durable are trials started, slots freed, replies sent and snapshots published. A
//! change that could not be persisted is never acted on or acknowledged: the loop stops with
//! the error and the daemon exits, so that a fresh process reloads what is durable (there is
//! no rollback code anywhere).
//!
//! Readers never wait for the loop: `studies`, `status`, `trials`, `leaderboard` and
//! `/metrics` read the [`snapshot::Snapshots`] the loop publishes after each turn.
//!
//! A trial's life: created (durable) → started on a slot → executor events (reports, finished)
//! → outcome recorded (durable) → slot freed → next trial. Failures are retried with the same
//! parameters while `trial.retries` allow; a restart fails and re-queues trials the previous
//! process left `running` ("interrupted"). Modules: [`study`] (one study's live state and
//! indexes), [`transitions`] (how trials and studies change state), [`dispatch`] (which trial
//! starts where, and suggestions), [`commands`] (the API's writes), [`turn`] (persist, then
//! act), [`snapshot`] (what readers see), [`trials`] (copy-on-write trial lists), [`notice`]
//! (what the webhook notifier is told).

pub mod commands;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod manage;
pub mod notice;
pub mod snapshot;
pub mod study;
pub mod transitions;
pub mod trials;
pub mod turn;

#[cfg(test)]
mod tests;

pub use error::{Result, SchedulerError};
pub use snapshot::{DaemonSnapshot, ImportedTrials, Snapshots, StudySnapshot};

use crate::executor::{ExecEvent, Executor};
use crate::gpu::monitor::GpuMonitor;
use crate::gpu::slots::{Slot, SlotPool, SlotUsage};
use crate::model::leaderboard::Row;
use crate::model::metrics::Metrics;
use crate::model::study::StudyDefinition;
use crate::model::wire::{StudySummary, TrialView};
use quantune_state::{Report, Store, TrialRecord};
use quantune_strategies::restrict::Exclusions;
use quantune_strategies::{Params, StrategyError};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use study::StudyRuntime;
use tokio::sync::{broadcast, mpsc, oneshot};
use turn::Turn;

pub use crate::model::now;

/// Why an attempt ended when the daemon (or `run`) stopped gracefully.
pub const SHUTDOWN_REASON: &str = "interrupted (quantune was stopped)";

/// Why an attempt that a previous process left running (a crash, `kill -9`, power loss) ended.
pub const CRASH_REASON: &str = "interrupted (the daemon stopped while it ran)";

/// Why an attempt that was running when its study was exported ended (it ran elsewhere).
pub const IMPORT_REASON: &str = "interrupted (the study was exported while it ran)";

/// How long GPU memory promised to a starting trial (`trial.gpu_memory`) is held back from
/// what NVML reports free: about the time a trial takes to allocate it.
pub const GPU_RESERVE_SECS: f64 = 60.0;

/// At most this many messages are taken in one turn, so that one turn's transaction stays
/// bounded however fast events arrive (a trial reporting every step, a flood of tells).
const MAX_TURN: usize = 2048;

/// Settings the scheduler is built with.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
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

/// A reply channel for a command.
pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// A write the API asks of the loop; each carries the channel its reply goes to (sent once
/// the change is durable).
pub(crate) enum Command {
    Submit(Box<StudyDefinition>, String, Reply<StudySummary>),
    Pause(String, Reply<StudySummary>),
    Resume(String, Reply<StudySummary>),
    Cancel(String, Reply<StudySummary>),
    Ask(String, Reply<(u64, Params)>),
    Report(String, u64, u64, BTreeMap<String, f64>, Reply<bool>),
    Tell(String, u64, TellOutcome, Reply<TrialView>),
    Import(
        Vec<u8>,
        Option<String>,
        Reply<quantune_state::ImportSummary>,
    ),
    ImportResults(
        String,
        Vec<crate::model::results::ImportedResult>,
        Reply<Vec<u64>>,
    ),
    Enqueue(String, Params, Reply<TrialView>),
    Backup(Reply<Vec<u8>>),
    Delete(String, Reply<crate::model::wire::DeleteReply>),
    Extend(
        String,
        crate::model::wire::ExtendRequest,
        Reply<StudySummary>,
    ),
    Tag(String, crate::model::wire::TagRequest, Reply<StudySummary>),
    StudyNote(String, String, Reply<StudySummary>),
    TrialNote(String, u64, String, Reply<TrialView>),
    Copy(String, String, Reply<quantune_state::ImportSummary>),
}

/// What a new trial is wanted for: it decides what happens once its parameters are known.
pub(crate) enum Want {
    /// To start on this slot (taken for it; freed if no trial comes).
    Slot { slot: Slot, exclusions: Exclusions },
    /// To hand to an external worker (`ask`).
    Ask(Reply<(u64, Params)>),
    /// To queue with these parameters, the missing ones filled in (`enqueue`).
    Enqueue(Params, Reply<TrialView>),
}

/// Messages the loop sends itself.
pub(crate) enum Internal {
    /// Suggestions computed on a worker for `study`, from trial `n` on, one per want.
    Suggested {
        study: String,
        n: u64,
        results: Vec<std::result::Result<Params, StrategyError>>,
    },
    /// A deleted study's records are all removed from the store: its name is free again.
    Purged(String),
}

/// What the loop needs besides the studies: the store, where trials run, and the machine.
pub(crate) struct Env {
    /// The durable store; every change goes here before it is acted on.
    pub store: Arc<Store>,
    /// Where trials run (one per kind: local, slurm, …).
    pub executors: Vec<Arc<dyn Executor>>,
    /// Root of trial run directories.
    pub run_root: PathBuf,
    /// Schedule only this study, when set.
    pub only_study: Option<String>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// GPU sampling (NVML) of local GPU trials.
    pub gpu_monitor: Arc<GpuMonitor>,
    /// The GPUs found at start, by CUDA index.
    pub gpus: BTreeMap<u32, crate::gpu::GpuInfo>,
    /// The CUDA version the driver supports.
    pub cuda_version: Option<String>,
    /// Where suggestions computed off the loop come back.
    pub inbox: mpsc::UnboundedSender<Internal>,
}

impl Env {
    /// The executor a trial record or study names (`None` for external trials).
    pub fn executor_named(&self, name: Option<&str>) -> Option<&Arc<dyn Executor>> {
        self.executors.iter().find(|e| Some(e.name()) == name)
    }
}

/// The loop's state: every study, the slots, and the turn being built.
pub(crate) struct Core {
    /// Store, executors, machine.
    pub env: Env,
    /// Every study, by name.
    pub studies: BTreeMap<String, StudyRuntime>,
    /// Local slots.
    pub slots: SlotPool,
    /// GPU memory promised to trials that started recently, per device: (start time, bytes).
    /// A trial allocates its memory some seconds after it starts; until then NVML's free
    /// figure still counts it as free.
    pub gpu_reserved: HashMap<u32, Vec<(f64, u64)>>,
    /// Round-robin start position among runnable studies.
    pub rr: usize,
    /// No new trials start (shutting down).
    pub stopping: bool,
    /// What this turn changed and wants done.
    pub turn: Turn,
    /// Published for readers.
    pub snapshots: Arc<Snapshots>,
    /// Finished trials go out here once durable.
    pub finished_tx: broadcast::Sender<TrialRecord>,
    /// Receives what `inbox` sends.
    pub inbox_rx: mpsc::UnboundedReceiver<Internal>,
    /// The queue to the webhook notifier, when the daemon has `[[notify]]` targets.
    pub notices: Option<notice::Notices>,
    /// Studies being deleted, waiting for their running trials to stop, with the replies.
    pub deleting: BTreeMap<String, Vec<Reply<crate::model::wire::DeleteReply>>>,
    /// Deleted studies whose records are still being removed: their names are not free yet.
    pub purging: std::collections::BTreeSet<String>,
}

/// The handle everything else holds: it sends commands to the loop and reads its snapshots.
pub struct Scheduler {
    /// Commands to the loop.
    commands: mpsc::Sender<Command>,
    /// The loop's state until [`Scheduler::run`] takes it.
    core: Mutex<Option<(Core, mpsc::Receiver<Command>)>>,
    /// What readers read.
    snapshots: Arc<Snapshots>,
    /// The store, for reads that need no snapshot (reports, exports).
    store: Arc<Store>,
    /// Prometheus metrics (counters and histograms are set by the loop; gauges on render).
    metrics: Arc<Metrics>,
    /// GPU sampling.
    gpu_monitor: Arc<GpuMonitor>,
    /// Finished trials, for progress displays (`quantune run`).
    finished_tx: broadcast::Sender<TrialRecord>,
    /// Bumped by every turn of the loop: the systemd watchdog pings only while it moves.
    heartbeat: Arc<AtomicU64>,
    /// The remote executors this daemon has (Slurm, Ray), for the slot gauge.
    remote: Vec<&'static str>,
    /// Why the loop stopped by itself (a change could not be made durable): what every later
    /// call is answered with.
    fatal: std::sync::OnceLock<String>,
    /// Every executor and the run root, to find a trial's log files (`quantune logs`).
    logs: (Vec<Arc<dyn Executor>>, PathBuf),
}

impl Scheduler {
    /// Builds the scheduler from the store, reconciling trials a previous process left
    /// running (recorded durably before this returns). Call [`Scheduler::run`] to start it.
    pub fn open(
        store: Arc<Store>,
        executors: Vec<Arc<dyn Executor>>,
        cfg: SchedulerConfig,
    ) -> Result<Scheduler> {
        let (finished_tx, _) = broadcast::channel(1024);
        let (inbox, inbox_rx) = mpsc::unbounded_channel();
        let metrics = Arc::new(Metrics::new());
        let gpu_monitor = GpuMonitor::new(cfg.gpus.iter().map(|g| g.index).collect());
        let snapshots = Arc::new(Snapshots::default());
        let remote: Vec<&'static str> = executors
            .iter()
            .filter(|e| e.survives_restart())
            .map(|e| e.name())
            .collect();
        let logs = (executors.clone(), cfg.run_root.clone());
        let env = Env {
            store: store.clone(),
            executors,
            run_root: cfg.run_root,
            only_study: cfg.only_study,
            metrics: metrics.clone(),
            gpu_monitor: gpu_monitor.clone(),
            gpus: cfg.gpus.iter().map(|g| (g.index, g.clone())).collect(),
            cuda_version: cfg.cuda_version,
            inbox,
        };
        let mut core = Core {
            env,
            studies: BTreeMap::new(),
            slots: SlotPool::new(
                cfg.cpu_slots,
                &cfg.gpus.iter().map(|g| g.index).collect::<Vec<_>>(),
                cfg.trials_per_gpu,
            ),
            gpu_reserved: HashMap::new(),
            rr: 0,
            stopping: false,
            turn: Turn::default(),
            snapshots: snapshots.clone(),
            finished_tx: finished_tx.clone(),
            inbox_rx,
            notices: None,
            deleting: BTreeMap::new(),
            purging: Default::default(),
        };
        core.load_all()?;
        core.apply()?;
        core.publish_daemon();
        let (commands, command_rx) = mpsc::channel(4096);
        Ok(Scheduler {
            commands,
            core: Mutex::new(Some((core, command_rx))),
            snapshots,
            store,
            metrics,
            gpu_monitor,
            finished_tx,
            heartbeat: Arc::new(AtomicU64::new(0)),
            remote,
            fatal: std::sync::OnceLock::new(),
            logs,
        })
    }

    /// The scheduler loop: takes commands, executor events, suggestions and ticks, one turn at
    /// a time, until `shutdown` turns true; then interrupts running local trials, records
    /// them, and returns. An `Err` means a change could not be made durable: the process
    /// should exit so that a fresh start reloads the store.
    pub async fn run(
        self: Arc<Self>,
        mut events: mpsc::UnboundedReceiver<ExecEvent>,
        tasks: crate::tasks::Tasks,
    ) -> Result<()> {
        let mut shutdown = tasks.stopping();
        let Some((mut core, mut commands)) =
            self.core.lock().unwrap_or_else(|p| p.into_inner()).take()
        else {
            return Err(SchedulerError::Internal(
                "the scheduler loop already ran".into(),
            ));
        };
        let mut tick = tokio::time::interval(Duration::from_millis(1000));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        core.env.gpu_monitor.spawn(core.env.metrics.clone(), &tasks);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                Some(cmd) = commands.recv() => core.command(cmd),
                Some(ev) = events.recv() => core.event(ev),
                Some(m) = core.inbox_rx.recv() => core.internal(m),
                _ = tick.tick() => core.tick(),
            }
            // Everything else that is waiting joins this turn (bounded).
            let mut taken = 1;
            while taken < MAX_TURN {
                let mut any = false;
                if let Ok(cmd) = commands.try_recv() {
                    core.command(cmd);
                    any = true;
                }
                if let Ok(ev) = events.try_recv() {
                    core.event(ev);
                    any = true;
                }
                if let Ok(m) = core.inbox_rx.try_recv() {
                    core.internal(m);
                    any = true;
                }
                if !any {
                    break;
                }
                taken += 1;
            }
            core.dispatch();
            core.finish_deletes();
            if let Err(e) = core.apply() {
                let _ = self.fatal.set(e.to_string());
                return Err(e);
            }
            core.publish_daemon();
            self.heartbeat.fetch_add(1, Ordering::Relaxed);
        }
        // Commands that arrive from here on get "stopped" (their reply channel is dropped).
        drop(commands);
        core.shut_down(&mut events).await
    }

    /// Sends a command and waits for its reply.
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let gone = || match self.fatal.get() {
            Some(why) => SchedulerError::Internal(format!(
                "{why}; the daemon is stopping so that a fresh start can write again"
            )),
            None => SchedulerError::stopped(),
        };
        self.commands.send(make(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    // ---- writes (through the loop) ----

    /// Registers a new study.
    pub async fn submit(&self, def: StudyDefinition, source: String) -> Result<StudySummary> {
        self.call(|r| Command::Submit(Box::new(def), source, r))
            .await
    }

    /// Stops starting new trials of a study; running ones go on.
    pub async fn pause(&self, name: &str) -> Result<StudySummary> {
        self.call(|r| Command::Pause(name.into(), r)).await
    }

    /// Lets a paused study schedule again.
    pub async fn resume(&self, name: &str) -> Result<StudySummary> {
        self.call(|r| Command::Resume(name.into(), r)).await
    }

    /// Cancels a study: queued trials cancelled, running ones stopped.
    pub async fn cancel(&self, name: &str) -> Result<StudySummary> {
        self.call(|r| Command::Cancel(name.into(), r)).await
    }

    /// `ask`: hands out the next trial of an external study and marks it running.
    pub async fn ask(&self, name: &str) -> Result<(u64, Params)> {
        self.call(|r| Command::Ask(name.into(), r)).await
    }

    /// `report`: stores an intermediate value of a running trial; returns whether to prune.
    pub async fn report(
        &self,
        name: &str,
        n: u64,
        step: u64,
        values: BTreeMap<String, f64>,
    ) -> Result<bool> {
        self.call(|r| Command::Report(name.into(), n, step, values, r))
            .await
    }

    /// `tell`: finishes a running external trial.
    pub async fn tell(&self, name: &str, n: u64, outcome: TellOutcome) -> Result<TrialView> {
        self.call(|r| Command::Tell(name.into(), n, outcome, r))
            .await
    }

    /// Imports exported JSON lines as new studies and loads them.
    pub async fn import(&self, data: Vec<u8>) -> Result<quantune_state::ImportSummary> {
        self.import_as(data, None).await
    }

    /// Imports an export, its one study renamed to `to` when given (`import --as`).
    pub async fn import_as(
        &self,
        data: Vec<u8>,
        to: Option<String>,
    ) -> Result<quantune_state::ImportSummary> {
        self.call(|r| Command::Import(data, to, r)).await
    }

    /// Deletes a study: its running trials are stopped first, then it and every trial and
    /// report of it leave the store.
    pub async fn delete(&self, name: &str) -> Result<crate::model::wire::DeleteReply> {
        self.call(|r| Command::Delete(name.into(), r)).await
    }

    /// Raises a study's budgets; a completed study runs again.
    pub async fn extend(
        &self,
        name: &str,
        req: crate::model::wire::ExtendRequest,
    ) -> Result<StudySummary> {
        self.call(|r| Command::Extend(name.into(), req, r)).await
    }

    /// Adds and removes a study's tags.
    pub async fn tag(
        &self,
        name: &str,
        req: crate::model::wire::TagRequest,
    ) -> Result<StudySummary> {
        self.call(|r| Command::Tag(name.into(), req, r)).await
    }

    /// Sets (or, empty, removes) a study's notes.
    pub async fn study_note(&self, name: &str, note: String) -> Result<StudySummary> {
        self.call(|r| Command::StudyNote(name.into(), note, r))
            .await
    }

    /// Sets (or, empty, removes) a trial's note.
    pub async fn trial_note(&self, name: &str, n: u64, note: String) -> Result<TrialView> {
        self.call(|r| Command::TrialNote(name.into(), n, note, r))
            .await
    }

    /// Copies a study (every trial and report) to a new, independent study `to`.
    pub async fn copy(&self, name: &str, to: &str) -> Result<quantune_state::ImportSummary> {
        self.call(|r| Command::Copy(name.into(), to.into(), r))
            .await
    }

    /// Stores results measured elsewhere as finished trials marked `imported`; returns them
    /// (as the snapshot published with them holds them, not copied).
    pub async fn import_results(
        &self,
        name: &str,
        results: Vec<crate::model::results::ImportedResult>,
    ) -> Result<ImportedTrials> {
        let numbers = self
            .call(|r| Command::ImportResults(name.into(), results, r))
            .await?;
        Ok(ImportedTrials {
            snapshot: self.snapshot(name)?,
            numbers,
        })
    }

    /// Queues a configuration to run before any new suggestion (`quantune enqueue`).
    pub async fn enqueue(&self, name: &str, params: Params) -> Result<TrialView> {
        self.call(|r| Command::Enqueue(name.into(), params, r))
            .await
    }

    /// Every study as export JSON lines (`quantune backup`), taken between two turns: one
    /// consistent moment.
    pub async fn backup(&self) -> Result<Vec<u8>> {
        self.call(Command::Backup).await
    }

    // ---- reads (from snapshots; never wait for the loop) ----

    /// One study's snapshot.
    pub fn snapshot(&self, name: &str) -> Result<Arc<StudySnapshot>> {
        self.snapshots
            .study(name)
            .ok_or_else(|| error::not_found(name))
    }

    /// The stored definition and source of a study (for `run` to resume).
    pub fn definition(&self, name: &str) -> Result<(StudyDefinition, String)> {
        let s = self.snapshot(name)?;
        Ok(((*s.def).clone(), s.record.source.clone()))
    }

    /// Every study, by name.
    pub fn studies(&self) -> Vec<StudySummary> {
        self.snapshots
            .studies()
            .iter()
            .map(|s| s.summary())
            .collect()
    }

    /// One study.
    pub fn study(&self, name: &str) -> Result<StudySummary> {
        Ok(self.snapshot(name)?.summary())
    }

    /// A study's trials by number.
    pub fn trials(&self, name: &str) -> Result<Vec<TrialView>> {
        Ok(self.snapshot(name)?.trial_views())
    }

    /// One trial with its intermediate reports.
    pub fn trial(&self, name: &str, n: u64) -> Result<(TrialView, Vec<Report>)> {
        let s = self.snapshot(name)?;
        let t = s.trials.get(n).ok_or_else(|| error::no_trial(name, n))?;
        let mut view = TrialView::from(t);
        view.job_state = s.job_states.get(&n).cloned();
        let reports = self
            .store
            .reports(name, n)
            .map_err(SchedulerError::from_store)?;
        Ok((view, reports))
    }

    /// Where attempt `attempt` (default: the current one) of trial `n` has its `stream` file,
    /// the attempt, and whether it may still write there. A trial run through ask/tell, or by
    /// an executor that keeps output elsewhere (Ray), has none here: the error says where.
    pub fn log_file(
        &self,
        name: &str,
        n: u64,
        attempt: Option<u32>,
        stream: crate::model::wire::LogStream,
    ) -> Result<(PathBuf, u32, bool)> {
        let s = self.snapshot(name)?;
        let t = s.trials.get(n).ok_or_else(|| error::no_trial(name, n))?;
        let attempt = attempt.unwrap_or(t.attempt);
        if attempt == 0 || attempt > t.attempt {
            return Err(SchedulerError::NotFound(format!(
                "trial {n} of '{name}' has attempts 1 to {}; --attempt {attempt} is none of them",
                t.attempt
            )));
        }
        let executor = t
            .executor
            .as_deref()
            .unwrap_or(s.def.trial.executor.as_str());
        let dir = match executor {
            "external" => None,
            _ if t.imported => None,
            ex => self
                .logs
                .0
                .iter()
                .find(|e| e.name() == ex)
                .and_then(|e| e.logs_dir(name, n, self.logs.1.join(name).join(n.to_string()))),
        };
        let Some(dir) = dir else {
            let where_ = match executor {
                "external" => {
                    "it ran outside the daemon (ask/tell), so its output is wherever its worker ran"
                }
                "ray" => "the Ray executor keeps a job's output in Ray (`ray job logs`)",
                _ => "it was imported or ran elsewhere",
            };
            return Err(SchedulerError::NotFound(format!(
                "trial {n} of '{name}' has no log files here: {where_}"
            )));
        };
        let running = attempt == t.attempt && !t.state.is_finished();
        Ok((
            dir.join(format!("{}.{attempt}.log", stream.as_str())),
            attempt,
            running,
        ))
    }

    /// The leaderboard rows.
    pub fn leaderboard(&self, name: &str, top: Option<usize>) -> Result<Vec<Row>> {
        Ok(self.snapshot(name)?.leaderboard(top))
    }

    /// Whether a study can still schedule or is waiting on trials (for `quantune run`).
    pub fn study_active(&self, name: &str) -> bool {
        self.snapshots.study(name).is_some_and(|s| s.active)
    }

    /// A study as JSON lines (`export`), read from the store.
    pub fn export(&self, name: &str) -> Result<Vec<u8>> {
        if self.snapshots.study(name).is_none() {
            return Err(error::not_found(name));
        }
        let mut out = Vec::new();
        self.store
            .export_study(name, &mut out)
            .map_err(SchedulerError::from_store)?;
        Ok(out)
    }

    /// Slot usage.
    pub fn slots(&self) -> SlotUsage {
        self.snapshots.daemon().slots
    }

    /// Trials running and queued over every study (for systemd's `STATUS=`).
    pub fn trial_counts(&self) -> (usize, usize) {
        let d = self.snapshots.daemon();
        (d.running, d.queued)
    }

    /// How many turns the loop has taken (at least one a second while it runs).
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed)
    }

    /// Starts a queue of `capacity` [`notice::Notice`]s for the webhook notifier and returns
    /// its receiving end; call once, before [`Scheduler::run`]. `None` when the loop already
    /// runs (there is no loop state left to attach it to) or a queue is already attached.
    pub fn notices(&self, capacity: usize) -> Option<mpsc::Receiver<notice::Notice>> {
        let mut core = self.core.lock().unwrap_or_else(|p| p.into_inner());
        let (core, _) = core.as_mut().filter(|(c, _)| c.notices.is_none())?;
        let (q, rx) = notice::Notices::channel(capacity);
        core.notices = Some(q);
        Some(rx)
    }

    /// Prometheus metrics (for the notifier's counters).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Receives finished trials once they are durable.
    pub fn subscribe(&self) -> broadcast::Receiver<TrialRecord> {
        self.finished_tx.subscribe()
    }

    /// Every local GPU with its last sample and the trial holding it.
    pub fn gpu_states(&self) -> Vec<crate::gpu::monitor::GpuState> {
        self.gpu_monitor.snapshot()
    }

    /// The Prometheus exposition, with the gauges set from the snapshots.
    pub fn render_metrics(&self) -> String {
        let m = &self.metrics;
        m.trials_running.reset();
        m.trials_queued.reset();
        m.best_trial.reset();
        let studies = self.snapshots.studies();
        let mut remote_busy: BTreeMap<&str, u64> = BTreeMap::new();
        for s in &studies {
            let name = s.record.name.as_str();
            let get = |k: &str| s.counts.get(k).copied().unwrap_or(0) as i64;
            m.trials_running
                .with_label_values(&[name])
                .set(get("running"));
            m.trials_queued
                .with_label_values(&[name])
                .set(get("queued"));
            if let Some(best) = s.best() {
                m.best_trial.with_label_values(&[name]).set(best as i64);
            }
            for (ex, n) in &s.remote_running {
                if let Some(name) = self.remote.iter().find(|r| **r == ex.as_str()) {
                    *remote_busy.entry(name).or_insert(0) += n;
                }
            }
        }
        let u = self.slots();
        for (kind, total, busy) in [
            ("cpu", u.cpu_total, u.cpu_busy),
            ("gpu", u.gpu_total, u.gpu_busy),
        ] {
            m.slots.with_label_values(&[kind, "busy"]).set(busy as i64);
            m.slots
                .with_label_values(&[kind, "free"])
                .set(total.saturating_sub(busy) as i64);
        }
        for name in &self.remote {
            let busy = remote_busy.get(name).copied().unwrap_or(0);
            m.slots.with_label_values(&[name, "busy"]).set(busy as i64);
        }
        m.studies.set(studies.len() as i64);
        m.render()
    }
}
