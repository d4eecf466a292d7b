//! `quantune run STUDY.toml`: one study in the foreground with the same scheduler and store as
//! the daemon, progress on the terminal and the leaderboard at the end. Ctrl-C interrupts the
//! running trials cleanly; running the same file again resumes where it stopped.

use crate::client::output::note;
use crate::daemon::serve::{discover_gpus, start_engine};
use crate::scheduler::SchedulerError;
use crate::signal::shutdown_signal;
use crate::view::table;
use anyhow::{anyhow, bail, Result};
use std::path::Path;
use std::time::Duration;

/// Runs the study in `file` with its store in `state_dir`; returns the process exit code.
pub async fn run(
    file: &Path,
    state_dir: &Path,
    cpu_slots: Option<usize>,
    quiet: bool,
) -> Result<i32> {
    // Before any trial can start: Ctrl-C from here on stops cleanly.
    let ctrl_c = shutdown_signal();
    let tasks = crate::tasks::Tasks::new();
    let (def, source) = crate::model::study::load(file).map_err(|e| anyhow!("{e}"))?;
    let file_name = file.display().to_string();
    let warnings = crate::model::preflight::check_program(&def, &source, &file_name)
        .map_err(|e| anyhow!("{e}"))?
        .into_iter()
        .chain(crate::model::preflight::metric_warnings(&def));
    for w in warnings {
        eprintln!("warning: {file_name}: {w}");
    }
    // Trials run in their own working directory: every path they are given must be absolute.
    let state_dir = &std::path::absolute(state_dir)?;
    let name = def.name.clone();
    let gpus = discover_gpus(true);
    let cpu_slots = cpu_slots.unwrap_or_else(crate::daemon::config::cores);
    let (engine, ev_rx) = start_engine(
        state_dir,
        cpu_slots,
        &gpus,
        1,
        Some(name.clone()),
        Default::default(),
        &tasks,
    )?;
    let mut finished = engine.subscribe();
    let scheduler = tokio::spawn(engine.clone().run(ev_rx, tasks.clone()));
    match engine.definition(&name) {
        Ok((_, stored_source)) if stored_source != source => bail!(
            "{}: study '{name}' in {} was created from a different file; rename [study] name or use another --state directory",
            file.display(),
            state_dir.display()
        ),
        Ok(_) => {
            let s = engine.study(&name).map_err(|e| anyhow!("{e}"))?;
            if s.state == "paused" {
                engine.resume(&name).await.map_err(|e| anyhow!("{e}"))?;
            }
            note(&format!("resuming study '{name}': {} of {} trials created, state {}", s.trials, s.max_trials, s.state));
        }
        Err(SchedulerError::NotFound(_)) => {
            engine.submit(def, source).await.map_err(|e| anyhow!("{e}"))?;
            note(&format!("study '{name}' started in {}", state_dir.display()));
        }
        Err(e) => bail!("{e}"),
    }
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    let mut counted = std::time::Instant::now();
    let max = engine.study(&name).map(|s| s.max_trials).unwrap_or(0);
    let mut done = engine
        .study(&name)
        .map(|s| {
            s.trials
                - s.counts.get("running").copied().unwrap_or(0)
                - s.counts.get("queued").copied().unwrap_or(0)
        })
        .unwrap_or(0);
    let progress = crate::client::progress::Progress::new(max, done, quiet);
    if let Ok(s) = engine.study(&name) {
        progress.counts(&s);
    }
    loop {
        tokio::select! {
            rec = finished.recv() => {
                if let Ok(rec) = rec {
                    if rec.study == name {
                        done += 1;
                        progress.finished(&rec, done);
                    }
                }
            }
            _ = &mut ctrl_c => {
                progress.finish();
                note("interrupted: stopping running trials (run the same command again to resume)");
                interrupted = true;
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if !engine.study_active(&name) { break; }
                if counted.elapsed() >= Duration::from_secs(1) {
                    counted = std::time::Instant::now();
                    if let Ok(s) = engine.study(&name) { progress.counts(&s); }
                }
            }
        }
    }
    tasks.stop();
    let stopped = scheduler.await;
    tasks.join(crate::daemon::serve::TASKS_GRACE).await;
    progress.finish();
    if let Ok(Err(e)) = stopped {
        bail!("{e}");
    }
    let summary = engine.study(&name).map_err(|e| anyhow!("{e}"))?;
    let rows = engine
        .leaderboard(&name, None)
        .map_err(|e| anyhow!("{e}"))?;
    let color = crate::view::color::stdout(crate::client::cli::Format::Table);
    let board = table::leaderboard_text(
        &rows,
        &summary.key_metrics(),
        &table::Columns::Default,
        crate::view::width::stdout().unwrap_or(crate::view::width::DEFAULT),
        color,
    )
    .map_err(|e| anyhow!(e))?;
    let end = format!(
        "\n{board}\nstudy '{name}': {}{}\n",
        summary.state,
        summary
            .message
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default()
    );
    // stdout closed early (`run … | head`): the study is done and stored; end quietly.
    crate::client::output::write_stdout(&end)?;
    let trials = engine.trials(&name).unwrap_or_default();
    if let Some(t) = trials.iter().find(|t| t.state == "failed") {
        if t.executor.as_deref() == Some("local") {
            let log = state_dir
                .join("trials")
                .join(&name)
                .join(t.trial.to_string())
                .join(format!("stderr.{}.log", t.attempt));
            crate::client::output::note(&format!(
                "trial {} failed; its stderr: {}",
                t.trial,
                log.display()
            ));
        }
    }
    Ok(if interrupted {
        130
    } else if summary.state == "failed" {
        1
    } else {
        0
    })
}
