//! What reaches the loop besides API commands: executor events (reports, job ids and states,
//! finished attempts), returned suggestions, the once-a-second tick, and — at the ends of its
//! life — loading every study from the store and the graceful stop.

use super::error::{Result, SchedulerError};
use super::study::StudyRuntime;
use super::transitions::{
    apply_failure, apply_outcome, check_study, reconcile, record_report, stop_trial,
};
use super::{Core, Internal, CRASH_REASON};
use crate::executor::{CancelReason, ExecEvent};
use quantune_state::TrialState;
use quantune_strategies::pruner::Report as CurveReport;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

impl Core {
    /// Handles one executor event.
    pub fn event(&mut self, ev: ExecEvent) {
        let t = super::now();
        let Core {
            env,
            studies,
            slots,
            turn,
            ..
        } = self;
        match ev {
            ExecEvent::Report {
                study,
                trial,
                attempt,
                step,
                values,
            } => {
                let Some(rt) = studies.get_mut(&study) else {
                    return;
                };
                if !rt.is_current(trial, attempt) {
                    return;
                }
                if let Some(reason) = record_report(rt, turn, trial, step, values, t) {
                    tracing::info!(%study, trial, "{reason}");
                    rt.stop_reasons.insert(trial, reason);
                    stop_trial(rt, turn, trial, CancelReason::Pruned);
                }
            }
            ExecEvent::Started {
                study,
                trial,
                attempt,
                job_id,
            } => {
                let Some(rt) = studies.get_mut(&study) else {
                    return;
                };
                let fresh = rt.trial(trial).is_some_and(|tr| {
                    tr.attempt == attempt
                        && tr.state == TrialState::Running
                        && tr.job_id.as_deref() != Some(job_id.as_str())
                });
                if fresh {
                    tracing::info!(%study, trial, %job_id, "submitted");
                    rt.edit(trial, |tr| tr.job_id = Some(job_id));
                    turn.trial(&study, trial);
                }
            }
            ExecEvent::JobState {
                study,
                trial,
                attempt,
                state,
            } => {
                let Some(rt) = studies.get_mut(&study) else {
                    return;
                };
                if rt.trial(trial).is_some_and(|tr| tr.attempt == attempt)
                    && rt.job_states.get(&trial) != Some(&state)
                {
                    rt.job_states.insert(trial, state);
                    turn.touched.insert(study);
                }
            }
            ExecEvent::Finished {
                study,
                trial,
                attempt,
                outcome,
            } => {
                let Some(rt) = studies.get_mut(&study) else {
                    return;
                };
                if !rt.is_current(trial, attempt) {
                    return;
                }
                if let Some(slot) = rt.held.remove(&trial) {
                    if !slot.gpus.is_empty() {
                        let gpu_monitor = env.gpu_monitor.clone();
                        rt.edit(trial, |tr| {
                            gpu_monitor.finished(&study, trial, 0.0, &mut tr.gpu)
                        });
                    }
                    // Free now: the attempt has ended. Should the turn fail to persist, the
                    // process stops before anything else starts on it.
                    slots.release(&slot);
                }
                apply_outcome(env, rt, turn, trial, outcome, t);
                check_study(env, rt, turn, t);
            }
        }
    }

    /// Handles a message the loop sent itself.
    pub fn internal(&mut self, m: Internal) {
        match m {
            Internal::Suggested { study, n, results } => self.suggested(&study, n, results),
            Internal::Purged(name) => {
                self.purging.remove(&name);
            }
        }
    }

    /// Periodic work: external-trial timeouts, wall-clock and GPU-hour budgets.
    pub fn tick(&mut self) {
        let t = super::now();
        let Core {
            env, studies, turn, ..
        } = self;
        for rt in studies.values_mut() {
            let timeout = rt.def.trial.timeout_secs;
            let stale: Vec<u64> = rt
                .running()
                .filter(|n| {
                    rt.trial(*n)
                        .is_some_and(|tr| tr.executor.as_deref() == Some("external"))
                })
                .filter(|n| t - rt.last_seen.get(n).copied().unwrap_or(t) > timeout)
                .collect();
            for n in stale {
                let reason = format!(
                    "timeout: no report for {}",
                    crate::model::duration::format_secs(timeout)
                );
                apply_failure(env, rt, turn, n, reason, None, t);
            }
            check_study(env, rt, turn, t);
        }
    }

    /// Loads every study from the store, reconciling trials a previous process left running.
    pub fn load_all(&mut self) -> Result<()> {
        let records = self
            .env
            .store
            .studies()
            .map_err(SchedulerError::from_store)?;
        for record in records {
            let name = record.name.clone();
            if let Err(e) = self.load_study(record, CRASH_REASON) {
                tracing::error!(study = %name, "cannot load study: {e}");
            }
        }
        self.env.metrics.trials_finished.reset();
        for rt in self.studies.values() {
            for (state, n) in rt.counts() {
                if !matches!(*state, "queued" | "running") && *n > 0 {
                    self.env
                        .metrics
                        .trials_finished
                        .with_label_values(&[rt.name(), state])
                        .inc_by(*n);
                }
            }
        }
        Ok(())
    }

    /// Loads one study (from the store) and reconciles it with `reason` for trials it finds
    /// running.
    pub fn load_study(&mut self, record: quantune_state::StudyRecord, reason: &str) -> Result<()> {
        let name = record.name.clone();
        let store = &self.env.store;
        let mut curves: HashMap<u64, Vec<CurveReport>> = HashMap::new();
        for (n, r) in store
            .study_reports(&name)
            .map_err(SchedulerError::from_store)?
        {
            curves.entry(n).or_default().push((r.step, r.values));
        }
        let mut failed = None;
        let trials = store
            .each_trial(&name)
            .map_while(|t| t.map_err(|e| failed = Some(e)).ok());
        let loaded = StudyRuntime::load(record, trials, curves);
        if let Some(e) = failed {
            return Err(SchedulerError::from_store(e));
        }
        let mut rt = loaded.map_err(SchedulerError::BadRequest)?;
        reconcile(&self.env, &mut rt, &mut self.turn, reason, super::now());
        self.turn.touched.insert(name.clone());
        self.studies.insert(name, rt);
        Ok(())
    }

    /// The graceful stop: no new trials; local ones are interrupted and recorded (for up to
    /// 30 s); Slurm jobs run on and are re-attached by the next start.
    pub async fn shut_down(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<ExecEvent>,
    ) -> Result<()> {
        self.stopping = true;
        {
            let Core { studies, turn, .. } = self;
            // A finished study's running trials were already asked to stop (cancelled with
            // it): interrupting them instead would record them as failed.
            for rt in studies.values().filter(|rt| !rt.record.state.is_finished()) {
                for n in rt.held.keys() {
                    stop_trial(rt, turn, *n, CancelReason::Shutdown);
                }
            }
        }
        self.apply()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.studies.values().any(|rt| !rt.held.is_empty()) {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(ev)) => {
                    self.event(ev);
                    while let Ok(more) = events.try_recv() {
                        self.event(more);
                    }
                    self.apply()?;
                }
                _ => break,
            }
        }
        // Suggestions still running are dropped: nothing of them was recorded.
        self.apply()
    }
}
