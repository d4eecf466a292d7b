//! Scheduling rules, tested without processes: a fake executor records what the loop starts
//! and stops, the test plays the executor's events back, and a temp store holds the records.

use super::*;
use crate::executor::{AttemptOutcome, CancelReason, Launch};
use quantune_state::{StudyState, TrialState};
use std::sync::Mutex;

/// An executor that only records: `start`s and `cancel`s.
struct Fake {
    name: &'static str,
    remote: bool,
    started: Mutex<Vec<Launch>>,
    cancelled: Mutex<Vec<(String, u64, CancelReason)>>,
}

impl Fake {
    fn new(name: &'static str, remote: bool) -> Arc<Fake> {
        Arc::new(Fake {
            name,
            remote,
            started: Mutex::new(Vec::new()),
            cancelled: Mutex::new(Vec::new()),
        })
    }
    fn started(&self) -> Vec<Launch> {
        self.started.lock().unwrap().clone()
    }
    fn cancelled(&self) -> Vec<(String, u64, CancelReason)> {
        self.cancelled.lock().unwrap().clone()
    }
}

impl Executor for Fake {
    fn name(&self) -> &'static str {
        self.name
    }
    fn start(&self, launch: Launch) {
        self.started.lock().unwrap().push(launch);
    }
    fn cancel(&self, study: &str, trial: u64, why: CancelReason) {
        self.cancelled
            .lock()
            .unwrap()
            .push((study.to_string(), trial, why));
    }
    fn in_flight(&self) -> usize {
        0
    }
    fn survives_restart(&self) -> bool {
        self.remote
    }
}

/// A scheduler over a temp store with the fake executor, its loop running.
struct Harness {
    dir: tempfile::TempDir,
    sched: Arc<Scheduler>,
    events: mpsc::UnboundedSender<ExecEvent>,
    fake: Arc<Fake>,
    stop: crate::tasks::Tasks,
    task: tokio::task::JoinHandle<Result<()>>,
}

fn gpu(index: u32) -> crate::gpu::GpuInfo {
    crate::gpu::GpuInfo {
        index,
        name: format!("GPU{index}"),
        memory_total: 80 << 30,
        memory_free: None,
        compute_capability: Some("9.0".into()),
    }
}

impl Harness {
    fn start(cpu_slots: usize, gpus: u32) -> Harness {
        Harness::start_in(tempfile::tempdir().unwrap(), cpu_slots, gpus)
    }

    fn start_in(dir: tempfile::TempDir, cpu_slots: usize, gpus: u32) -> Harness {
        Harness::build(dir, cpu_slots, gpus, None).0
    }

    /// [`Harness::start_in`], with a queue of `notices` notices for a notifier when given.
    fn build(
        dir: tempfile::TempDir,
        cpu_slots: usize,
        gpus: u32,
        notices: Option<usize>,
    ) -> (Harness, Option<mpsc::Receiver<notice::Notice>>) {
        let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
        let fake = Fake::new("local", false);
        let (events, ev_rx) = mpsc::unbounded_channel();
        let cfg = SchedulerConfig {
            run_root: dir.path().join("trials"),
            cpu_slots,
            gpus: (0..gpus).map(gpu).collect(),
            cuda_version: None,
            trials_per_gpu: 1,
            only_study: None,
        };
        let sched = Arc::new(Scheduler::open(store, vec![fake.clone()], cfg).unwrap());
        let notices = notices.and_then(|n| sched.notices(n));
        let stop = crate::tasks::Tasks::new();
        let task = tokio::spawn(sched.clone().run(ev_rx, stop.clone()));
        let h = Harness {
            dir,
            sched,
            events,
            fake,
            stop,
            task,
        };
        (h, notices)
    }

    /// Stops the loop (gracefully) and hands back the directory for a restart.
    async fn stop(self) -> tempfile::TempDir {
        self.stop.stop();
        self.close().await
    }

    /// Waits for the loop to end (asked to stop, or aborted) and closes the store.
    async fn close(self) -> tempfile::TempDir {
        let Harness {
            dir, sched, task, ..
        } = self;
        let _ = task.await;
        drop(sched);
        dir
    }

    async fn submit(&self, name: &str, budget: &str, trial: &str, extra: &str) {
        let src = format!(
            "[study]\nname = \"{name}\"\nseed = 3\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\
             [space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[strategy]\nkind = \"random\"\n\
             [budget]\n{budget}\n[trial]\n{trial}\n{extra}"
        );
        let def = crate::model::study::parse(&src, "t.toml", self.dir.path(), None)
            .unwrap_or_else(|e| panic!("{e}"));
        self.sched.submit(def, src).await.unwrap();
    }

    /// Waits (up to 5 s) until `f` holds.
    async fn until(&self, what: &str, f: impl Fn(&Harness) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !f(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting: {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn finish(&self, l: &Launch, outcome: AttemptOutcome) {
        self.events
            .send(ExecEvent::Finished {
                study: l.study.clone(),
                trial: l.trial,
                attempt: l.attempt,
                outcome,
            })
            .unwrap();
    }

    fn complete(&self, l: &Launch, loss: f64) {
        self.finish(
            l,
            AttemptOutcome::Complete {
                metrics: BTreeMap::from([("loss".to_string(), loss)]),
                info: BTreeMap::new(),
            },
        );
    }

    fn fail(&self, l: &Launch, reason: &str) {
        self.finish(
            l,
            AttemptOutcome::Failed {
                reason: reason.into(),
                stderr_tail: None,
            },
        );
    }

    fn trial(&self, study: &str, n: u64) -> quantune_state::TrialRecord {
        self.sched
            .snapshot(study)
            .unwrap()
            .trials
            .get(n)
            .unwrap()
            .clone()
    }

    fn state(&self, study: &str) -> String {
        self.sched.study(study).unwrap().state
    }
}

const CMD: &str = "command = [\"true\"]";

#[tokio::test]
async fn parallel_limit_and_trial_budget() {
    let h = Harness::start(4, 0);
    h.submit("s", "max_trials = 5\nparallel = 2", CMD, "").await;
    h.until("two started", |h| h.fake.started().len() == 2)
        .await;
    // Four free slots, but budget.parallel = 2.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.fake.started().len(), 2);
    let mut done = 0;
    while done < 5 {
        let l = h.fake.started()[done].clone();
        h.complete(&l, done as f64);
        done += 1;
        h.until("next", |h| {
            h.fake.started().len() >= (done + 2).min(5) || h.state("s") == "completed"
        })
        .await;
    }
    h.until("completed", |h| h.state("s") == "completed").await;
    assert_eq!(h.fake.started().len(), 5, "max_trials = 5");
    let board = h.sched.leaderboard("s", Some(1)).unwrap();
    assert_eq!(board[0].trial.trial, 0, "loss 0 is best");
    assert_eq!(h.sched.study("s").unwrap().best.unwrap().trial, 0);
    h.stop().await;
}

#[tokio::test]
async fn a_failure_is_retried_with_the_same_params_then_fails_the_trial() {
    let h = Harness::start(1, 0);
    h.submit("s", "max_trials = 1", &format!("{CMD}\nretries = 1"), "")
        .await;
    h.until("first attempt", |h| h.fake.started().len() == 1)
        .await;
    let first = h.fake.started()[0].clone();
    h.fail(&first, "exit status 1");
    h.until("retry", |h| h.fake.started().len() == 2).await;
    let second = h.fake.started()[1].clone();
    assert_eq!((second.trial, second.attempt), (0, 2));
    assert_eq!(second.params, first.params);
    h.fail(&second, "exit status 1");
    h.until("failed", |h| h.trial("s", 0).state == TrialState::Failed)
        .await;
    assert_eq!(h.trial("s", 0).attempts.len(), 2);
    assert_eq!(h.fake.started().len(), 2, "no third attempt");
    h.stop().await;
}

#[tokio::test]
async fn a_graceful_stop_costs_no_retry_and_requeues_after_restart() {
    let h = Harness::start(1, 0);
    h.submit("s", "max_trials = 1", &format!("{CMD}\nretries = 0"), "")
        .await;
    h.until("started", |h| h.fake.started().len() == 1).await;
    let l = h.fake.started()[0].clone();
    // The stop asks the executor to interrupt; it answers as the local executor does.
    h.stop.stop();
    h.until("asked to stop", |h| !h.fake.cancelled().is_empty())
        .await;
    assert_eq!(h.fake.cancelled()[0].2, CancelReason::Shutdown);
    h.finish(
        &l,
        AttemptOutcome::Cancelled {
            why: CancelReason::Shutdown,
            stderr_tail: None,
        },
    );
    let dir = h.close().await;
    // Restarted: the trial runs again as attempt 2 although retries = 0.
    let h = Harness::start_in(dir, 1, 0);
    h.until("restarted trial", |h| h.fake.started().len() == 1)
        .await;
    let again = h.fake.started()[0].clone();
    assert_eq!((again.trial, again.attempt), (0, 2));
    assert_eq!(
        h.trial("s", 0).attempts[0].reason,
        SHUTDOWN_REASON,
        "the interrupted attempt is on record"
    );
    h.stop().await;
}

#[tokio::test]
async fn reconcile_after_a_crash_fails_and_requeues_running_trials() {
    let dir = {
        let h = Harness::start(2, 0);
        h.submit(
            "s",
            "max_trials = 2\nparallel = 2",
            &format!("{CMD}\nretries = 1"),
            "",
        )
        .await;
        h.until("two running", |h| h.fake.started().len() == 2)
            .await;
        // A crash: the loop is dropped without its graceful stop.
        h.task.abort();
        h.close().await
    };
    let h = Harness::start_in(dir, 2, 0);
    h.until("both restarted", |h| h.fake.started().len() == 2)
        .await;
    for n in 0..2 {
        let t = h.trial("s", n);
        assert_eq!(t.attempt, 2);
        assert_eq!(t.attempts[0].reason, CRASH_REASON);
    }
    h.stop().await;
}

#[tokio::test]
async fn free_slots_go_to_the_study_with_the_fewest_in_flight() {
    let h = Harness::start(2, 0);
    h.submit("a", "max_trials = 10\nparallel = 2", CMD, "")
        .await;
    h.until("a holds both", |h| h.fake.started().len() == 2)
        .await;
    h.submit("b", "max_trials = 10\nparallel = 2", CMD, "")
        .await;
    // The next free slot goes to b (0 in flight), not back to a (1 in flight).
    let l = h.fake.started()[0].clone();
    h.complete(&l, 1.0);
    h.until("third start", |h| h.fake.started().len() == 3)
        .await;
    assert_eq!(h.fake.started()[2].study, "b");
    h.stop().await;
}

#[tokio::test]
async fn gpu_trials_take_whole_devices_and_the_third_waits() {
    let h = Harness::start(0, 2);
    h.submit(
        "g",
        "max_trials = 3\nparallel = 3",
        &format!("{CMD}\ngpus = 1"),
        "",
    )
    .await;
    h.until("two on GPUs", |h| h.fake.started().len() == 2)
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let s = h.fake.started();
    assert_eq!(s.len(), 2, "a third trial has no GPU");
    let mut devices: Vec<u32> = s.iter().flat_map(|l| l.slot.gpus.clone()).collect();
    devices.sort();
    assert_eq!(devices, vec![0, 1]);
    assert_eq!(h.sched.slots().gpu_busy, 2);
    h.complete(&s[0], 0.5);
    h.until("third on the freed GPU", |h| h.fake.started().len() == 3)
        .await;
    assert_eq!(h.fake.started()[2].slot.gpus, s[0].slot.gpus);
    h.stop().await;
}

#[tokio::test]
async fn gpu_hour_budget_ends_the_study() {
    let h = Harness::start(0, 1);
    // 1 GPU-second of budget: the first trial's attempt uses it up.
    h.submit(
        "g",
        "max_trials = 10\nmax_gpu_hours = 0.0003",
        &format!("{CMD}\ngpus = 1"),
        "",
    )
    .await;
    h.until("started", |h| h.fake.started().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let l = h.fake.started()[0].clone();
    h.complete(&l, 0.1);
    h.until("completed", |h| h.state("g") == "completed").await;
    assert_eq!(h.fake.started().len(), 1);
    assert_eq!(
        h.sched.study("g").unwrap().message.as_deref(),
        Some("budget.max_gpu_hours reached")
    );
    h.stop().await;
}

#[tokio::test]
async fn wall_budget_with_cancel_stops_running_trials() {
    let h = Harness::start(1, 0);
    h.submit(
        "w",
        "max_trials = 10\nmax_wall = \"1s\"\non_exhausted = \"cancel\"",
        CMD,
        "",
    )
    .await;
    h.until("started", |h| h.fake.started().len() == 1).await;
    h.until("asked to stop", |h| !h.fake.cancelled().is_empty())
        .await;
    let l = h.fake.started()[0].clone();
    h.finish(
        &l,
        AttemptOutcome::Cancelled {
            why: CancelReason::User,
            stderr_tail: None,
        },
    );
    h.until("completed", |h| h.state("w") == "completed").await;
    let t = h.trial("w", 0);
    assert_eq!(t.state, TrialState::Cancelled);
    assert_eq!(
        t.reason.as_deref(),
        Some("cancelled: budget.max_wall reached")
    );
    h.stop().await;
}

#[tokio::test]
async fn the_median_pruner_stops_a_trial_worse_than_the_others() {
    let h = Harness::start(1, 0);
    h.submit(
        "p",
        "max_trials = 4",
        CMD,
        "[pruner]\nkind = \"median\"\nmin_trials = 2\n",
    )
    .await;
    let report = |h: &Harness, l: &Launch, step: u64, loss: f64| {
        h.events
            .send(ExecEvent::Report {
                study: l.study.clone(),
                trial: l.trial,
                attempt: l.attempt,
                step,
                values: BTreeMap::from([("loss".to_string(), loss)]),
            })
            .unwrap();
    };
    for i in 0..2 {
        h.until("next", |h| h.fake.started().len() == i + 1).await;
        let l = h.fake.started()[i].clone();
        report(&h, &l, 1, 1.0);
        h.complete(&l, 1.0);
    }
    h.until("third", |h| h.fake.started().len() == 3).await;
    let l = h.fake.started()[2].clone();
    report(&h, &l, 1, 9.0);
    h.until("pruned", |h| {
        h.fake
            .cancelled()
            .iter()
            .any(|c| c.1 == 2 && c.2 == CancelReason::Pruned)
    })
    .await;
    h.finish(
        &l,
        AttemptOutcome::Cancelled {
            why: CancelReason::Pruned,
            stderr_tail: None,
        },
    );
    h.until("recorded", |h| h.trial("p", 2).state == TrialState::Pruned)
        .await;
    assert!(h
        .trial("p", 2)
        .reason
        .unwrap()
        .starts_with("pruned at step 1"));
    // The report is durable.
    assert_eq!(h.sched.trial("p", 2).unwrap().1.len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn enqueued_trials_run_before_new_suggestions_and_fill_missing_params() {
    let h = Harness::start(1, 0);
    h.submit("e", "max_trials = 3", CMD, "").await;
    h.sched.pause("e").await.unwrap();
    let mut p = Params::new();
    p.insert("x".into(), quantune_strategies::ParamValue::Float(0.25));
    let v = h.sched.enqueue("e", p).await.unwrap();
    assert_eq!(v.state, "queued");
    let filled = h.sched.enqueue("e", Params::new()).await.unwrap();
    assert!(filled.params.contains_key("x"), "filled from the strategy");
    // A trial the strategy suggested before the pause may hold the slot: let it finish.
    let before = h.fake.started().len();
    for l in h.fake.started() {
        h.complete(&l, 1.0);
    }
    h.sched.resume("e").await.unwrap();
    h.until("one more start", |h| h.fake.started().len() > before)
        .await;
    // The queued trials come first, in order, before any new suggestion.
    let next = h.fake.started()[before].clone();
    assert_eq!(next.trial, v.trial);
    assert_eq!(
        next.params["x"],
        quantune_strategies::ParamValue::Float(0.25)
    );
    h.complete(&next, 0.0);
    h.until("the filled one", |h| h.fake.started().len() >= before + 2)
        .await;
    assert_eq!(h.fake.started()[before + 1].trial, filled.trial);
    h.stop().await;
}

#[tokio::test]
async fn asks_and_tells_interleave_and_pending_asks_are_served_in_order() {
    let h = Harness::start(0, 0);
    h.submit(
        "x",
        "max_trials = 4\nparallel = 4",
        "workload = \"external\"\ntimeout = \"1h\"",
        "",
    )
    .await;
    // Four asks at once: each waits for the suggestion before it, none is lost or doubled.
    let asks = (0..4).map(|_| {
        let s = h.sched.clone();
        tokio::spawn(async move { s.ask("x").await })
    });
    let mut got: Vec<u64> = Vec::new();
    for a in asks {
        got.push(a.await.unwrap().unwrap().0);
    }
    got.sort();
    assert_eq!(got, vec![0, 1, 2, 3]);
    let fifth = h.sched.ask("x").await.unwrap_err();
    assert!(matches!(fifth, SchedulerError::Conflict(_)), "{fifth}");
    // Tell out of order; the last one completes the study.
    for n in [2u64, 0, 3, 1] {
        let v = h
            .sched
            .tell(
                "x",
                n,
                TellOutcome::Complete(BTreeMap::from([("loss".into(), n as f64)])),
            )
            .await
            .unwrap();
        assert_eq!(v.state, "complete");
    }
    assert_eq!(h.state("x"), "completed");
    // A tell of a finished trial is refused.
    let again = h
        .sched
        .tell("x", 1, TellOutcome::Failed("late".into()))
        .await
        .unwrap_err();
    assert!(matches!(again, SchedulerError::Conflict(_)));
    assert!(h.fake.started().is_empty(), "external trials start nothing");
    h.stop().await;
}

#[tokio::test]
async fn cancel_stops_running_and_cancels_queued_trials() {
    let h = Harness::start(1, 0);
    h.submit("c", "max_trials = 5", CMD, "").await;
    h.until("started", |h| h.fake.started().len() == 1).await;
    let mut p = Params::new();
    p.insert("x".into(), quantune_strategies::ParamValue::Float(0.5));
    let queued = h.sched.enqueue("c", p).await.unwrap();
    let s = h.sched.cancel("c").await.unwrap();
    assert_eq!(s.state, "cancelled");
    assert_eq!(
        h.trial("c", queued.trial).state,
        TrialState::Cancelled,
        "the queued trial"
    );
    assert_eq!(h.fake.cancelled().len(), 1);
    assert_eq!(h.fake.cancelled()[0].2, CancelReason::User);
    assert!(h.sched.cancel("c").await.is_err(), "already cancelled");
    let _ = StudyState::Cancelled;
    h.stop().await;
}

#[tokio::test]
async fn notices_follow_durable_changes_and_a_full_queue_drops_without_waiting() {
    use notice::Notice;
    let (h, rx) = Harness::build(tempfile::tempdir().unwrap(), 0, 0, Some(8));
    let mut rx = rx.unwrap();
    assert!(h.sched.notices(8).is_none(), "one queue only");
    h.submit(
        "x",
        "max_trials = 100\nmax_failed = 100\nparallel = 1",
        "workload = \"external\"\ntimeout = \"1h\"",
        "",
    )
    .await;
    let tell = |o: TellOutcome| {
        let s = h.sched.clone();
        async move {
            let (n, _) = s.ask("x").await.unwrap();
            s.tell("x", n, o).await.unwrap();
        }
    };
    let loss = |v: f64| TellOutcome::Complete(BTreeMap::from([("loss".into(), v)]));
    tell(TellOutcome::Failed("a".into())).await;
    tell(TellOutcome::Failed("b".into())).await;
    tell(loss(1.0)).await;
    tell(TellOutcome::Failed("c".into())).await;
    let finished = |trial, state, failed_streak| Notice::TrialFinished {
        study: "x".into(),
        trial,
        state,
        failed_streak,
    };
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(rx.recv().await.unwrap());
    }
    assert_eq!(
        got,
        vec![
            Notice::StudyAdded { study: "x".into() },
            finished(0, TrialState::Failed, 1),
            finished(1, TrialState::Failed, 2),
            finished(2, TrialState::Complete, 0),
            finished(3, TrialState::Failed, 1),
        ]
    );
    // Nobody reads: the queue fills, and every later tell is answered as fast as before.
    let flood = async {
        for i in 0..20 {
            tell(loss(i as f64)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), flood)
        .await
        .expect("a full notice queue never holds up the loop");
    let dropped = h
        .sched
        .metrics()
        .notifications_dropped
        .with_label_values(&["events"])
        .get();
    assert_eq!(dropped, 12, "8 held, the rest dropped and counted");
    let mut held = 0;
    while rx.try_recv().is_ok() {
        held += 1;
    }
    assert_eq!(held, 8);
    h.stop().await;
}

#[tokio::test]
async fn a_study_whose_every_trial_failed_ends_failed_with_the_first_reason() {
    let h = Harness::start(1, 0);
    let of = |h: &Harness, study: &str| -> Vec<Launch> {
        h.fake
            .started()
            .into_iter()
            .filter(|l| l.study == study)
            .collect()
    };
    h.submit("s", "max_trials = 2", CMD, "").await;
    for n in 0..2 {
        h.until("started", |h| of(h, "s").len() > n).await;
        h.fail(&of(&h, "s")[n], &format!("exit status {}", n + 3));
    }
    h.until("s failed", |h| h.state("s") == "failed").await;
    assert_eq!(
        h.sched.study("s").unwrap().message.as_deref(),
        Some("every trial failed; the first, trial 0: exit status 3")
    );
    // One result is enough for a study to complete.
    h.submit("t", "max_trials = 2", CMD, "").await;
    h.until("started", |h| !of(h, "t").is_empty()).await;
    h.fail(&of(&h, "t")[0], "exit status 1");
    h.until("started", |h| of(h, "t").len() > 1).await;
    h.complete(&of(&h, "t")[1], 1.0);
    h.until("t completed", |h| h.state("t") == "completed")
        .await;
    h.stop().await;
}

#[tokio::test]
async fn delete_waits_for_running_trials_then_frees_the_slot_and_the_name() {
    let h = Harness::start(1, 0);
    h.submit("d", "max_trials = 5", CMD, "").await;
    h.until("started", |h| h.fake.started().len() == 1).await;
    let sched = h.sched.clone();
    let deleting = tokio::spawn(async move { sched.delete("d").await });
    h.until("the running trial asked to stop", |h| {
        h.fake.cancelled().len() == 1
    })
    .await;
    // The reply waits for the trial's end; meanwhile the study is still there, cancelled.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!deleting.is_finished());
    assert_eq!(h.state("d"), "cancelled");
    let l = h.fake.started()[0].clone();
    h.finish(
        &l,
        AttemptOutcome::Cancelled {
            why: CancelReason::User,
            stderr_tail: None,
        },
    );
    let r = deleting.await.unwrap().unwrap();
    assert_eq!((r.name.as_str(), r.trials), ("d", 1));
    assert!(h.sched.study("d").is_err());
    assert!(h.sched.delete("d").await.is_err(), "already gone");
    assert_eq!(h.sched.slots().cpu_busy, 0);
    // The name is free once the purge is done; the new study starts empty on the freed slot.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let src = "[study]\nname = \"d\"\nseed = 3\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n[space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[budget]\nmax_trials = 1\n[trial]\ncommand = [\"true\"]\n";
        let def = crate::model::study::parse(src, "t.toml", h.dir.path(), None).unwrap();
        match h.sched.submit(def, src.into()).await {
            Ok(_) => break,
            Err(e) => {
                assert!(e.to_string().contains("being deleted"), "{e}");
                assert!(std::time::Instant::now() < deadline, "the name stays taken");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    h.until("the new study's trial", |h| h.fake.started().len() == 2)
        .await;
    assert_eq!(h.fake.started()[1].trial, 0);
    h.stop().await;
}
