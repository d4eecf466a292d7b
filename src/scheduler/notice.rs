//! What the loop tells the webhook notifier (`daemon/notifier.rs`, docs/NOTIFY.md): a few
//! words per durable change, put into a bounded queue without waiting. When the notifier falls
//! behind the queue fills and notices are dropped — counted in
//! `quantune_notifications_dropped_total{queue="events"}` and warned about at most every
//! [`WARN_EVERY`] — so a slow webhook never slows a turn.

use super::Core;
use quantune_state::{StudyState, TrialState};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Notices the daemon's queue to the notifier holds.
pub const CAPACITY: usize = 1024;

/// The most often a drop is warned about.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// A durable change the notifier may turn into webhook deliveries.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// A study was submitted or imported (its best so far is not news).
    StudyAdded {
        /// The study.
        study: String,
    },
    /// A trial reached a final state.
    TrialFinished {
        /// The study.
        study: String,
        /// The trial.
        trial: u64,
        /// Its final state.
        state: TrialState,
        /// The study's finished trials that failed in a row up to this one (0 when it did
        /// not fail).
        failed_streak: u64,
    },
    /// A study completed or failed.
    StudyEnded {
        /// The study.
        study: String,
        /// `Completed` or `Failed`.
        state: StudyState,
    },
}

/// The loop's end of the queue, with what it counts of drops.
pub(crate) struct Notices {
    tx: mpsc::Sender<Notice>,
    /// Dropped since the last warning.
    dropped: u64,
    /// When the last warning was logged.
    warned: Option<Instant>,
}

impl Notices {
    /// A queue of `capacity` notices and its receiving end.
    pub fn channel(capacity: usize) -> (Notices, mpsc::Receiver<Notice>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Notices {
                tx,
                dropped: 0,
                warned: None,
            },
            rx,
        )
    }
}

impl Core {
    /// Hands `n` to the notifier if there is one, never waiting: a full queue drops it.
    pub(crate) fn notify(&mut self, n: Notice) {
        let Some(q) = self.notices.as_mut() else {
            return;
        };
        match q.tx.try_send(n) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => self.notices = None,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.env
                    .metrics
                    .notifications_dropped
                    .with_label_values(&["events"])
                    .inc();
                q.dropped += 1;
                if q.warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    tracing::warn!(
                        dropped = q.dropped,
                        "the webhook notifier is behind: {} notification event(s) dropped (quantune_notifications_dropped_total counts them all)",
                        q.dropped
                    );
                    q.dropped = 0;
                    q.warned = Some(Instant::now());
                }
            }
        }
    }
}
