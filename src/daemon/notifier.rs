//! The webhook notifier (docs/NOTIFY.md): one task turns the scheduler's [`Notice`]s into
//! payloads for the `[[notify]]` targets that want them, and one task per target delivers its
//! payloads in order, with retries. The scheduler only puts notices into a bounded queue
//! (`scheduler/notice.rs`); each target has a bounded queue too, so a slow or hanging
//! receiver delays only its own deliveries, and when its queue is full further payloads for
//! it are dropped — counted (`quantune_notifications_dropped_total{queue="deliveries"}`) and
//! warned about — never held.
//!
//! "New best" is the best that `status` and the leaderboard show ([`StudySnapshot::best`]):
//! after a trial finishes, the study's best is compared with the one seen before.

use crate::notify::deliver::deliver;
use crate::notify::target::Target;
use crate::notify::{delivery_id, EventKind, Payload};
use crate::scheduler::notice::{Notice, WARN_EVERY};
use crate::scheduler::{Scheduler, StudySnapshot};
use quantune_state::{StudyState, TrialState};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Payloads each target's queue holds.
pub const TARGET_QUEUE: usize = 64;

/// The most of a study message or failure reason a payload carries, in characters.
const MAX_MESSAGE: usize = 2000;

/// One target's queue and what it counts of drops.
struct Queue {
    target: Arc<Target>,
    tx: mpsc::Sender<Payload>,
    dropped: u64,
    warned: Option<Instant>,
}

/// The notifier's state: the targets' queues and the best trial seen of each study.
struct Notifier {
    scheduler: Arc<Scheduler>,
    queues: Vec<Queue>,
    /// Whether any target wants `new_best` (else no best is ever computed).
    want_best: bool,
    best: HashMap<String, Option<u64>>,
}

/// Starts the notifier for `targets` on `scheduler`'s notices, among `tasks`; call before the
/// scheduler loop runs. Nothing starts without targets. It ends once the loop has stopped (its
/// notices end) and what was queued is delivered, or when `tasks` gives up waiting.
pub fn spawn(targets: Vec<Target>, scheduler: &Arc<Scheduler>, tasks: &crate::tasks::Tasks) {
    if targets.is_empty() {
        return;
    }
    let Some(mut rx) = scheduler.notices(crate::scheduler::notice::CAPACITY) else {
        tracing::error!(
            "webhook notifications are off: the scheduler loop started before the notifier"
        );
        return;
    };
    let want_best = targets.iter().any(|t| t.wants(EventKind::NewBest));
    let queues = targets
        .into_iter()
        .map(|t| {
            let target = Arc::new(t);
            let (tx, rx) = mpsc::channel(TARGET_QUEUE);
            tasks.spawn(
                "webhook deliveries",
                deliveries(target.clone(), rx, scheduler.clone()),
            );
            Queue {
                target,
                tx,
                dropped: 0,
                warned: None,
            }
        })
        .collect();
    let mut n = Notifier {
        scheduler: scheduler.clone(),
        queues,
        want_best,
        best: HashMap::new(),
    };
    tracing::info!(
        targets = n.queues.len(),
        "webhook notifications to {}",
        n.queues
            .iter()
            .map(|q| q.target.url.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    tasks.spawn("notifier", async move {
        if n.want_best {
            // What is best already is not news after a restart.
            for s in n.scheduler.studies() {
                let best = n.best_of(&s.name).await;
                n.best.insert(s.name, best);
            }
        }
        while let Some(notice) = rx.recv().await {
            n.handle(notice).await;
        }
    });
}

impl Notifier {
    /// The best trial of `study` now, as `status` names it (a ranking for several objectives
    /// is computed off the async threads).
    async fn best_of(&self, study: &str) -> Option<u64> {
        let snap = self.scheduler.snapshot(study).ok()?;
        if snap.def.objectives.len() == 1 {
            return snap.best();
        }
        tokio::task::spawn_blocking(move || snap.best())
            .await
            .ok()
            .flatten()
    }

    async fn handle(&mut self, notice: Notice) {
        match notice {
            Notice::StudyAdded { study } => {
                if self.want_best {
                    let best = self.best_of(&study).await;
                    self.best.insert(study, best);
                }
            }
            Notice::TrialFinished {
                study,
                trial,
                state,
                failed_streak,
            } => {
                if self.want_best {
                    let best = self.best_of(&study).await;
                    let before = self.best.insert(study.clone(), best).flatten();
                    if best.is_some() && best != before {
                        self.send(EventKind::NewBest, &study, best, |_| true, |_| {});
                    }
                }
                if state == TrialState::Failed && failed_streak > 0 {
                    self.send(
                        EventKind::ConsecutiveFailures,
                        &study,
                        Some(trial),
                        |t| t.failures_threshold == failed_streak,
                        |p| p.failures = Some(failed_streak),
                    );
                }
            }
            Notice::StudyEnded { study, state } => {
                let kind = match state {
                    StudyState::Failed => EventKind::StudyFailed,
                    _ => EventKind::StudyCompleted,
                };
                let best = self.best_of(&study).await;
                self.send(kind, &study, best, |_| true, |_| {});
            }
        }
    }

    /// Queues a `kind` payload about `study` (and `trial`) for every target that wants it and
    /// passes `also`; `finish` completes the payload.
    fn send(
        &mut self,
        kind: EventKind,
        study: &str,
        trial: Option<u64>,
        also: impl Fn(&Target) -> bool,
        finish: impl FnOnce(&mut Payload),
    ) {
        if !self
            .queues
            .iter()
            .any(|q| q.target.wants(kind) && also(&q.target))
        {
            return;
        }
        let Ok(snap) = self.scheduler.snapshot(study) else {
            return;
        };
        let mut payload = payload(kind, &snap, trial);
        finish(&mut payload);
        let metrics = self.scheduler.metrics();
        for q in &mut self.queues {
            if !q.target.wants(kind) || !also(&q.target) {
                continue;
            }
            let mut p = payload.clone();
            p.delivery = delivery_id();
            if q.tx.try_send(p).is_err() {
                metrics
                    .notifications_dropped
                    .with_label_values(&["deliveries"])
                    .inc();
                q.dropped += 1;
                if q.warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    tracing::warn!(url = %q.target.url, "webhook {} is behind: {} notification(s) dropped (its queue holds {TARGET_QUEUE})", q.target.url, q.dropped);
                    q.dropped = 0;
                    q.warned = Some(Instant::now());
                }
            }
        }
    }
}

/// The payload of a `kind` event about `snap`'s study and, if given, its trial `trial`.
fn payload(kind: EventKind, snap: &StudySnapshot, trial: Option<u64>) -> Payload {
    let cut = |m: &str| m.chars().take(MAX_MESSAGE).collect::<String>();
    let mut p = Payload::new(kind);
    p.study = Some(snap.record.name.clone());
    p.study_state = Some(snap.record.state.as_str().to_string());
    p.message = snap.record.message.as_deref().map(cut);
    if let Some(t) = trial.and_then(|n| snap.trials.get(n)) {
        p.trial = Some(t.number);
        p.trial_state = Some(t.state.as_str().to_string());
        p.values = snap
            .def
            .objectives
            .iter()
            .filter_map(|o| Some((o.metric.clone(), *t.metrics.get(&o.metric)?)))
            .collect();
        p.params = serde_json::to_value(&*t.params).unwrap_or_default();
        if kind == EventKind::ConsecutiveFailures {
            p.message = t.reason.as_deref().map(cut);
        }
    }
    p
}

/// Delivers one target's payloads, one at a time, in order.
async fn deliveries(
    target: Arc<Target>,
    mut rx: mpsc::Receiver<Payload>,
    scheduler: Arc<Scheduler>,
) {
    while let Some(p) = rx.recv().await {
        let outcome = deliver(&target, &p).await;
        let result = if outcome.delivered() {
            tracing::debug!(url = %target.url, event = p.event.as_str(), "webhook delivered: {}", outcome.describe());
            "delivered"
        } else {
            tracing::warn!(url = %target.url, event = p.event.as_str(), delivery = %p.delivery, "webhook not delivered: {}", outcome.describe());
            "failed"
        };
        scheduler
            .metrics()
            .notifications
            .with_label_values(&[p.event.as_str(), result])
            .inc();
    }
}
