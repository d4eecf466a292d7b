//! `quantune serve`: the daemon. Opens the store, reconciles interrupted trials, starts the
//! scheduler loop and the API on the Unix socket, tells systemd it is ready, and on SIGTERM or
//! SIGINT stops accepting requests, interrupts local trials, records them and exits.

use crate::api::server::{router, AppState};
use crate::config::DaemonConfig;
use crate::engine::{Engine, EngineConfig};
use crate::executor::local::LocalExecutor;
use crate::gpu::{self, GpuDiscovery};
use anyhow::{bail, Context, Result};
use quantune_state::Store;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Time between SIGTERM and SIGKILL when a trial is stopped (SPEC §3).
pub const KILL_GRACE: Duration = Duration::from_secs(10);

/// Opens the store under `state_dir` with a message that says what to do when it fails.
pub fn open_store(state_dir: &Path) -> Result<Arc<Store>> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    let store = Store::open(&state_dir.join("store")).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Arc::new(store))
}

/// Opens the store under `state_dir` and builds the scheduler with a local executor; returns
/// it with the executor's event stream, for [`Engine::run`]. Shared by `serve` and `run`.
pub fn start_engine(
    state_dir: &Path,
    cpu_slots: usize,
    gpus: &GpuDiscovery,
    trials_per_gpu: u32,
    only_study: Option<String>,
) -> Result<(
    Arc<Engine>,
    mpsc::UnboundedReceiver<crate::executor::ExecEvent>,
)> {
    let store = open_store(state_dir)?;
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let executor =
        Arc::new(LocalExecutor::new(ev_tx, KILL_GRACE).with_cache_dir(state_dir.join("cache")));
    let cfg = EngineConfig {
        run_root: state_dir.join("trials"),
        cpu_slots,
        gpus: gpus.devices.iter().map(|g| g.index).collect(),
        trials_per_gpu,
        only_study,
    };
    let engine = Engine::open(store, executor, cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((Arc::new(engine), ev_rx))
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
    // Before anything else: a SIGTERM during start-up then stops the daemon cleanly once up.
    let stop_signal = shutdown_signal();
    let mut cfg = DaemonConfig::load(config).map_err(anyhow::Error::msg)?;
    // Trials run in their own working directory: every path they are given must be absolute.
    cfg.state_dir = std::path::absolute(&cfg.state_dir)?;
    for (key, set) in [
        ("metrics_listen", cfg.metrics_listen.is_some()),
        ("tcp", cfg.tcp.is_some()),
        ("executor", cfg.executor.is_some()),
    ] {
        if set {
            tracing::warn!("config key `{key}` is not supported by this version and is ignored");
        }
    }
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
    )?;
    let listener = bind_socket(&cfg.socket, cfg.socket_group.as_deref())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let scheduler = tokio::spawn(engine.clone().run(ev_rx, stop_rx));
    let app = router(AppState {
        engine: engine.clone(),
        gpus: Arc::new(gpus),
        state_dir: cfg.state_dir.clone(),
    });
    tracing::info!(socket = %cfg.socket.display(), state_dir = %cfg.state_dir.display(), "quantune daemon ready");
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("serving"),
    ]);
    let watchdog = sd_notify::watchdog_enabled().map(|interval| {
        let engine = engine.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval / 2).await;
                // A scheduler that can take its own lock is alive.
                let s = engine.slots();
                let status = format!("running {} trial(s)", s.cpu_busy + s.gpu_busy);
                let _ = sd_notify::notify(&[
                    sd_notify::NotifyState::Watchdog,
                    sd_notify::NotifyState::Status(&status),
                ]);
            }
        })
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(stop_signal)
        .await
        .context("API server failed")?;
    tracing::info!("stopping: interrupting running trials");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    let _ = scheduler.await;
    if let Some(w) = watchdog {
        w.abort();
    }
    let _ = std::fs::remove_file(&cfg.socket);
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called (not when the
/// future is first polled), so a signal that arrives during start-up is not lost: call it
/// first thing, inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let (Ok(mut term), Ok(mut int)) = (term, int) else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
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
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(g) = group {
        match nix::unistd::Group::from_name(g) {
            Ok(Some(grp)) => {
                nix::unistd::chown(path, None, Some(grp.gid)).with_context(|| format!("cannot give {} to group {g}", path.display()))?
            }
            _ => bail!("socket_group \"{g}\" does not exist; create it or remove socket_group from the config"),
        }
    }
    Ok(listener)
}
