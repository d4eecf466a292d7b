//! The API's writes, as the loop handles them. Each checks the request against the live
//! state (answering at once when it is refused: nothing changed), changes the state, and
//! replies once the turn is durable.

use super::dispatch::{gpu_list, hand_out, impossible, not_handing_out, queue};
use super::error::{no_trial, not_found, SchedulerError};
use super::study::StudyRuntime;
use super::transitions::{
    apply_outcome, check_study, finish_trial, missing_metrics, record_report, stop_study,
};
use super::{Command, Core, Reply, TellOutcome, Want, IMPORT_REASON};
use crate::executor::AttemptOutcome;
use crate::gpu::hardware;
use crate::model::study::{complete_params, FillError, StudyDefinition, Workload};
use crate::model::wire::{StudySummary, TrialView};
use quantune_state::{StudyRecord, StudyState, TrialRecord, TrialState};
use quantune_strategies::restrict::Exclusions;
use quantune_strategies::Params;
use std::collections::HashMap;
use std::sync::Arc;

impl Core {
    /// Handles one API command.
    pub fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(def, source, reply) => self.submit(*def, source, reply),
            Command::Pause(name, reply) => self.transition(&name, reply, |s| match s {
                StudyState::Running | StudyState::Paused => Ok(StudyState::Paused),
                other => Err(format!(
                    "study '{name}' is {} and cannot be paused",
                    other.as_str()
                )),
            }),
            Command::Resume(name, reply) => self.transition(&name, reply, |s| match s {
                StudyState::Paused | StudyState::Running => Ok(StudyState::Running),
                other => Err(format!(
                    "study '{name}' is {} and cannot be resumed",
                    other.as_str()
                )),
            }),
            Command::Cancel(name, reply) => self.cancel(&name, reply),
            Command::Ask(name, reply) => self.ask_now(&name, reply),
            Command::Report(name, n, step, values, reply) => {
                self.report(&name, n, step, values, reply)
            }
            Command::Tell(name, n, outcome, reply) => self.tell(&name, n, outcome, reply),
            Command::Import(data, to, reply) => {
                let r = self.import(data, to.as_deref());
                self.turn.reply(reply, r);
            }
            Command::ImportResults(name, results, reply) => {
                self.import_results(&name, results, reply)
            }
            Command::Enqueue(name, params, reply) => self.enqueue_now(&name, params, reply),
            Command::Backup(reply) => {
                let mut out = Vec::new();
                let r = self
                    .studies
                    .keys()
                    .try_for_each(|name| self.env.store.export_study(name, &mut out))
                    .map(|_| out)
                    .map_err(SchedulerError::from_store);
                let _ = reply.send(r);
            }
            Command::Delete(name, reply) => self.delete(&name, reply),
            Command::Extend(name, req, reply) => self.extend(&name, req, reply),
            Command::Tag(name, req, reply) => self.tag(&name, req, reply),
            Command::StudyNote(name, note, reply) => self.study_note(&name, note, reply),
            Command::TrialNote(name, n, note, reply) => self.trial_note(&name, n, note, reply),
            Command::Copy(name, to, reply) => self.copy(&name, &to, reply),
        }
    }

    /// Replies with a study's summary as published at the end of this turn.
    pub(super) fn reply_summary(&mut self, name: &str, reply: Reply<StudySummary>) {
        let snapshots = self.snapshots.clone();
        let name = name.to_string();
        self.turn.touched.insert(name.clone());
        self.turn.replies.push(Box::new(move |err| {
            let _ = reply.send(match err {
                Some(e) => Err(e.clone()),
                None => snapshots
                    .study(&name)
                    .map(|s| s.summary())
                    .ok_or_else(|| not_found(&name)),
            });
        }));
    }

    fn submit(&mut self, def: StudyDefinition, source: String, reply: Reply<StudySummary>) {
        let refuse = |m: String| Err(SchedulerError::BadRequest(m));
        let runs = def.trial.workload.daemon_runs_trials();
        let check = if runs
            && self
                .env
                .executor_named(Some(def.trial.executor.as_str()))
                .is_none()
        {
            refuse(format!(
                "trial.executor = \"{0}\" but this daemon has no such executor; configure [executor.{0}] in the daemon config (see docs/DEPLOY.md) or use \"local\"",
                def.trial.executor
            ))
        } else if runs
            && def.trial.executor == "local"
            && def.trial.gpus > 0
            && self.slots.gpu_devices() < def.trial.gpus as usize
        {
            refuse(format!(
                "trial.gpus = {} but this daemon has {} GPU(s); set trial.gpus = 0 to run on CPU slots",
                def.trial.gpus,
                self.slots.gpu_devices()
            ))
        } else if self.studies.contains_key(&def.name) {
            Err(SchedulerError::Conflict(format!(
                "a study named '{}' already exists; choose another [study] name",
                def.name
            )))
        } else if let Err(e) = self.name_free(&def.name) {
            Err(e)
        } else {
            Ok(())
        };
        if let Err(e) = check {
            let _ = reply.send(Err(e));
            return;
        }
        let json = match serde_json::to_value(&def) {
            Ok(j) => j,
            Err(e) => {
                let _ = reply.send(Err(SchedulerError::Internal(e.to_string())));
                return;
            }
        };
        let record = StudyRecord::new(&def.name, json, source, super::now());
        let rt = match StudyRuntime::load(record, Vec::new(), HashMap::new()) {
            Ok(rt) => rt,
            Err(e) => {
                let _ = reply.send(Err(SchedulerError::BadRequest(e)));
                return;
            }
        };
        tracing::info!(study = %def.name, "study submitted");
        if def.trial.executor == "local" && runs {
            let gpus: Vec<crate::gpu::GpuInfo> = self.env.gpus.values().cloned().collect();
            for w in hardware::unmet_warnings(&def.requires, def.trial.gpus, &gpus) {
                tracing::warn!(study = %def.name, "{w}");
            }
        }
        self.studies.insert(def.name.clone(), rt);
        self.turn.new_studies.insert(def.name.clone());
        self.reply_summary(&def.name, reply);
    }

    fn transition(
        &mut self,
        name: &str,
        reply: Reply<StudySummary>,
        f: impl FnOnce(StudyState) -> Result<StudyState, String>,
    ) {
        let Core {
            env, studies, turn, ..
        } = self;
        let Some((rt, reply)) = study_or_reply(studies, name, reply) else {
            return;
        };
        let next = match f(rt.record.state) {
            Ok(s) => s,
            Err(m) => {
                let _ = reply.send(Err(SchedulerError::Conflict(m)));
                return;
            }
        };
        let t = super::now();
        if next != rt.record.state {
            rt.record.state = next;
            rt.record.updated_at = t;
            turn.study(name);
        }
        // A resumed study may already be done.
        check_study(env, rt, turn, t);
        self.reply_summary(name, reply);
    }

    fn cancel(&mut self, name: &str, reply: Reply<StudySummary>) {
        let Core {
            env,
            studies,
            turn,
            slots,
            ..
        } = self;
        let Some((rt, reply)) = study_or_reply(studies, name, reply) else {
            return;
        };
        if rt.record.state.is_finished() {
            let _ = reply.send(Err(SchedulerError::Conflict(format!(
                "study '{name}' is already {}",
                rt.record.state.as_str()
            ))));
            return;
        }
        drop_wants(slots, rt, "cancelled");
        stop_study(
            env,
            rt,
            turn,
            StudyState::Cancelled,
            Some("cancelled by a user".into()),
            super::now(),
        );
        self.reply_summary(name, reply);
    }

    /// `ask`: a queued trial, or a new one from the strategy (computed off the loop; the
    /// reply waits for it).
    pub(crate) fn ask_now(&mut self, name: &str, reply: Reply<(u64, Params)>) {
        let Core { studies, turn, .. } = self;
        let Some((rt, reply)) = study_or_reply(studies, name, reply) else {
            return;
        };
        if rt.def.trial.workload != Workload::External {
            let _ = reply.send(Err(SchedulerError::BadRequest(format!(
                "study '{name}' runs its own trials (trial.workload = \"command\"); ask/tell need workload = \"external\""
            ))));
            return;
        }
        if rt.record.state != StudyState::Running {
            let _ = reply.send(Err(not_handing_out(rt)));
            return;
        }
        if rt.in_flight() >= rt.def.budget.parallel {
            let _ = reply.send(Err(SchedulerError::Conflict(format!(
                "study '{name}' already has {} trial(s) running (budget.parallel = {}); tell one first",
                rt.in_flight(),
                rt.def.budget.parallel
            ))));
            return;
        }
        let t = super::now();
        let first_queued = rt.queued().next();
        if let Some(n) = first_queued {
            let out = hand_out(rt, turn, n, t);
            turn.reply(reply, Ok(out));
            return;
        }
        if rt.exhausted
            || rt.budgeted() + rt.pending_new() >= rt.def.budget.max_trials
            || rt.budget_exhausted(t).is_some()
        {
            let _ = reply.send(Err(SchedulerError::Conflict(format!(
                "study '{name}' has handed out all its trials (budget.max_trials = {})",
                rt.def.budget.max_trials
            ))));
            return;
        }
        // The strategy is asked at the end of the turn, with every other want of the study.
        rt.wants.push_back(Want::Ask(reply));
    }

    fn report(
        &mut self,
        name: &str,
        n: u64,
        step: u64,
        values: std::collections::BTreeMap<String, f64>,
        reply: Reply<bool>,
    ) {
        let Core {
            env, studies, turn, ..
        } = self;
        let Some((rt, reply)) = study_or_reply(studies, name, reply) else {
            return;
        };
        let Some(tr) = rt.trial(n) else {
            let _ = reply.send(Err(no_trial(name, n)));
            return;
        };
        if tr.state != TrialState::Running {
            let _ = reply.send(Err(SchedulerError::Conflict(format!(
                "trial {n} of '{name}' is {}, not running",
                tr.state.as_str()
            ))));
            return;
        }
        let t = super::now();
        let Some(reason) = record_report(rt, turn, n, step, values, t) else {
            turn.reply(reply, Ok(false));
            return;
        };
        // The client stops on {"prune": true}; the trial is recorded as pruned now.
        rt.edit(n, |tr| {
            tr.state = TrialState::Pruned;
            tr.reason = Some(reason);
            tr.finished_at = Some(t);
        });
        finish_trial(env, rt, turn, n);
        check_study(env, rt, turn, t);
        turn.reply(reply, Ok(true));
    }

    fn tell(&mut self, name: &str, n: u64, outcome: TellOutcome, reply: Reply<TrialView>) {
        let Core {
            env, studies, turn, ..
        } = self;
        let Some((rt, reply)) = study_or_reply(studies, name, reply) else {
            return;
        };
        let Some(tr) = rt.trial(n) else {
            let _ = reply.send(Err(no_trial(name, n)));
            return;
        };
        let external = tr.executor.as_deref() == Some("external");
        if tr.state != TrialState::Running || !external {
            let _ = reply.send(Err(SchedulerError::Conflict(format!(
                "trial {n} of '{name}' is {}{}; only a running trial handed out by `ask` can be told",
                tr.state.as_str(),
                if external { "" } else { " (run by the daemon)" }
            ))));
            return;
        }
        let outcome = match outcome {
            TellOutcome::Complete(metrics) => {
                let missing = missing_metrics(&rt.def, &metrics);
                if !missing.is_empty() {
                    let _ = reply.send(Err(SchedulerError::BadRequest(format!(
                        "--metrics lacks {} (every objective and constraint metric is needed)",
                        missing.join(", ")
                    ))));
                    return;
                }
                AttemptOutcome::Complete {
                    metrics,
                    info: Default::default(),
                }
            }
            TellOutcome::Failed(r) => AttemptOutcome::Failed {
                reason: r,
                stderr_tail: None,
            },
            TellOutcome::Infeasible(r) => AttemptOutcome::Infeasible(r),
        };
        let t = super::now();
        apply_outcome(env, rt, turn, n, outcome, t);
        check_study(env, rt, turn, t);
        let view = rt
            .trial(n)
            .map(TrialView::from)
            .ok_or_else(|| no_trial(name, n));
        turn.reply(reply, view);
    }

    /// Imports export JSON lines (their one study renamed to `to`, when given) and loads the
    /// studies. Every study must be new to this daemon.
    pub(super) fn import(
        &mut self,
        data: Vec<u8>,
        to: Option<&str>,
    ) -> super::Result<quantune_state::ImportSummary> {
        let data = match to {
            Some(to) => crate::model::rename::rename_export(&data, to)
                .map_err(SchedulerError::BadRequest)?,
            None => data,
        };
        for name in check_import(&data)? {
            if self.studies.contains_key(&name) {
                let hint = if to.is_some() {
                    "choose another name for --as".to_string()
                } else {
                    format!("import it under another name with `quantune import --as NEW_NAME FILE`, or delete the old one first (`quantune delete {name}`)")
                };
                return Err(SchedulerError::Conflict(format!(
                    "a study named '{name}' already exists on this daemon; {hint}"
                )));
            }
            self.name_free(&name)?;
        }
        let summary = self
            .env
            .store
            .import(&mut std::io::Cursor::new(&data))
            .map_err(SchedulerError::from_store)?;
        for name in &summary.studies {
            let record = match self.env.store.study(name) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => return Err(SchedulerError::from_store(e)),
            };
            // Trials that were running where the study was exported run nowhere here.
            if let Err(e) = self.load_study(record, IMPORT_REASON) {
                tracing::error!(study = %name, "cannot load the imported study: {e}");
            }
            if let Some(rt) = self.studies.get(name) {
                for (state, n) in rt.counts() {
                    if !matches!(*state, "queued" | "running") && *n > 0 {
                        self.env
                            .metrics
                            .trials_finished
                            .with_label_values(&[name.as_str(), state])
                            .inc_by(*n);
                    }
                }
            }
        }
        Ok(summary)
    }

    /// Stores results measured elsewhere (`quantune import STUDY FILES…`) as finished trials
    /// marked `imported`: complete, or infeasible when they break a constraint. They are
    /// history for the strategy and cost no budget. All are checked before any is added; the
    /// turn writes them as one commit (all or nothing, even across a crash: see
    /// `Store::commit_pieces`); a retry of the same results (a lost reply) adds nothing.
    /// Replies with the trials' numbers: the API streams their views from the snapshot.
    fn import_results(
        &mut self,
        name: &str,
        results: Vec<crate::model::results::ImportedResult>,
        reply: Reply<Vec<u64>>,
    ) {
        let Core {
            env, studies, turn, ..
        } = self;
        let Some((rt, reply)) = study_or_reply(studies, name, reply) else {
            return;
        };
        if results.is_empty() {
            let _ = reply.send(Err(SchedulerError::BadRequest(
                "no results to import".into(),
            )));
            return;
        }
        for (i, r) in results.iter().enumerate() {
            let at = r
                .source
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            if let Err(e) = crate::model::results::check(&rt.def, &r.params, &r.metrics) {
                let _ = reply.send(Err(SchedulerError::BadRequest(format!(
                    "results[{i}]{at}: {e}"
                ))));
                return;
            }
        }
        let key = import_key(&results);
        let already: Vec<u64> = rt
            .trials()
            .iter()
            .filter(|t| t.imported && t.info.get(IMPORT_KEY) == Some(&key))
            .map(|t| t.number)
            .collect();
        if already.len() == results.len() {
            tracing::info!(study = %name, "import of {} result(s) repeated: already stored", results.len());
            let _ = reply.send(Ok(already));
            return;
        }
        let t = super::now();
        let first = rt.trials().len() as u64;
        // Results without info of their own share one map: the import's digest.
        let shared_info = Arc::new(quantune_state::Info::from([(
            IMPORT_KEY.to_string(),
            key.clone(),
        )]));
        let mut numbers = already;
        for r in results.into_iter().skip(numbers.len()) {
            let n = rt.trials().len() as u64;
            let mut tr = TrialRecord::new(name, n, r.params, t);
            let violated = crate::model::results::violations(&rt.def, &r.metrics);
            tr.state = if violated.is_empty() {
                TrialState::Complete
            } else {
                tr.reason = Some(format!("constraint violated: {}", violated.join("; ")));
                TrialState::Infeasible
            };
            tr.metrics = Arc::new(r.metrics);
            tr.info = if r.info.is_empty() && r.source.is_none() {
                shared_info.clone()
            } else {
                let mut info = r.info;
                if let Some(s) = r.source {
                    info.insert("imported_from".into(), s);
                }
                info.insert(IMPORT_KEY.into(), key.clone());
                Arc::new(info)
            };
            tr.finished_at = Some(t);
            tr.imported = true;
            env.metrics
                .trials_finished
                .with_label_values(&[name, tr.state.as_str()])
                .inc();
            rt.push(tr);
            rt.observe(n);
            turn.trial(name, n);
            numbers.push(n);
        }
        let last = rt.trials().len() as u64 - 1;
        tracing::info!(study = %name, "imported {} result(s) as trials {first}..{last}", last + 1 - first);
        turn.reply(reply, Ok(numbers));
    }

    /// `enqueue`: queues a configuration to run before any new suggestion. Missing parameters
    /// are filled from the strategy's suggestion for that trial; numbers are converted to the
    /// parameter's type. Counts against `budget.max_trials` like any trial.
    pub(crate) fn enqueue_now(&mut self, name: &str, mut params: Params, reply: Reply<TrialView>) {
        let Core {
            env, studies, turn, ..
        } = self;
        let Some((rt, reply)) = study_or_reply(studies, name, reply) else {
            return;
        };
        if rt.record.state.is_finished() {
            let _ = reply.send(Err(SchedulerError::Conflict(format!(
                "study '{name}' is {}; only a running or paused study takes queued trials",
                rt.record.state.as_str()
            ))));
            return;
        }
        if rt.budgeted() >= rt.def.budget.max_trials {
            let _ = reply.send(Err(SchedulerError::Conflict(format!(
                "study '{name}' has created all its trials (budget.max_trials = {})",
                rt.def.budget.max_trials
            ))));
            return;
        }
        if let Err(e) = convert_params(&rt.def, name, &mut params) {
            let _ = reply.send(Err(e));
            return;
        }
        let impossible = if rt.def.trial.workload.daemon_runs_trials() {
            impossible(env, &rt.def)
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
            let _ = reply.send(Err(SchedulerError::BadRequest(format!(
                "{}, and no slot of this daemon can run it (GPUs: {}); choose another value",
                why.join("; "),
                gpu_list(env)
            ))));
            return;
        }
        // Complete as given (or refused as it is)? Else the strategy fills the gaps.
        let needs = "the strategy's suggestion is needed";
        match complete_params(&rt.def.space, params.clone(), || Err::<Params, _>(needs)) {
            Ok(params) => {
                let view = queue(rt, turn, params, super::now());
                turn.reply(reply, Ok(view));
                return;
            }
            Err(FillError::Bad(m)) => {
                let _ = reply.send(Err(SchedulerError::BadRequest(m)));
                return;
            }
            Err(FillError::NoSuggestion(_)) => {}
        }
        rt.wants.push_back(Want::Enqueue(params, reply));
    }
}

/// Answers the wants of a study that stops handing out trials: slots taken for a new trial
/// are freed, asks and enqueues are refused (`why`: "cancelled", "deleted").
pub(super) fn drop_wants(
    slots: &mut crate::gpu::slots::SlotPool,
    rt: &mut StudyRuntime,
    why: &str,
) {
    let name = rt.name().to_string();
    let refused = || SchedulerError::Conflict(format!("study '{name}' was {why}"));
    for w in std::mem::take(&mut rt.wants) {
        match w {
            Want::Slot { slot, .. } => slots.release(&slot),
            Want::Ask(r) => {
                let _ = r.send(Err(refused()));
            }
            Want::Enqueue(_, r) => {
                let _ = r.send(Err(refused()));
            }
        }
    }
}

/// Study `name`, with the reply handed back; or `None` after replying that there is none.
pub(super) fn study_or_reply<'a, T>(
    studies: &'a mut std::collections::BTreeMap<String, StudyRuntime>,
    name: &str,
    reply: Reply<T>,
) -> Option<(&'a mut StudyRuntime, Reply<T>)> {
    match studies.get_mut(name) {
        Some(rt) => Some((rt, reply)),
        None => {
            let _ = reply.send(Err(not_found(name)));
            None
        }
    }
}

/// The info key that marks which import a result came with (a digest of the results).
const IMPORT_KEY: &str = "import_batch";

/// A digest of imported results, the same for the same results in the same order.
fn import_key(results: &[crate::model::results::ImportedResult]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for r in results {
        h.update(serde_json::to_vec(r).unwrap_or_default());
        h.update(b"\n");
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Converts enqueued values to their parameters' types (an integer for a float parameter,
/// and back); refuses names that are not parameters.
fn convert_params(
    def: &StudyDefinition,
    name: &str,
    params: &mut Params,
) -> Result<(), SchedulerError> {
    for (k, v) in params.iter_mut() {
        let p = def
            .space
            .params()
            .iter()
            .find(|p| &p.name == k)
            .ok_or_else(|| {
                SchedulerError::BadRequest(format!("'{k}' is not a parameter of study '{name}'"))
            })?;
        let field = match v {
            quantune_strategies::ParamValue::Float(x) => crate::model::results::Field::Num(*x),
            quantune_strategies::ParamValue::Int(i) => crate::model::results::Field::Num(*i as f64),
            quantune_strategies::ParamValue::Bool(b) => crate::model::results::Field::Bool(*b),
            quantune_strategies::ParamValue::Str(s) => {
                crate::model::results::Field::Text(s.clone())
            }
        };
        *v = crate::model::results::param_value(&p.domain, &field)
            .map_err(|e| SchedulerError::BadRequest(format!("{k}: {e}")))?;
    }
    Ok(())
}

/// Checks what the store's own format checks do not: that every imported study is one this
/// scheduler can load (readable definition, a known strategy, trials numbered without gaps).
/// The store keeps what it imports, so an unloadable study must be refused before that.
/// Returns the names of the studies in it.
fn check_import(data: &[u8]) -> Result<Vec<String>, SchedulerError> {
    use quantune_state::ExportLine;
    let text = std::str::from_utf8(data).map_err(|e| {
        SchedulerError::BadRequest(format!("import: the data is not UTF-8 text ({e})"))
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
            Err(_) => return Ok(studies.into_iter().map(|s| s.1.name).collect()),
        }
    }
    let names = studies.iter().map(|s| s.1.name.clone()).collect();
    for (line, record, mut trials) in studies {
        trials.sort_by_key(|t| t.number);
        let name = record.name.clone();
        StudyRuntime::load(record, trials, HashMap::new()).map_err(|e| {
            SchedulerError::BadRequest(format!("import line {line}: study '{name}': {e}"))
        })?;
    }
    Ok(names)
}
