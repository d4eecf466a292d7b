//! The one way background work starts and stops: every long-lived task (the scheduler loop,
//! listeners, executor pollers, the GPU sampler, the watchdog, the notifier) is spawned through
//! [`Tasks`], watches the same stop signal ([`Stopping`]), and is joined at shutdown, so a
//! stopped daemon has nothing of its own still running.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The set of background tasks and their shared stop signal. Cheap to clone: clones share one
/// set and one signal.
#[derive(Clone)]
pub struct Tasks {
    /// Shared between clones.
    inner: Arc<Inner>,
}

/// What [`Tasks`] clones share.
struct Inner {
    /// Turns `true` once, when shutdown begins.
    stop: watch::Sender<bool>,
    /// The running tasks, each with its name (for the log when one has to be aborted).
    set: Mutex<JoinSet<&'static str>>,
}

/// A task's view of the stop signal.
#[derive(Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Resolves once shutdown has begun (at once if it already has).
    pub async fn wait(&mut self) {
        // An error means every sender is gone, which is a stop too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// The underlying receiver, for code that selects on `watch::Receiver<bool>` itself.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks::new()
    }
}

impl Tasks {
    /// An empty set, not stopping.
    pub fn new() -> Tasks {
        let (stop, _) = watch::channel(false);
        Tasks {
            inner: Arc::new(Inner {
                stop,
                set: Mutex::new(JoinSet::new()),
            }),
        }
    }

    /// The stop signal, for a task to watch.
    pub fn stopping(&self) -> Stopping {
        Stopping(self.inner.stop.subscribe())
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Starts `task` on the runtime, to be joined by [`Tasks::join`]. The task must end soon
    /// after [`Tasks::stopping`] fires.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut set = self.inner.set.lock().unwrap_or_else(|p| p.into_inner());
        // Reap what already ended, so a long run does not keep a handle per finished task.
        while set.try_join_next().is_some() {}
        set.spawn(async move {
            task.await;
            name
        });
    }

    /// Starts `task` and stops it with the others: the future is dropped when shutdown begins
    /// (for loops with nothing to finish, e.g. a sampler or a poller between polls).
    pub fn spawn_until_stopped<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut stopping = self.stopping();
        self.spawn(name, async move {
            tokio::select! {
                _ = stopping.wait() => {}
                _ = task => {}
            }
        });
    }

    /// Begins shutdown: every [`Stopping`] fires.
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Waits up to `grace` for every task to end, then aborts the rest and waits for those
    /// too. Returns how many had to be aborted. Tasks spawned while joining are joined as well.
    pub async fn join(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        let mut aborted = 0;
        loop {
            let mut set =
                std::mem::take(&mut *self.inner.set.lock().unwrap_or_else(|p| p.into_inner()));
            if set.is_empty() {
                return aborted;
            }
            while !set.is_empty() {
                match tokio::time::timeout_at(deadline, set.join_next()).await {
                    Ok(Some(Err(e))) if e.is_panic() => {
                        tracing::error!("a background task panicked: {e}");
                    }
                    Ok(Some(Ok(name))) => tracing::debug!("{name} stopped"),
                    Ok(_) => {}
                    Err(_) => {
                        let left = set.len();
                        set.abort_all();
                        while set.join_next().await.is_some() {}
                        tracing::warn!(
                            "{left} background task(s) did not stop within {grace:?}; aborted"
                        );
                        aborted += left;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn every_task_hears_the_stop_and_is_joined() {
        let tasks = Tasks::new();
        let ended = Arc::new(AtomicUsize::new(0));
        for _ in 0..3 {
            let mut stopping = tasks.stopping();
            let ended = ended.clone();
            tasks.spawn("waiter", async move {
                stopping.wait().await;
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
        let ended2 = ended.clone();
        tasks.spawn_until_stopped("forever", async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                ended2.load(Ordering::SeqCst);
            }
        });
        assert!(!tasks.is_stopping());
        tasks.stop();
        assert_eq!(tasks.join(Duration::from_secs(5)).await, 0);
        assert_eq!(ended.load(Ordering::SeqCst), 3);
        // A late `Stopping` fires at once.
        tasks.stopping().wait().await;
    }

    #[tokio::test]
    async fn a_task_that_ignores_the_stop_is_aborted_after_the_grace() {
        let tasks = Tasks::new();
        tasks.spawn("stubborn", async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        tasks.stop();
        let t0 = std::time::Instant::now();
        assert_eq!(tasks.join(Duration::from_millis(100)).await, 1);
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
