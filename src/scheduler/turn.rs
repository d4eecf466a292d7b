//! One turn's effects, and the one place they are applied: persist everything the turn
//! changed in one store transaction with one flush, and only then act — free slots, start and
//! stop trials, send replies, announce finished trials, publish snapshots.

use super::error::disk_hint;
use super::notice::Notice;
use super::{Core, DaemonSnapshot, SchedulerError};
use crate::executor::{CancelReason, Launch};
use quantune_state::batch::ONE_TRANSACTION;
use quantune_state::{Batch, Report, TrialState};
use std::collections::BTreeSet;

/// A reply to send once the turn is durable; it gets the commit error if there was one.
type Deferred = Box<dyn FnOnce(Option<&SchedulerError>) + Send>;

/// What a turn changed and wants done. Records are taken from the live state when the turn
/// is applied, so a trial changed twice in one turn is written once, as it ended.
#[derive(Default)]
pub(crate) struct Turn {
    /// Studies created this turn.
    pub new_studies: BTreeSet<String>,
    /// Study records changed.
    pub studies: BTreeSet<String>,
    /// Trials (study, number) changed.
    pub trials: BTreeSet<(String, u64)>,
    /// Intermediate reports to store.
    pub reports: Vec<(String, u64, Report)>,
    /// Trials to start once their records are durable.
    pub launches: Vec<Launch>,
    /// Trials to stop: (executor, study, trial, why).
    pub cancels: Vec<(String, String, u64, CancelReason)>,
    /// Trials that reached a final state (announced to subscribers and the notifier), each
    /// with its study's run of failed trials up to it.
    pub finished: Vec<(String, u64, u64)>,
    /// Studies that completed or failed this turn (for the notifier).
    pub ended: Vec<(String, quantune_state::StudyState)>,
    /// Replies waiting for the commit.
    pub replies: Vec<Deferred>,
    /// Studies whose snapshot changed.
    pub touched: BTreeSet<String>,
    /// Studies deleted this turn (already gone from the live state): their records leave the
    /// store with this turn's commit, the rest is purged afterwards off the loop.
    pub deleted: Vec<String>,
}

impl Turn {
    /// Marks trial `n` of `study` to be written.
    pub fn trial(&mut self, study: &str, n: u64) {
        self.trials.insert((study.to_string(), n));
        self.touched.insert(study.to_string());
    }

    /// Marks a study record to be written.
    pub fn study(&mut self, study: &str) {
        self.studies.insert(study.to_string());
        self.touched.insert(study.to_string());
    }

    /// Replies `value` once the turn is durable (or the commit error if it is not).
    pub fn reply<T: Send + 'static>(&mut self, tx: super::Reply<T>, value: super::Result<T>) {
        self.replies.push(Box::new(move |err| {
            let _ = tx.send(match err {
                Some(e) => Err(e.clone()),
                None => value,
            });
        }));
    }
}

impl Core {
    /// Persists the turn (one transaction, one flush), then acts on it. An error means
    /// nothing of the turn is acknowledged or acted on; the caller must stop (the store may
    /// refuse every later write, and memory is ahead of what is durable).
    pub fn apply(&mut self) -> Result<(), SchedulerError> {
        let turn = std::mem::take(&mut self.turn);
        let records = turn.new_studies.len()
            + turn.studies.len()
            + turn.trials.len()
            + turn.reports.len()
            + turn.deleted.len();
        if records > 0 {
            let t0 = std::time::Instant::now();
            let written = self.persist(&turn);
            self.env
                .metrics
                .flush_seconds
                .with_label_values(&["put_trials"])
                .observe(t0.elapsed().as_secs_f64());
            if let Err(e) = written {
                let err = SchedulerError::Internal(format!(
                    "cannot record {records} change(s) in the store: {e}{}",
                    disk_hint(&e)
                ));
                tracing::error!("{err}; stopping so that a fresh start reloads what is durable");
                for reply in turn.replies {
                    reply(Some(&err));
                }
                return Err(err);
            }
        }
        for name in turn.deleted {
            self.snapshots.remove(&name);
            self.purge(name);
        }
        for (executor, study, n, why) in turn.cancels {
            if let Some(ex) = self.env.executor_named(Some(executor.as_str())) {
                ex.cancel(&study, n, why);
            }
        }
        for l in turn.launches {
            tracing::debug!(study = %l.study, trial = l.trial, attempt = l.attempt, slot = %l.slot.name, "starting trial");
            if let Some(ex) = self.env.executor_named(Some(l.spec.executor.as_str())) {
                ex.start(l);
            }
        }
        for name in &turn.touched {
            if let Some(rt) = self.studies.get(name) {
                self.snapshots.publish(rt);
            }
        }
        for reply in turn.replies {
            reply(None);
        }
        for study in turn.new_studies {
            self.notify(Notice::StudyAdded { study });
        }
        for (study, n, failed_streak) in turn.finished {
            let Some(t) = self.studies.get(&study).and_then(|rt| rt.trial(n)) else {
                continue;
            };
            let state = t.state;
            let _ = self.finished_tx.send(t.clone());
            self.notify(Notice::TrialFinished {
                study,
                trial: n,
                state,
                failed_streak,
            });
        }
        for (study, state) in turn.ended {
            self.notify(Notice::StudyEnded { study, state });
        }
        Ok(())
    }

    /// Writes what the turn changed, as the live state holds it now, and flushes once. A turn
    /// of at most [`ONE_TRANSACTION`] records is one transaction; a larger one (a big import)
    /// is one commit in pieces of that size, built here only as the store writes them, so that
    /// neither quantune nor sled ever holds a copy of all of it — and still all or nothing,
    /// even if the daemon is killed half-way (`Store::commit_pieces`).
    fn persist(&self, turn: &Turn) -> Result<(), quantune_state::StoreError> {
        let records =
            turn.new_studies.len() + turn.studies.len() + turn.trials.len() + turn.reports.len();
        if records > ONE_TRANSACTION {
            tracing::info!(
                "writing {records} records in pieces of {ONE_TRANSACTION} (one commit: all or nothing)"
            );
        }
        let mut batch = Batch::default();
        for name in &turn.new_studies {
            if let Some(rt) = self.studies.get(name) {
                batch.new_studies.push(rt.record.clone());
            }
        }
        for name in turn.studies.difference(&turn.new_studies) {
            if let Some(rt) = self.studies.get(name) {
                batch.studies.push(rt.record.clone());
            }
        }
        let mut trials = turn.trials.iter().peekable();
        let mut reports = turn.reports.iter().peekable();
        let mut done = false;
        let mut built = 0;
        let pieces = std::iter::from_fn(|| {
            if done {
                return None;
            }
            built += 1;
            // The store writes a piece before it asks for the one after the next.
            if built % 10 == 0 {
                tracing::info!(
                    "{} of {records} records written (the commit goes on)",
                    (built - 2) * ONE_TRANSACTION
                );
            }
            let mut piece = std::mem::take(&mut batch);
            while piece.len() < ONE_TRANSACTION {
                let Some((study, n)) = trials.next() else {
                    break;
                };
                if let Some(t) = self.studies.get(study).and_then(|rt| rt.trial(*n)) {
                    piece.trials.push(t.clone());
                }
            }
            // Reports go after every trial (a report's trial must exist).
            if trials.peek().is_none() {
                while piece.len() < ONE_TRANSACTION {
                    let Some(r) = reports.next() else { break };
                    // Not those of a study deleted this turn.
                    if self.studies.contains_key(&r.0) {
                        piece.reports.push(r.clone());
                    }
                }
            }
            done = trials.peek().is_none() && reports.peek().is_none();
            if done {
                piece.deleted = turn.deleted.clone();
            }
            Some(piece)
        });
        self.env.store.commit_pieces(pieces)
    }

    /// Publishes the daemon-wide figures.
    pub fn publish_daemon(&self) {
        let (mut running, mut queued) = (0, 0);
        for rt in self.studies.values() {
            running += rt.count(TrialState::Running) as usize;
            queued += rt.count(TrialState::Queued) as usize;
        }
        self.snapshots.publish_daemon(DaemonSnapshot {
            slots: self.slots.usage(),
            running,
            queued,
        });
    }
}
