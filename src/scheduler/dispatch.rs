//! Which trial starts where: free slots go round-robin to the running studies with the fewest
//! trials in flight, a queued trial (retry, enqueued) before a new one; a new trial's
//! parameters come from the study's strategy, computed on a blocking worker over a snapshot
//! of the history so that a slow fit never holds up the loop. Everything of a study that needs
//! a new trial in one turn — slots taken for it, asks, enqueues — waits in its `wants` and goes
//! into one job at the end of the turn, each suggestion seeing the ones before it as pending;
//! while a job runs, later wants wait for the next.

use super::error::SchedulerError;
use super::study::StudyRuntime;
use super::transitions::{check_study, launch, stop_study};
use super::turn::Turn;
use super::{Core, Env, Internal, Want, GPU_RESERVE_SECS};
use crate::gpu::gib;
use crate::gpu::hardware;
use crate::gpu::slots::Slot;
use crate::model::study::StudyDefinition;
use crate::model::wire::TrialView;
use quantune_state::{StudyState, TrialRecord, TrialState};
use quantune_strategies::restrict::{suggest_excluding, Exclusions};
use quantune_strategies::{Observation, Params, Strategy, StrategyError, SuggestContext};
use std::sync::Arc;

impl Core {
    /// Starts as many trials as slots and budgets allow, round-robin between studies, then
    /// the suggestion jobs for every study that needs new trials.
    pub fn dispatch(&mut self) {
        self.dispatch_slots();
        self.start_suggestions();
    }

    /// Hands free slots to studies (queued trials start; new ones are wanted).
    fn dispatch_slots(&mut self) {
        if self.stopping {
            return;
        }
        let names: Vec<String> = self
            .studies
            .iter()
            .filter(|(_, rt)| {
                rt.record.state == StudyState::Running && rt.def.trial.workload.daemon_runs_trials()
            })
            .filter(|(n, _)| self.env.only_study.as_ref().is_none_or(|o| o == *n))
            .map(|(n, _)| n.clone())
            .collect();
        if names.is_empty() {
            return;
        }
        let t = super::now();
        let start = self.rr % names.len();
        self.rr = self.rr.wrapping_add(1);
        // One trial at a time, each to the study with the fewest trials in flight (ties in
        // round-robin order): a free slot goes to the study that holds the fewest, so a study
        // submitted later gets its share as soon as slots free up.
        loop {
            let mut order: Vec<usize> = (0..names.len()).collect();
            order.sort_by_cached_key(|&i| {
                let name = &names[(start + i) % names.len()];
                (self.studies[name].in_flight(), i)
            });
            let mut progress = false;
            for i in order {
                let name = &names[(start + i) % names.len()];
                if self.dispatch_one(name, t) {
                    progress = true;
                    break;
                }
            }
            if !progress {
                break;
            }
        }
    }

    /// Starts one suggestion job for every study that has wants and no job running.
    pub fn start_suggestions(&mut self) {
        let names: Vec<String> = self
            .studies
            .iter()
            .filter(|(_, rt)| rt.suggesting.is_empty() && !rt.wants.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.take_wants(&name);
        }
    }

    /// Serves the study's wants that need no suggestion (an ask a queued trial can answer,
    /// one the study refuses now) and sends the rest to the strategy as one job.
    fn take_wants(&mut self, name: &str) {
        let Core {
            env,
            studies,
            slots,
            turn,
            stopping,
            ..
        } = self;
        let Some(rt) = studies.get_mut(name) else {
            return;
        };
        let t = super::now();
        let wants = std::mem::take(&mut rt.wants);
        let mut need = Vec::new();
        for w in wants {
            let running = rt.record.state == StudyState::Running && !*stopping;
            let room = !rt.exhausted
                && rt.budgeted() + ((need.len() + rt.suggesting.len()) as u64)
                    < rt.def.budget.max_trials
                && rt.budget_exhausted(t).is_none();
            match w {
                Want::Slot { slot, .. } if !running || !room => slots.release(&slot),
                Want::Ask(reply) if !running => {
                    let _ = reply.send(Err(not_handing_out(rt)));
                }
                Want::Ask(reply) => {
                    let first_queued = rt.queued().next();
                    if let Some(n) = first_queued {
                        let out = hand_out(rt, turn, n, t);
                        turn.reply(reply, Ok(out));
                    } else if !room {
                        let _ = reply.send(Err(SchedulerError::Conflict(format!(
                            "study '{name}' has handed out all its trials (budget.max_trials = {})",
                            rt.def.budget.max_trials
                        ))));
                    } else {
                        need.push(Want::Ask(reply));
                    }
                }
                Want::Enqueue(_, reply) if !room || rt.record.state.is_finished() => {
                    let _ = reply.send(Err(SchedulerError::Conflict(format!(
                        "study '{name}' has created all its trials (budget.max_trials = {}) or ended",
                        rt.def.budget.max_trials
                    ))));
                }
                other => need.push(other),
            }
        }
        if !need.is_empty() {
            request_suggestion(env, rt, need);
        }
        turn.touched.insert(name.to_string());
    }

    /// Starts (or asks the strategy for) one trial of `name` if it has room; whether it did.
    fn dispatch_one(&mut self, name: &str, t: f64) -> bool {
        let Core {
            env,
            studies,
            slots,
            gpu_reserved,
            turn,
            ..
        } = self;
        let rt = studies.get_mut(name).expect("listed study exists");
        if rt.in_flight() >= rt.def.budget.parallel || rt.record.state != StudyState::Running {
            return false;
        }
        let Some(ex) = env.executor_named(Some(rt.def.trial.executor.as_str())) else {
            // Submitted to a daemon that had it (submit refuses otherwise), then restarted
            // without it: wait, saying why, rather than fail the study.
            let why = format!(
                "waiting: trial.executor = \"{0}\" but this daemon has no such executor; configure [executor.{0}] in the daemon config (see docs/DEPLOY.md) and restart it",
                rt.def.trial.executor
            );
            if rt.waiting.as_deref() != Some(why.as_str()) {
                tracing::error!(study = %name, "{why}");
                rt.waiting = Some(why);
                turn.touched.insert(name.to_string());
            }
            return false;
        };
        // Local trials take a slot here; a cluster's scheduler places the others.
        let local = !ex.survives_restart();
        let slot = if local {
            match acquire_slot(env, rt, turn, slots, gpu_reserved, t) {
                Some(slot) => slot,
                None => return false,
            }
        } else {
            Slot::detached(ex.name())
        };
        let exclusions = if local {
            exclusions_for(env, &rt.def, &slot)
        } else {
            Exclusions::none()
        };
        let queued = rt
            .queued()
            .find(|n| rt.trial(*n).is_some_and(|tr| exclusions.allows(&tr.params)));
        if let Some(n) = queued {
            start_on(env, rt, turn, gpu_reserved, n, slot, t);
            return true;
        }
        if rt.exhausted
            || rt.budgeted() + rt.pending_new() >= rt.def.budget.max_trials
            || rt.budget_exhausted(t).is_some()
        {
            slots.release(&slot);
            return false;
        }
        // Reserved for the trial the next suggestion job creates.
        rt.wants.push_back(Want::Slot { slot, exclusions });
        true
    }

    /// Suggestions came back from their worker: create each trial and do with it what it was
    /// wanted for; then start the next job if more wants came meanwhile.
    pub fn suggested(&mut self, study: &str, n: u64, results: Vec<Result<Params, StrategyError>>) {
        let Some(rt) = self.studies.get_mut(study) else {
            return;
        };
        let wants = std::mem::take(&mut rt.suggesting);
        rt.join_history();
        if rt.trials().len() as u64 != n {
            tracing::debug!(study, n, "trials were added while the suggestions ran");
        }
        for (want, result) in wants.into_iter().zip(results) {
            self.one_suggested(study, want, result);
        }
        if let Some(rt) = self.studies.get_mut(study) {
            let t = super::now();
            check_study(&self.env, rt, &mut self.turn, t);
        }
        self.turn.touched.insert(study.to_string());
        self.start_suggestions();
    }

    /// One suggestion, for one want.
    fn one_suggested(&mut self, study: &str, want: Want, result: Result<Params, StrategyError>) {
        let Core {
            env,
            studies,
            slots,
            gpu_reserved,
            turn,
            stopping,
            ..
        } = self;
        let Some(rt) = studies.get_mut(study) else {
            return;
        };
        let t = super::now();
        let number = rt.trials().len() as u64;
        let result = result.and_then(|p| {
            if rt.def.space.contains(&p) {
                Ok(p)
            } else {
                Err(StrategyError::Invalid(format!(
                    "strategy {} suggested a point outside the space",
                    rt.strategy.name()
                )))
            }
        });
        match (want, result) {
            (Want::Slot { slot, .. }, Ok(params)) => {
                if *stopping || rt.record.state != StudyState::Running {
                    // Paused or ended meanwhile: nothing was recorded, so nothing is lost.
                    slots.release(&slot);
                } else {
                    rt.push(TrialRecord::new(rt.name(), number, params, t));
                    start_on(env, rt, turn, gpu_reserved, number, slot, t);
                }
            }
            (Want::Slot { slot, exclusions }, Err(e)) => {
                slots.release(&slot);
                // Under exclusions only this slot is out of points; the study is, only when no
                // slot of this daemon can run the excluded choices either.
                let slot_only = !exclusions.is_empty() && exclusions != impossible(env, &rt.def);
                if !slot_only {
                    strategy_failed(env, rt, turn, e, &exclusions, t);
                }
            }
            (Want::Ask(reply), Ok(params)) => {
                if rt.record.state != StudyState::Running {
                    let _ = reply.send(Err(not_handing_out(rt)));
                } else {
                    rt.push(TrialRecord::new(rt.name(), number, params, t));
                    let out = hand_out(rt, turn, number, t);
                    turn.reply(reply, Ok(out));
                }
            }
            (Want::Ask(reply), Err(e)) => {
                let msg = match &e {
                    StrategyError::Exhausted { .. } => format!(
                        "study '{}' has handed out all its trials (budget.max_trials = {})",
                        rt.name(),
                        rt.def.budget.max_trials
                    ),
                    other => format!("strategy error: {other}"),
                };
                strategy_failed(env, rt, turn, e, &Exclusions::none(), t);
                let _ = reply.send(Err(SchedulerError::Conflict(msg)));
            }
            (Want::Enqueue(params, reply), Ok(suggested)) => {
                match crate::model::study::complete_params(&rt.def.space, params, || {
                    Ok::<_, String>(suggested)
                }) {
                    Ok(params) => {
                        let view = queue(rt, turn, params, t);
                        turn.reply(reply, Ok(view));
                    }
                    Err(crate::model::study::FillError::Bad(m))
                    | Err(crate::model::study::FillError::NoSuggestion(m)) => {
                        let _ = reply.send(Err(SchedulerError::BadRequest(m)));
                    }
                }
            }
            (Want::Enqueue(_, reply), Err(e)) => {
                let _ = reply.send(Err(SchedulerError::Conflict(format!(
                    "cannot fill the missing parameters from the strategy: {e}; give every parameter"
                ))));
            }
        }
    }
}

/// Marks trial `n` running as an external trial (`ask`); returns what the worker gets.
pub(crate) fn hand_out(rt: &mut StudyRuntime, turn: &mut Turn, n: u64, t: f64) -> (u64, Params) {
    let params = rt.edit(n, |tr| {
        tr.state = TrialState::Running;
        tr.executor = Some("external".into());
        tr.started_at = Some(t);
        tr.last_seen_at = Some(t);
        (*tr.params).clone()
    });
    rt.last_seen.insert(n, t);
    turn.trial(rt.name(), n);
    (n, params)
}

/// Queues a new trial with `params` (`enqueue`); returns its view.
pub(crate) fn queue(rt: &mut StudyRuntime, turn: &mut Turn, params: Params, t: f64) -> TrialView {
    let n = rt.trials().len() as u64;
    let tr = TrialRecord::new(rt.name(), n, params, t);
    let view = TrialView::from(&tr);
    rt.push(tr);
    tracing::info!(study = %rt.name(), trial = n, "trial enqueued");
    turn.trial(rt.name(), n);
    view
}

/// The error an ask gets when the study hands out nothing now.
pub(crate) fn not_handing_out(rt: &StudyRuntime) -> SchedulerError {
    SchedulerError::Conflict(format!(
        "study '{}' is {}; no new trials are handed out",
        rt.name(),
        rt.record.state.as_str()
    ))
}

/// What the study does when its strategy has no point to give: exhausted (a grid) ends it
/// once its trials are done; an invalid point or space fails it.
fn strategy_failed(
    env: &Env,
    rt: &mut StudyRuntime,
    turn: &mut Turn,
    e: StrategyError,
    exclusions: &Exclusions,
    t: f64,
) {
    match e {
        StrategyError::Exhausted { total } => {
            tracing::info!(study = %rt.name(), "design exhausted after {total} points");
            rt.exhausted = true;
        }
        StrategyError::Invalid(m) => {
            let message = if exclusions.is_empty() {
                format!("strategy error: {m}")
            } else {
                let needs: Vec<String> = rt.def.requires.iter().map(|r| r.describe()).collect();
                format!(
                    "{m}: {} (GPUs of this daemon: {})",
                    needs.join("; "),
                    gpu_list(env)
                )
            };
            stop_study(env, rt, turn, StudyState::Failed, Some(message), t);
        }
    }
}

/// Starts one job on a blocking worker that suggests a trial for each of `wants`, in order
/// (each seeing the ones before it as pending); the results come back as
/// [`Internal::Suggested`].
pub(crate) fn request_suggestion(env: &Env, rt: &mut StudyRuntime, wants: Vec<Want>) {
    rt.join_history();
    let n = rt.trials().len() as u64;
    let exclusions = wants
        .iter()
        .map(|w| match w {
            Want::Slot { exclusions, .. } => exclusions.clone(),
            _ if rt.def.trial.workload.daemon_runs_trials() => impossible(env, &rt.def),
            _ => Exclusions::none(),
        })
        .collect();
    let pending: Vec<Params> = rt
        .queued()
        .chain(rt.running())
        .filter_map(|n| rt.trial(n).map(|t| (*t.params).clone()))
        .collect();
    let job = Suggest {
        study: rt.name().to_string(),
        n,
        def: rt.def.clone(),
        strategy: rt.strategy.clone(),
        history: rt.history.clone(),
        pending,
        exclusions,
    };
    rt.suggesting = wants;
    let inbox = env.inbox.clone();
    let metrics = env.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let study = job.study.clone();
        let results = job.run(&metrics);
        let _ = inbox.send(Internal::Suggested { study, n, results });
    });
}

/// One suggestion's inputs, owned by the worker that computes it.
struct Suggest {
    study: String,
    n: u64,
    def: Arc<StudyDefinition>,
    strategy: Arc<dyn Strategy>,
    history: Arc<Vec<Observation>>,
    pending: Vec<Params>,
    /// One per suggestion: the choices its slot cannot run.
    exclusions: Vec<Exclusions>,
}

impl Suggest {
    /// Asks the strategy once per suggestion (consuming the job, so that the shared history is
    /// released before the results are sent and the loop can extend it without a copy).
    fn run(
        mut self,
        metrics: &crate::model::metrics::Metrics,
    ) -> Vec<Result<Params, StrategyError>> {
        let kind = self.def.strategy.kind.clone();
        let mut out = Vec::with_capacity(self.exclusions.len());
        for (i, ex) in self.exclusions.iter().enumerate() {
            let t0 = std::time::Instant::now();
            let trial_number = self.n + i as u64;
            let ctx = SuggestContext {
                space: &self.def.space,
                objectives: &self.def.objectives,
                constraints: &self.def.constraints,
                history: &self.history,
                pending: &self.pending,
                trial_number,
                seed: self.def.seed,
                max_trials: Some(self.def.budget.max_trials),
            };
            let r = suggest_excluding(self.strategy.as_ref(), &ctx, ex).map(|s| {
                if let Some(note) = &s.note {
                    tracing::warn!(study = %self.study, trial = trial_number, strategy = self.strategy.name(), "{note}");
                }
                s.params
            });
            metrics
                .suggestion_seconds
                .with_label_values(&[kind.as_str()])
                .observe(t0.elapsed().as_secs_f64());
            if let Ok(p) = &r {
                self.pending.push(p.clone());
            }
            out.push(r);
        }
        out
    }
}

/// Starts queued trial `n` on `slot` (once the turn is durable).
fn start_on(
    env: &Env,
    rt: &mut StudyRuntime,
    turn: &mut Turn,
    gpu_reserved: &mut std::collections::HashMap<u32, Vec<(f64, u64)>>,
    n: u64,
    slot: Slot,
    t: f64,
) {
    let Some(ex) = env.executor_named(Some(rt.def.trial.executor.as_str())) else {
        return;
    };
    let local = !ex.survives_restart();
    if rt.waiting.take().is_some() {
        turn.touched.insert(rt.name().to_string());
    }
    if let Some(bytes) = rt.def.trial.gpu_memory.filter(|_| local) {
        for d in &slot.gpus {
            gpu_reserved.entry(*d).or_default().push((t, bytes));
        }
    }
    if !slot.gpus.is_empty() {
        env.gpu_monitor.started(rt.name(), n, &slot.gpus);
    }
    let ex_name = ex.name();
    let slot_name = slot.name.clone();
    rt.edit(n, |tr| {
        let queued_since = tr.attempts.last().map_or(tr.created_at, |a| a.finished_at);
        env.metrics
            .queue_seconds
            .with_label_values(&[ex_name])
            .observe((t - queued_since).max(0.0));
        tr.state = TrialState::Running;
        tr.executor = Some(ex_name.to_string());
        if local {
            record_environment(env, tr, &slot);
        }
        tr.slot = Some(slot_name);
        tr.job_id = None;
        tr.started_at = Some(t);
        tr.last_seen_at = Some(t);
    });
    turn.trial(rt.name(), n);
    turn.launches.push(launch(env, rt, n, slot.clone()));
    if local {
        rt.held.insert(n, slot);
    }
}

/// Takes a slot for one of `rt`'s trials: a CPU slot, or GPUs that are healthy and have the
/// free memory the study asks for (`trial.gpu_memory`, less what trials started in the last
/// [`GPU_RESERVE_SECS`] have been promised). When GPUs are free but none qualifies, notes why
/// on the study (`status` shows it) and returns `None`: the trial waits.
fn acquire_slot(
    env: &Env,
    rt: &mut StudyRuntime,
    turn: &mut Turn,
    slots: &mut crate::gpu::slots::SlotPool,
    reserved: &mut std::collections::HashMap<u32, Vec<(f64, u64)>>,
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
    let slot = slots.acquire_where(gpus, |d| match env.gpu_monitor.free_memory(d) {
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
            tracing::info!(study = %rt.name(), "{why}");
            rt.waiting = Some(why);
            turn.touched.insert(rt.name().to_string());
        }
    }
    slot
}

/// The choices a trial on `slot` cannot run (`space.<p>.requires`).
fn exclusions_for(env: &Env, def: &StudyDefinition, slot: &Slot) -> Exclusions {
    if def.requires.is_empty() {
        return Exclusions::none();
    }
    let gpus: Vec<&crate::gpu::GpuInfo> =
        slot.gpus.iter().filter_map(|d| env.gpus.get(d)).collect();
    hardware::exclusions(&def.requires, &gpus)
}

/// The choices no slot of this daemon can run for `def` (a CPU study: every choice with a
/// requirement; a GPU study: those fewer than `trial.gpus` of the GPUs meet).
pub(crate) fn impossible(env: &Env, def: &StudyDefinition) -> Exclusions {
    let mut e = Exclusions::none();
    for r in &def.requires {
        let meeting = env.gpus.values().filter(|g| r.met_by(&[g])).count();
        if def.trial.gpus == 0 || meeting < def.trial.gpus as usize {
            e.exclude(&r.param, r.choice.clone());
        }
    }
    e
}

/// The GPUs this daemon has, for messages: `gpu0 NVIDIA H100 (cc 9.0)`, or `none`.
pub(crate) fn gpu_list(env: &Env) -> String {
    if env.gpus.is_empty() {
        return "none".into();
    }
    env.gpus
        .values()
        .map(|g| format!("gpu{} {}", g.index, g.label()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stores where a local trial runs: the host, quantune's version, and its GPUs with the
/// driver and CUDA versions (the trial's own values of these keys win when it reports them).
fn record_environment(env: &Env, tr: &mut TrialRecord, slot: &Slot) {
    let info = std::sync::Arc::make_mut(&mut tr.info);
    info.insert("host".into(), crate::gpu::host::description().to_string());
    info.insert("quantune_version".into(), env!("CARGO_PKG_VERSION").into());
    if slot.gpus.is_empty() {
        return;
    }
    let names: Vec<String> = slot
        .gpus
        .iter()
        .map(|d| env.gpus.get(d).map_or(format!("gpu{d}"), |g| g.label()))
        .collect();
    info.insert("gpu".into(), names.join(", "));
    if let Some(v) = env.gpu_monitor.driver_version() {
        info.insert("gpu_driver".into(), v);
    }
    if let Some(v) = &env.cuda_version {
        info.insert("cuda_version".into(), v.clone());
    }
}
