//! `quantune serve`: the daemon. Locks and opens the store, reconciles interrupted trials,
//! starts the scheduler loop and the API on the Unix socket (and on TCP behind a token when
//! configured), tells systemd it is ready, pings the watchdog while the scheduler loop turns,
//! and on SIGTERM or SIGINT stops accepting requests, interrupts local trials, records them and
//! exits.

use crate::daemon::access::Token;
use crate::daemon::api::{router, tcp_router, AppState};
use crate::daemon::config::DaemonConfig;
use crate::daemon::config::ExecutorsConfig;
use crate::gpu::{self, GpuDiscovery};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::tasks::Tasks;
use anyhow::{bail, Context, Result};
use quantune_state::Store;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Time between SIGTERM and SIGKILL when a trial is stopped (docs/TRIALS.md).
pub const KILL_GRACE: Duration = Duration::from_secs(10);

/// How long, once the scheduler loop has stopped, the other background tasks (listeners
/// finishing their requests, pollers, the GPU sampler) get before they are aborted.
pub const TASKS_GRACE: Duration = Duration::from_secs(10);

/// The lock file in the state directory; `flock`ed by the process that uses the directory.
pub const LOCK_FILE: &str = "quantune.lock";

/// Takes the state directory's lock for the rest of the process's life, or says who holds it.
/// The lock (an `flock` on [`LOCK_FILE`], which holds the owner's pid) goes with the process,
/// however it ends: a `kill -9` leaves no stale lock behind.
pub fn lock_state_dir(state_dir: &Path) -> Result<()> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let path = state_dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    // A holder that is gone (killed) may leave its lock with a child it was starting, between
    // fork and exec (a trial joining its cgroup): that lasts moments, so wait for it.
    let started = std::time::Instant::now();
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            bail!("cannot lock {}: {err}", path.display());
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let _ = std::io::Seek::rewind(&mut file);
        let holder = holder.trim();
        let gone = holder.parse::<i32>().is_ok_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                == Err(nix::errno::Errno::ESRCH)
        });
        if gone && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        bail!(
            "the state directory {} is in use by another quantune process{}; stop it first, or give this one another state directory",
            state_dir.display(),
            if holder.is_empty() { String::new() } else { format!(" (pid {holder})") }
        );
    }
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
    // The descriptor stays open, and the lock held, until the process exits.
    std::mem::forget(file);
    Ok(())
}

/// Opens the store under `state_dir` with a message that says what to do when it fails.
pub fn open_store(state_dir: &Path) -> Result<Arc<Store>> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    lock_state_dir(state_dir)?;
    let store = Store::open(&state_dir.join("store")).map_err(|e| {
        let full = e.to_string().contains("No space left on device");
        anyhow::anyhow!(
            "{e}{}",
            if full {
                "; free space on the disk that holds the state directory, then start again"
            } else {
                ""
            }
        )
    })?;
    if let Some(n) = store.rolled_back() {
        tracing::warn!(
            "the store held an unfinished commit (the daemon stopped in the middle of a large \
             write, such as an import): undone, {n} record(s) put back as they were; it had not \
             been acknowledged, so a client's retry writes it again"
        );
    }
    for name in store.purged_at_open() {
        tracing::warn!(study = %name, "finished deleting study '{name}': the previous process was stopped during its delete");
    }
    Ok(Arc::new(store))
}

/// Opens the store under `state_dir` and builds the scheduler with a local executor (and the
/// Slurm and Ray ones when configured); returns
/// it with the executor's event stream, for [`Scheduler::run`]. Shared by `serve` and `run`.
pub fn start_engine(
    state_dir: &Path,
    cpu_slots: usize,
    gpus: &GpuDiscovery,
    trials_per_gpu: u32,
    only_study: Option<String>,
    executor: ExecutorsConfig,
    tasks: &Tasks,
) -> Result<(
    Arc<Scheduler>,
    mpsc::UnboundedReceiver<crate::executor::ExecEvent>,
)> {
    let store = open_store(state_dir)?;
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let executors = crate::executor::build(executor, ev_tx, state_dir, KILL_GRACE, tasks)
        .map_err(anyhow::Error::msg)?;
    let cfg = SchedulerConfig {
        run_root: state_dir.join("trials"),
        cpu_slots,
        gpus: gpus.devices.clone(),
        cuda_version: gpus.driver_version.clone(),
        trials_per_gpu,
        only_study,
    };
    // The first read of every record: a damaged store panics here, deep in sled.
    let scheduler = quantune_state::damage::catch_panics(&state_dir.join("store"), || {
        Scheduler::open(store, executors, cfg)
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((Arc::new(scheduler), ev_rx))
}

/// GPU discovery, honouring the config switch.
pub fn discover_gpus(enabled: bool) -> GpuDiscovery {
    if enabled {
        gpu::discover()
    } else {
        GpuDiscovery {
            devices: Vec::new(),
            note: Some("GPU discovery is off (gpu_discovery = false)".into()),
            driver_version: None,
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn serve(config: Option<&Path>) -> Result<()> {
    // Before anything else: a SIGTERM during start-up then stops the daemon cleanly once up,
    // and a SIGHUP never kills it.
    let stop_signal = crate::signal::shutdown_signal();
    ignore_hangup();
    // Every background task starts through `tasks` and stops with it.
    let tasks = Tasks::new();
    let mut cfg = DaemonConfig::load(config).map_err(anyhow::Error::msg)?;
    // Trials run in their own working directory: every path they are given must be absolute.
    cfg.state_dir = std::path::absolute(&cfg.state_dir)?;
    // Checked before anything is opened: a bad token file is a config error.
    let tcp = match &cfg.tcp {
        Some(t) => Some((
            t.listen.clone(),
            Arc::new(Token::load(&t.token_file).map_err(anyhow::Error::msg)?),
        )),
        None => None,
    };
    raise_fd_limit();
    let mask = cfg.apply_umask();
    tracing::info!("umask {mask:04o} for state files, logs and trials");
    crate::executor::contain::configure(cfg.containment);
    crate::executor::contain::Containment::current().map_err(anyhow::Error::msg)?;
    let gpus = discover_gpus(cfg.gpu_discovery);
    match &gpus.note {
        Some(n) => tracing::info!("{n}"),
        None => tracing::info!(
            "{} GPU(s): {:?}",
            gpus.devices.len(),
            gpus.devices.iter().map(|g| &g.name).collect::<Vec<_>>()
        ),
    }
    let (engine, ev_rx) = start_engine(
        &cfg.state_dir,
        cfg.cpu_slots(),
        &gpus,
        cfg.trials_per_gpu,
        None,
        cfg.executor.clone(),
        &tasks,
    )?;
    crate::daemon::notifier::spawn(std::mem::take(&mut cfg.notify_targets), &engine, &tasks);
    let listener = bind_socket(&cfg.socket, cfg.socket_group.as_deref())?;
    let state = AppState {
        scheduler: engine.clone(),
        gpus: Arc::new(gpus),
        state_dir: cfg.state_dir.clone(),
        web: cfg.web,
    };
    if let Some((addr, token)) = tcp {
        let l = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on tcp {addr}"))?;
        tracing::info!(
            "tcp listener on {} (bearer token required)",
            l.local_addr()?
        );
        let app = tcp_router(state.clone(), token);
        let limits = cfg.http.limits(false).map_err(anyhow::Error::msg)?;
        let quit = tasks.stopping().receiver();
        tasks.spawn(
            "tcp listener",
            crate::daemon::listen::serve(l, app, limits, quit, "tcp"),
        );
    }
    let scheduler = tokio::spawn(engine.clone().run(ev_rx, tasks.clone()));
    let app = router(state.clone());
    if let Some(addr) = &cfg.metrics_listen {
        let limits = cfg.http.limits(false).map_err(anyhow::Error::msg)?;
        serve_metrics(addr, state.clone(), limits, &tasks).await?;
    }
    if cfg.web {
        tracing::info!("web page on the API socket at /ui/ (reach it with `quantune web` or ssh -L; see docs/WEB.md)");
    }
    tracing::info!(socket = %cfg.socket.display(), state_dir = %cfg.state_dir.display(), "quantune daemon ready");
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status_line(&engine)),
    ]);
    tasks.spawn_until_stopped(
        "watchdog",
        watchdog(
            engine.clone(),
            sd_notify::watchdog_enabled(),
            |status, ping| {
                let mut states = vec![sd_notify::NotifyState::Status(status)];
                if ping {
                    states.push(sd_notify::NotifyState::Watchdog);
                }
                let _ = sd_notify::notify(&states);
            },
        ),
    );
    // Stop on SIGTERM/SIGINT, or when the scheduler loop ends by itself: it does when a change
    // cannot be made durable (a full disk), and only a fresh process can write again.
    let mut scheduler = scheduler;
    let scheduler_done = {
        let tasks = tasks.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop_signal => {
                    tasks.stop();
                    scheduler.await
                }
                r = &mut scheduler => {
                    tracing::error!("the scheduler loop stopped; stopping the daemon so that a fresh start can write again");
                    // A moment for clients to hear why (their calls get the store's error).
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    tasks.stop();
                    r
                }
            }
        })
    };
    let limits = cfg.http.limits(true).map_err(anyhow::Error::msg)?;
    let quit = tasks.stopping().receiver();
    crate::daemon::listen::serve(listener, app, limits, quit, "socket").await;
    tracing::info!("stopping: interrupting running trials");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tasks.stop();
    let outcome = scheduler_done.await;
    // The listeners, pollers, sampler and watchdog heard the same stop; wait for them.
    tasks.join(TASKS_GRACE).await;
    let _ = std::fs::remove_file(&cfg.socket);
    if let Ok(Ok(Err(e))) = outcome {
        bail!(
            "stopped: the state store in {} could not be written (is its disk full?): {e}; nothing acknowledged is lost, and trials that were running run again on the next start (systemd restarts the service)",
            cfg.state_dir.display()
        );
    }
    // A clean stop: the next start can tell whether the store was cut short meanwhile.
    quantune_state::damage::seal(&cfg.state_dir.join("store"));
    tracing::info!("stopped");
    Ok(())
}

/// Catches SIGHUP (whose default action would kill the daemon, leaving its socket file and
/// orphaning its trials) and logs it: nothing is reloaded on SIGHUP; a changed config takes
/// a restart (`systemctl restart quantune`), and running trials are re-queued then.
pub fn ignore_hangup() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: ignored (nothing is reloaded on SIGHUP; restart the daemon to apply a changed config)");
                }
            });
        }
        Err(e) => tracing::warn!("cannot catch SIGHUP ({e}); a SIGHUP would stop the daemon"),
    }
}

/// Serves `GET /metrics` (only) on a plain TCP listener for Prometheus scrapers; everything
/// else there is a 404. Meant for loopback (`metrics_listen = "127.0.0.1:9464"`): it has no
/// authentication, and a non-loopback address is logged as a warning.
async fn serve_metrics(
    addr: &str,
    state: AppState,
    limits: crate::daemon::listen::HttpLimits,
    tasks: &Tasks,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics_listen = \"{addr}\": cannot listen there"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!("metrics_listen {local} is not a loopback address: anyone who reaches it can read the metrics");
    }
    tracing::info!("serving /metrics on http://{local}/metrics");
    let only_metrics = axum::Router::new()
        .route("/metrics", axum::routing::get(crate::daemon::api::metrics))
        .with_state(state);
    // The same connection limits as a TCP API listener; it stops with the other listeners.
    let limits = crate::daemon::listen::HttpLimits {
        reserve: 0,
        ..limits
    };
    let quit = tasks.stopping().receiver();
    tasks.spawn(
        "metrics listener",
        crate::daemon::listen::serve(listener, only_metrics, limits, quit, "metrics"),
    );
    Ok(())
}

/// The `STATUS=` line systemd shows in `systemctl status`.
fn status_line(engine: &Scheduler) -> String {
    let (running, queued) = engine.trial_counts();
    format!("{running} trial(s) running, {queued} queued")
}

/// Keeps systemd informed: `STATUS=` every few seconds and, when the unit has `WatchdogSec=`,
/// `WATCHDOG=1` — but only while the scheduler loop's heartbeat moves. A loop that hangs (a
/// deadlock, a blocking call) stops the pings, and systemd kills and restarts the daemon.
/// `notify(status, ping)` sends `STATUS=status` and, when `ping`, `WATCHDOG=1`.
async fn watchdog(
    engine: Arc<Scheduler>,
    interval: Option<Duration>,
    notify: impl Fn(&str, bool) + Send + 'static,
) {
    // The loop beats about once a second; check several times per watchdog period.
    let period = interval
        .map(|i| (i / 4).clamp(Duration::from_millis(250), Duration::from_secs(5)))
        .unwrap_or(Duration::from_secs(5));
    let mut last = engine.heartbeat();
    let mut stalled_since: Option<std::time::Instant> = None;
    loop {
        tokio::time::sleep(period).await;
        let beat = engine.heartbeat();
        let alive = beat != last;
        last = beat;
        if alive {
            if stalled_since.take().is_some() {
                tracing::info!("the scheduler loop is turning again");
            }
            notify(&status_line(&engine), interval.is_some());
        } else if stalled_since.is_none() {
            stalled_since = Some(std::time::Instant::now());
        } else if let Some(since) = stalled_since {
            if since.elapsed() >= period * 4 {
                tracing::error!(
                    "the scheduler loop has not turned for {:.0?}; not pinging the watchdog",
                    since.elapsed()
                );
                stalled_since = Some(std::time::Instant::now());
            }
        }
    }
}

/// Lifts the soft limit on open files to the hard one: every client connection and every
/// running trial's pipes hold descriptors, and 1024 (the usual soft limit) is soon reached.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to / read from a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Binds the API socket: refuses one another daemon is serving, replaces a stale one, and
/// makes it mode 0660 (group `group` when given).
fn bind_socket(path: &Path, group: Option<&str>) -> Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the socket directory {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another quantune daemon is already serving {}; stop it or choose another socket",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    // Created without any "other" bits (umask), so there is no moment when the socket is open to
    // everyone; then exactly 0660. Nothing else runs yet that could mind the umask.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o117));
    let bound = tokio::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(g) = group {
        match nix::unistd::Group::from_name(g) {
            // Under the shipped unit the socket is born with the right group (Group=), and
            // chown is outside its system call filter: only change what needs changing.
            Ok(Some(grp)) if std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(path)?) != grp.gid.as_raw() => {
                nix::unistd::chown(path, None, Some(grp.gid)).with_context(|| format!("cannot give {} to group {g}", path.display()))?
            }
            Ok(Some(_)) => {}
            _ => bail!("socket_group \"{g}\" does not exist; create it or remove socket_group from the config"),
        }
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{CancelReason, Executor, Launch};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An executor whose `start` takes far longer than the test looks: the scheduler loop that
    /// calls it hangs (for 6 s, so that the test's runtime can still shut down after).
    struct Hang;

    impl Executor for Hang {
        fn name(&self) -> &'static str {
            "local"
        }
        fn start(&self, _launch: Launch) {
            std::thread::sleep(Duration::from_secs(6));
        }
        fn cancel(&self, _study: &str, _trial: u64, _why: CancelReason) {}
        fn in_flight(&self) -> usize {
            0
        }
    }

    #[test]
    fn the_state_directory_lock_refuses_a_second_user() {
        let dir = tempfile::tempdir().unwrap();
        lock_state_dir(dir.path()).unwrap();
        let e = lock_state_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("in use by another quantune process")
                && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
    }

    /// The watchdog pings while the scheduler loop turns and stops once the loop hangs (here:
    /// inside an executor call), although the process and its other tasks go on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn watchdog_pings_stop_when_the_scheduler_loop_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
        let (_tx, ev_rx) = mpsc::unbounded_channel();
        let cfg = SchedulerConfig {
            run_root: dir.path().join("trials"),
            cpu_slots: 1,
            gpus: Vec::new(),
            cuda_version: None,
            trials_per_gpu: 1,
            only_study: None,
        };
        let engine = Arc::new(Scheduler::open(store, vec![Arc::new(Hang)], cfg).unwrap());
        tokio::spawn(engine.clone().run(ev_rx, Tasks::new()));
        let pings = Arc::new(AtomicUsize::new(0));
        let counter = pings.clone();
        tokio::spawn(watchdog(
            engine.clone(),
            Some(Duration::from_secs(1)),
            move |_, ping| {
                if ping {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            },
        ));
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let alive = pings.load(Ordering::SeqCst);
        assert!(alive >= 2, "only {alive} ping(s) from a healthy loop");
        // A study to run: the loop calls the executor, which never returns.
        let src = "[study]\nname = \"h\"\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\
                   [space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[strategy]\nkind = \"random\"\n\
                   [budget]\nmax_trials = 1\n[trial]\ncommand = [\"true\"]\n";
        let def = crate::model::study::parse(src, "h.toml", dir.path(), None).unwrap();
        // The reply never comes (the loop hangs in the executor after persisting): don't wait.
        let submitter = engine.clone();
        tokio::spawn(async move { submitter.submit(def, src.into()).await });
        // Let the loop reach the executor, and the watchdog notice.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let at_hang = pings.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(3000)).await;
        let after = pings.load(Ordering::SeqCst);
        assert_eq!(after, at_hang, "the watchdog was pinged for a hung loop");
        // The API side still answers: only the loop is stuck.
        assert_eq!(engine.studies().len(), 1);
    }
}
