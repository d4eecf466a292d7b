//! How trials and studies change state: an attempt's outcome, a failure and its retry, a
//! trial reaching its final state, an intermediate report and the pruning decision, a study
//! ending by budget. Each function changes the study's live state and notes in the [`Turn`]
//! what to persist and do; none writes to the store or talks to an executor itself.

use super::study::StudyRuntime;
use super::turn::Turn;
use super::{Env, CRASH_REASON, IMPORT_REASON, SHUTDOWN_REASON};
use crate::executor::{AttemptOutcome, CancelReason, Launch};
use crate::gpu::slots::Slot;
use crate::model::study::{OnExhausted, StudyDefinition};
use quantune_state::{AttemptRecord, StudyState, TrialState};
use quantune_strategies::pruner::{Curve, PruneContext, QualityGate};
use std::collections::BTreeMap;

/// Reports kept per trial; later steps are dropped (and said so once). Bounds the memory a
/// trial that reports without end can take.
pub const MAX_REPORTS_PER_TRIAL: usize = 100_000;

/// Whether a failed attempt counts against `trial.retries`. A graceful stop is the operator's
/// doing and an import moves the study elsewhere: neither is the trial's fault. A crash does
/// count, so that a trial that keeps bringing the daemon down cannot loop forever. Work that a
/// cluster re-ran (Slurm requeue) is not the trial's fault either.
pub fn costs_retry(reason: &str) -> bool {
    reason != SHUTDOWN_REASON
        && reason != IMPORT_REASON
        && !reason.starts_with(crate::executor::slurm::REQUEUE_PREFIX)
}

/// The objective and constraint metrics a final result lacks.
pub fn missing_metrics<'a>(
    def: &'a StudyDefinition,
    metrics: &BTreeMap<String, f64>,
) -> Vec<&'a str> {
    def.objectives
        .iter()
        .map(|o| o.metric.as_str())
        .chain(def.constraints.iter().map(|c| c.metric.as_str()))
        .filter(|m| !metrics.contains_key(*m))
        .collect()
}

/// What an executor needs to start (or re-attach to) the current attempt of trial `n`.
pub(crate) fn launch(env: &Env, rt: &StudyRuntime, n: u64, slot: Slot) -> Launch {
    let tr = rt.trial(n).expect("launch of an existing trial");
    Launch {
        study: rt.name().to_string(),
        trial: n,
        attempt: tr.attempt,
        params: (*tr.params).clone(),
        spec: rt.spec.clone(),
        slot,
        run_dir: env.run_root.join(rt.name()).join(n.to_string()),
    }
}

/// Asks whatever runs trial `n` to stop it (once the turn is durable).
pub(crate) fn stop_trial(rt: &StudyRuntime, turn: &mut Turn, n: u64, why: CancelReason) {
    if let Some(ex) = rt.trial(n).and_then(|t| t.executor.clone()) {
        if ex != "external" {
            turn.cancels.push((ex, rt.name().to_string(), n, why));
        }
    }
}

/// Fails (and re-queues while retries allow) the local trials of a freshly loaded study that
/// are `running` although this process never started them; external ones keep running with a
/// fresh timeout; work that outlives the daemon (Slurm jobs) is re-attached. Then checks the
/// study.
pub(crate) fn reconcile(env: &Env, rt: &mut StudyRuntime, turn: &mut Turn, reason: &str, t: f64) {
    let running: Vec<u64> = rt.running().collect();
    let mut interrupted = Vec::new();
    for n in running {
        let tr = rt.trial(n).expect("indexed");
        let executor = tr.executor.clone();
        if executor.as_deref() == Some("external") {
            rt.last_seen.insert(n, t);
            continue;
        }
        match env.executor_named(executor.as_deref()) {
            Some(ex) if ex.survives_restart() => {
                tracing::info!(study = %rt.name(), trial = n, job = ?tr.job_id, "re-attaching to a {} job", ex.name());
                let job = tr.job_id.clone();
                ex.attach(launch(env, rt, n, Slot::detached(ex.name())), job);
            }
            ex => {
                // After a crash the attempt's processes may still run here: they must not run
                // beside the retry (a GPU held twice, skewed timings).
                if let Some(ex) = ex.filter(|_| reason == CRASH_REASON) {
                    let run_dir = env.run_root.join(rt.name()).join(n.to_string());
                    ex.reap(rt.name(), n, tr.attempt, &run_dir);
                }
                interrupted.push(n);
            }
        }
    }
    for n in interrupted {
        tracing::warn!(study = %rt.name(), trial = n, "{reason}");
        apply_failure(env, rt, turn, n, reason.into(), None, t);
    }
    check_study(env, rt, turn, t);
}

/// Stores an intermediate report of a running trial and asks the quality gate and the pruner
/// about it; returns why the trial should stop, if it should.
pub(crate) fn record_report(
    rt: &mut StudyRuntime,
    turn: &mut Turn,
    n: u64,
    step: u64,
    values: BTreeMap<String, f64>,
    t: f64,
) -> Option<String> {
    rt.last_seen.insert(n, t);
    let curve = rt.curves.entry(n).or_default();
    let at = curve.iter().position(|(s, _)| *s >= step);
    if at.is_none_or(|i| curve[i].0 != step) && curve.len() >= MAX_REPORTS_PER_TRIAL {
        if rt.capped.insert(n) {
            tracing::warn!(study = %rt.record.name, trial = n, "more than {MAX_REPORTS_PER_TRIAL} reports: later steps are not kept");
        }
        return None;
    }
    turn.reports.push((
        rt.record.name.clone(),
        n,
        quantune_state::Report {
            step,
            values: values.clone(),
            at: t,
        },
    ));
    turn.touched.insert(rt.record.name.clone());
    if rt.stop_reasons.contains_key(&n) {
        // Reports written after the decision do not count: pruners see the curve as it was.
        return None;
    }
    let curve = rt.curves.entry(n).or_default();
    match at {
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
            return Some(reason);
        }
    }
    rt.pruner.as_ref()?;
    warn_unreported_prune_metric(rt, turn, n);
    let p = rt.pruner.as_ref()?;
    // Only a report at the trial's newest step is a new decision point.
    if rt.curves[&n].last().is_some_and(|(s, _)| *s != step) {
        return None;
    }
    let others: Vec<Curve> = rt
        .curves
        .iter()
        .filter(|(k, _)| **k != n)
        .map(|(k, c)| Curve {
            number: *k,
            reports: c,
            complete: rt
                .trial(*k)
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
    p.decide(&ctx)
        .map(|r| format!("pruned at step {step}: {r}"))
}

/// Reports a trial sends before a pruner metric missing from all of them is warned about.
pub const UNREPORTED_AFTER: usize = 3;

/// Warns once per study (log and `status`) when trial `n` has sent [`UNREPORTED_AFTER`]
/// reports and none carries any pruner metric: nothing can be pruned, most likely because of
/// a typo in `pruner.metric`.
fn warn_unreported_prune_metric(rt: &mut StudyRuntime, turn: &mut Turn, n: u64) {
    let metrics = &rt.def.pruner.metrics;
    let curve = &rt.curves[&n];
    if rt.warnings.iter().any(|w| w.starts_with("pruner.metric"))
        || curve.len() < UNREPORTED_AFTER
        || curve
            .iter()
            .any(|(_, v)| metrics.iter().any(|m| v.contains_key(&m.name)))
    {
        return;
    }
    let reported: std::collections::BTreeSet<&str> = curve
        .iter()
        .flat_map(|(_, v)| v.keys().map(String::as_str))
        .collect();
    let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    let w = format!(
        "pruner.metric {} is in none of trial {n}'s {} reports (they carry {}){}: nothing is pruned",
        names.join(", "),
        curve.len(),
        reported.iter().copied().collect::<Vec<_>>().join(", "),
        crate::model::suggest::did_you_mean(
            names.first().copied().unwrap_or_default(),
            reported.iter().copied()
        )
    );
    tracing::warn!(study = %rt.record.name, "{w}");
    rt.warnings.push(w);
    turn.touched.insert(rt.record.name.clone());
}

/// Records how an attempt ended.
pub(crate) fn apply_outcome(
    env: &Env,
    rt: &mut StudyRuntime,
    turn: &mut Turn,
    n: u64,
    outcome: AttemptOutcome,
    t: f64,
) {
    match outcome {
        AttemptOutcome::Complete { metrics, info } => {
            let missing = missing_metrics(&rt.def, &metrics);
            if !missing.is_empty() {
                let reason = format!("final metrics line lacks {}", missing.join(", "));
                return apply_failure(env, rt, turn, n, reason, None, t);
            }
            let violated = crate::model::results::violations(&rt.def, &metrics);
            rt.edit(n, |tr| {
                tr.metrics = metrics.into();
                // What the daemon recorded at the start (host, GPU), overridden by the trial's.
                std::sync::Arc::make_mut(&mut tr.info).extend(info);
                tr.finished_at = Some(t);
                if violated.is_empty() {
                    tr.state = TrialState::Complete;
                    tr.reason = None;
                } else {
                    tr.state = TrialState::Infeasible;
                    tr.reason = Some(format!("constraint violated: {}", violated.join("; ")));
                }
            });
            finish_trial(env, rt, turn, n);
        }
        AttemptOutcome::Infeasible(reason) => {
            rt.edit(n, |tr| {
                tr.state = TrialState::Infeasible;
                tr.reason = Some(reason);
                tr.finished_at = Some(t);
            });
            finish_trial(env, rt, turn, n);
        }
        AttemptOutcome::Failed {
            reason,
            stderr_tail,
        } => apply_failure(env, rt, turn, n, reason, stderr_tail, t),
        AttemptOutcome::Cancelled {
            why: CancelReason::Shutdown,
            stderr_tail,
        } => apply_failure(env, rt, turn, n, SHUTDOWN_REASON.into(), stderr_tail, t),
        AttemptOutcome::Cancelled { why, stderr_tail } => {
            let pruned = why == CancelReason::Pruned;
            let reason = rt
                .stop_reasons
                .remove(&n)
                .unwrap_or_else(|| if pruned { "pruned" } else { "cancelled" }.into());
            rt.edit(n, |tr| {
                tr.state = if pruned {
                    TrialState::Pruned
                } else {
                    TrialState::Cancelled
                };
                tr.reason = Some(reason);
                tr.stderr_tail = stderr_tail;
                tr.finished_at = Some(t);
            });
            finish_trial(env, rt, turn, n);
        }
    }
}

/// A failed attempt: re-queued with the same parameters while retries remain, else failed.
pub(crate) fn apply_failure(
    env: &Env,
    rt: &mut StudyRuntime,
    turn: &mut Turn,
    n: u64,
    reason: String,
    stderr_tail: Option<String>,
    t: f64,
) {
    let retries = rt.def.trial.retries;
    let study_finished = rt.record.state.is_finished();
    let requeued = rt.edit(n, |tr| {
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
        if (failures <= retries || !costs_retry(&reason)) && !study_finished {
            tr.attempt += 1;
            tr.state = TrialState::Queued;
            tr.started_at = None;
            tr.reason = Some(format!("retrying after: {reason}"));
            tr.stderr_tail = stderr_tail;
            true
        } else {
            tr.state = TrialState::Failed;
            tr.reason = Some(reason);
            tr.stderr_tail = stderr_tail;
            tr.finished_at = Some(t);
            false
        }
    });
    turn.trial(rt.name(), n);
    if requeued {
        rt.last_seen.remove(&n);
        rt.job_states.remove(&n);
    } else {
        finish_trial(env, rt, turn, n);
    }
}

/// Bookkeeping for a trial that reached a final state.
pub(crate) fn finish_trial(env: &Env, rt: &mut StudyRuntime, turn: &mut Turn, n: u64) {
    rt.last_seen.remove(&n);
    rt.stop_reasons.remove(&n);
    rt.job_states.remove(&n);
    let gpus = f64::from(rt.def.trial.gpus);
    let name = rt.name().to_string();
    let (state, duration) = rt.edit(n, |tr| {
        if gpus > 0.0 {
            let secs: f64 = tr
                .attempts
                .iter()
                .map(|a| (a.finished_at - a.started_at.unwrap_or(a.finished_at)).max(0.0))
                .sum::<f64>()
                + tr.duration().unwrap_or(0.0).max(0.0);
            tr.gpu.get_or_insert_with(Default::default).gpu_seconds = gpus * secs;
        }
        tr.slot = None;
        (tr.state, tr.duration())
    });
    env.metrics
        .trials_finished
        .with_label_values(&[name.as_str(), state.as_str()])
        .inc();
    if let Some(d) = duration {
        env.metrics
            .trial_seconds
            .with_label_values(&[state.as_str()])
            .observe(d.max(0.0));
    }
    rt.observe(n);
    turn.trial(&name, n);
    turn.finished.push((name, n, rt.failed_streak));
}

/// Moves a study to completed/failed when its budget says so.
pub(crate) fn check_study(env: &Env, rt: &mut StudyRuntime, turn: &mut Turn, t: f64) {
    if rt.record.state.is_finished() {
        return;
    }
    let failed = rt.count(TrialState::Failed);
    if failed >= rt.def.budget.max_failed {
        let msg = format!(
            "{failed} trials failed (budget.max_failed = {})",
            rt.def.budget.max_failed
        );
        stop_study(env, rt, turn, StudyState::Failed, Some(msg), t);
        return;
    }
    let exhausted_by = rt.budget_exhausted(t);
    if let (Some(why), OnExhausted::Cancel) = (exhausted_by, rt.def.budget.on_exhausted) {
        // Stop what still runs; the trials are recorded as cancelled with the reason.
        let running: Vec<u64> = rt.running().collect();
        for n in running {
            let external = rt
                .trial(n)
                .is_some_and(|t| t.executor.as_deref() == Some("external"));
            if !external && !rt.stop_reasons.contains_key(&n) {
                rt.stop_reasons.insert(n, format!("cancelled: {why}"));
                stop_trial(rt, turn, n, CancelReason::User);
            }
        }
    }
    let budget_done =
        rt.budgeted() >= rt.def.budget.max_trials || rt.exhausted || exhausted_by.is_some();
    if rt.all_finished() && rt.pending_new() == 0 && budget_done {
        let msg = if rt.exhausted {
            Some("every point of the design was tried".into())
        } else if rt.budgeted() < rt.def.budget.max_trials {
            exhausted_by.map(String::from)
        } else {
            None
        };
        match all_failed(rt) {
            Some(why) => set_study_state(rt, turn, StudyState::Failed, Some(why), t),
            None => set_study_state(rt, turn, StudyState::Completed, msg, t),
        }
    }
}

/// When no trial of a study that ran out of budget produced a result (complete, pruned or
/// infeasible) and some failed: why the study failed, from its first failed trial. A broken
/// command then reads as a failure, not as a completed study with nothing in it.
fn all_failed(rt: &StudyRuntime) -> Option<String> {
    let results = [
        TrialState::Complete,
        TrialState::Pruned,
        TrialState::Infeasible,
    ];
    if results.iter().any(|s| rt.count(*s) > 0) || rt.count(TrialState::Failed) == 0 {
        return None;
    }
    let first = rt.trials().iter().find(|t| t.state == TrialState::Failed)?;
    let what = match rt.count(TrialState::Cancelled) {
        0 => "every trial failed".to_string(),
        n => format!("no trial succeeded ({n} cancelled, the others failed)"),
    };
    Some(format!(
        "{what}; the first, trial {}: {}",
        first.number,
        first.reason.as_deref().unwrap_or("no reason recorded")
    ))
}

/// Ends a study: queued trials are cancelled, running ones are asked to stop.
pub(crate) fn stop_study(
    env: &Env,
    rt: &mut StudyRuntime,
    turn: &mut Turn,
    state: StudyState,
    message: Option<String>,
    t: f64,
) {
    set_study_state(rt, turn, state, message, t);
    let queued: Vec<u64> = rt.queued().collect();
    let running: Vec<u64> = rt.running().collect();
    let mut ended = queued;
    for n in running {
        if rt
            .trial(n)
            .is_some_and(|t| t.executor.as_deref() == Some("external"))
        {
            ended.push(n);
        } else {
            stop_trial(rt, turn, n, CancelReason::User);
        }
    }
    for n in ended {
        rt.edit(n, |tr| {
            tr.state = TrialState::Cancelled;
            tr.reason = Some(format!("study {}", state.as_str()));
            tr.finished_at = Some(t);
        });
        finish_trial(env, rt, turn, n);
    }
}

/// Changes a study's state (persisted with the turn).
pub(crate) fn set_study_state(
    rt: &mut StudyRuntime,
    turn: &mut Turn,
    state: StudyState,
    message: Option<String>,
    t: f64,
) {
    if rt.record.state != state {
        tracing::info!(study = %rt.name(), state = state.as_str(), "study state changed");
        if matches!(state, StudyState::Completed | StudyState::Failed) {
            turn.ended.push((rt.name().to_string(), state));
        }
    }
    rt.record.state = state;
    rt.record.message = message;
    rt.record.updated_at = t;
    turn.study(rt.name());
}
