//! The writes that manage studies as a whole rather than run them: `delete`, `extend`, tags
//! and notes, and `copy`. Like every command they check the request against the live state,
//! change it, and reply once the turn is durable.
//!
//! A delete waits for the study's running trials: they are stopped through the normal cancel
//! path, and the study leaves the live state (and its record the store) in the first turn in
//! which none runs and no suggestion is out for it. Its trials, reports and events are then
//! purged from the store off the loop, in bounded pieces (`quantune_state::purge`); the name
//! is free again when that is done.

use super::commands::{drop_wants, study_or_reply};
use super::error::{no_trial, not_found, SchedulerError};
use super::study::StudyRuntime;
use super::transitions::{check_study, set_study_state, stop_study};
use super::turn::Turn;
use super::{Core, Internal, Reply};
use crate::model::study::{check_note, check_tag, StudyDefinition, MAX_TAGS};
use crate::model::wire::{DeleteReply, ExtendRequest, StudySummary, TagRequest, TrialView};
use quantune_state::{ImportSummary, StudyState, TrialState};
use std::sync::Arc;

impl Core {
    /// Refuses a name whose deleted study is not fully removed yet.
    pub(super) fn name_free(&self, name: &str) -> super::Result<()> {
        if self.deleting.contains_key(name) || self.purging.contains(name) {
            return Err(SchedulerError::Conflict(format!(
                "the study '{name}' is being deleted; its name is free again in a moment"
            )));
        }
        Ok(())
    }

    /// `delete`: stops what runs (queued trials are cancelled, running ones stopped), then
    /// removes the study once nothing of it runs (see [`Core::finish_deletes`]).
    pub(super) fn delete(&mut self, name: &str, reply: Reply<DeleteReply>) {
        if let Some(waiting) = self.deleting.get_mut(name) {
            waiting.push(reply);
            return;
        }
        let Core {
            env,
            studies,
            slots,
            turn,
            deleting,
            ..
        } = self;
        let Some((rt, reply)) = study_or_reply(studies, name, reply) else {
            return;
        };
        drop_wants(slots, rt, "deleted");
        if !rt.record.state.is_finished() {
            let why = Some("deleted by a user".to_string());
            stop_study(env, rt, turn, StudyState::Cancelled, why, super::now());
        }
        tracing::info!(study = %name, "deleting the study once its running trials have stopped");
        deleting.insert(name.to_string(), vec![reply]);
    }

    /// Removes every study being deleted that has nothing running and no suggestion out:
    /// from the live state now, from the store with this turn's commit.
    pub(crate) fn finish_deletes(&mut self) {
        let ready: Vec<String> = self
            .deleting
            .keys()
            .filter(|n| {
                self.studies
                    .get(*n)
                    .is_none_or(|rt| rt.running().next().is_none() && rt.suggesting.is_empty())
            })
            .cloned()
            .collect();
        for name in ready {
            let replies = self.deleting.remove(&name).unwrap_or_default();
            let trials = self
                .studies
                .remove(&name)
                .map_or(0, |rt| rt.trials().len() as u64);
            tracing::info!(study = %name, trials, "study deleted");
            for state in TrialState::ALL {
                let labels = [name.as_str(), state.as_str()];
                let _ = self
                    .env
                    .metrics
                    .trials_finished
                    .remove_label_values(&labels);
            }
            self.turn.touched.remove(&name);
            self.turn.deleted.push(name.clone());
            self.purging.insert(name.clone());
            for r in replies {
                let reply = DeleteReply {
                    name: name.clone(),
                    trials,
                };
                self.turn.reply(r, Ok(reply));
            }
        }
    }

    /// Removes a deleted study's trials, reports, events and run directories off the loop
    /// (its record left the store with the turn); the loop hears when the name is free. A
    /// purge that fails keeps the name taken; the next start finishes it.
    pub(crate) fn purge(&self, name: String) {
        let store = self.env.store.clone();
        let inbox = self.env.inbox.clone();
        let run_dir = self.env.run_root.join(&name);
        std::thread::spawn(move || match store.purge(&name) {
            Ok(keys) => {
                if let Err(e) = std::fs::remove_dir_all(&run_dir) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(study = %name, "cannot remove {}: {e}", run_dir.display());
                    }
                }
                tracing::debug!(study = %name, keys, "deleted study purged from the store");
                let _ = inbox.send(Internal::Purged(name));
            }
            Err(e) => {
                tracing::error!(study = %name, "cannot purge the deleted study from the store: {e}; the next start finishes it");
            }
        });
    }

    /// `extend`: raises `max_trials`, `max_wall` and `max_gpu_hours` (never lowers them); a
    /// completed study runs again and its strategy goes on from the trials it has.
    pub(super) fn extend(&mut self, name: &str, req: ExtendRequest, reply: Reply<StudySummary>) {
        if let Err(e) = self.name_free(name) {
            let _ = reply.send(Err(e));
            return;
        }
        let Core {
            env, studies, turn, ..
        } = self;
        let Some((rt, reply)) = study_or_reply(studies, name, reply) else {
            return;
        };
        if matches!(rt.record.state, StudyState::Cancelled | StudyState::Failed) {
            let _ = reply.send(Err(SchedulerError::Conflict(format!(
                "study '{name}' is {}; extend continues a running, paused or completed study only",
                rt.record.state.as_str()
            ))));
            return;
        }
        let def = match extended(&rt.def, &req) {
            Ok(d) => d,
            Err(m) => {
                let _ = reply.send(Err(SchedulerError::BadRequest(m)));
                return;
            }
        };
        let t = super::now();
        if let Err(e) = set_definition(rt, turn, def) {
            let _ = reply.send(Err(e));
            return;
        }
        if rt.record.state == StudyState::Completed {
            tracing::info!(study = %name, "completed study extended: it runs again");
            set_study_state(rt, turn, StudyState::Running, None, t);
        }
        // Still done (e.g. the wall-clock budget, which counts from creation, is spent)?
        check_study(env, rt, turn, t);
        self.reply_summary(name, reply);
    }

    /// `tag`: adds and removes tags.
    pub(super) fn tag(&mut self, name: &str, req: TagRequest, reply: Reply<StudySummary>) {
        let Core { studies, turn, .. } = self;
        let Some((rt, reply)) = study_or_reply(studies, name, reply) else {
            return;
        };
        let mut def = (*rt.def).clone();
        def.tags.retain(|t| !req.remove.contains(t));
        for tag in req.add {
            if let Err(m) = check_tag(&tag) {
                let _ = reply.send(Err(SchedulerError::BadRequest(m)));
                return;
            }
            if !def.tags.contains(&tag) {
                def.tags.push(tag);
            }
        }
        if def.tags.len() > MAX_TAGS {
            let _ = reply.send(Err(SchedulerError::BadRequest(format!(
                "a study has at most {MAX_TAGS} tags ('{name}' would have {}); remove some with -TAG",
                def.tags.len()
            ))));
            return;
        }
        if let Err(e) = set_definition(rt, turn, def) {
            let _ = reply.send(Err(e));
            return;
        }
        self.reply_summary(name, reply);
    }

    /// `note STUDY TEXT`: sets the study's notes (an empty text removes them).
    pub(super) fn study_note(&mut self, name: &str, note: String, reply: Reply<StudySummary>) {
        let Core { studies, turn, .. } = self;
        let Some((rt, reply)) = study_or_reply(studies, name, reply) else {
            return;
        };
        let note = match checked_note(note) {
            Ok(n) => n,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let mut def = (*rt.def).clone();
        def.notes = note;
        if let Err(e) = set_definition(rt, turn, def) {
            let _ = reply.send(Err(e));
            return;
        }
        self.reply_summary(name, reply);
    }

    /// `note STUDY TRIAL TEXT`: sets a trial's note (an empty text removes it).
    pub(super) fn trial_note(&mut self, name: &str, n: u64, note: String, reply: Reply<TrialView>) {
        let Core { studies, turn, .. } = self;
        let Some((rt, reply)) = study_or_reply(studies, name, reply) else {
            return;
        };
        if rt.trial(n).is_none() {
            let _ = reply.send(Err(no_trial(name, n)));
            return;
        }
        let note = match checked_note(note) {
            Ok(n) => n,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        rt.edit(n, |tr| tr.note = note);
        turn.trial(name, n);
        let view = rt
            .trial(n)
            .map(TrialView::from)
            .ok_or_else(|| no_trial(name, n));
        turn.reply(reply, view);
    }

    /// `copy SRC DST`: the study's export, taken between two turns, imported as `to` — a new
    /// study with its own records that shares nothing with the source.
    pub(super) fn copy(&mut self, name: &str, to: &str, reply: Reply<ImportSummary>) {
        if !self.studies.contains_key(name) {
            let _ = reply.send(Err(not_found(name)));
            return;
        }
        let mut data = Vec::new();
        let r = self
            .env
            .store
            .export_study(name, &mut data)
            .map_err(SchedulerError::from_store)
            .and_then(|_| self.import(data, Some(to)));
        if let Ok(s) = &r {
            tracing::info!(study = %name, copy = %to, trials = s.trials, "study copied");
        }
        self.turn.reply(reply, r);
    }
}

/// A note as stored: checked, and `None` when empty.
fn checked_note(note: String) -> super::Result<Option<String>> {
    check_note(&note).map_err(SchedulerError::BadRequest)?;
    Ok(Some(note).filter(|n| !n.trim().is_empty()))
}

/// The definition with the budgets of `req` raised; an error names the field that would
/// lower one.
fn extended(def: &StudyDefinition, req: &ExtendRequest) -> Result<StudyDefinition, String> {
    if req.max_trials.is_none() && req.max_wall.is_none() && req.max_gpu_hours.is_none() {
        return Err("extend needs at least one of max_trials, max_wall, max_gpu_hours".into());
    }
    let mut def = def.clone();
    let b = &mut def.budget;
    let lower = |what: &str, new: String, old: String| {
        format!("{what} = {new} is below the study's {old}; extend only raises a budget")
    };
    if let Some(m) = req.max_trials {
        if m < b.max_trials {
            return Err(lower(
                "max_trials",
                m.to_string(),
                format!("budget.max_trials = {}", b.max_trials),
            ));
        }
        b.max_trials = m;
    }
    if let Some(w) = &req.max_wall {
        let secs =
            crate::model::duration::parse_duration(w).map_err(|e| format!("max_wall: {e}"))?;
        if let Some(old) = b.max_wall_secs.filter(|old| secs < *old) {
            return Err(lower(
                "max_wall",
                w.clone(),
                format!(
                    "budget.max_wall = {}",
                    crate::model::duration::format_secs(old)
                ),
            ));
        }
        b.max_wall_secs = Some(secs);
    }
    if let Some(h) = req.max_gpu_hours {
        if !(h.is_finite() && h > 0.0) {
            return Err(format!("max_gpu_hours must be a positive number (got {h})"));
        }
        if let Some(old) = b.max_gpu_hours.filter(|old| h < *old) {
            return Err(lower(
                "max_gpu_hours",
                h.to_string(),
                format!("budget.max_gpu_hours = {old}"),
            ));
        }
        b.max_gpu_hours = Some(h);
    }
    Ok(def)
}

/// Replaces a study's definition (live and in its record, persisted with the turn).
fn set_definition(
    rt: &mut StudyRuntime,
    turn: &mut Turn,
    def: StudyDefinition,
) -> super::Result<()> {
    rt.record.definition =
        serde_json::to_value(&def).map_err(|e| SchedulerError::Internal(e.to_string()))?;
    rt.def = Arc::new(def);
    turn.study(rt.name());
    Ok(())
}
