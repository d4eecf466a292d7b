//! The commands about studies as a whole: `submit`, `studies`, `status`, `trials`,
//! `leaderboard`, `curve`, and the state changes `pause`, `resume`, `cancel`.

use super::{print_json, print_study, print_table};
use crate::client::api::Lifecycle;
use crate::client::cli::Format;
use crate::client::http::Client;
use crate::model::duration::format_secs;
use crate::model::wire::{StudySummary, SubmitRequest, TrialView};
use crate::view::table;
use anyhow::{anyhow, Context, Result};
use std::path::Path;

/// `quantune submit FILE`: checks the file here (the same messages without a round trip), then
/// sends it with the directory its relative paths are resolved against.
pub async fn submit(client: &Client, file: &Path, format: Format) -> Result<()> {
    let source = std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read the study file", file.display()))?;
    let (def, _) = crate::model::study::load(file).map_err(|e| anyhow!("{e}"))?;
    for w in crate::model::preflight::metric_warnings(&def) {
        eprintln!("warning: {}: {w}", file.display());
    }
    let base = file
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or(std::env::current_dir()?);
    let req = SubmitRequest {
        source,
        file: Some(file.display().to_string()),
        base_dir: Some(base.display().to_string()),
    };
    let s = client.submit(&req).await?;
    if format == Format::Table {
        println!(
            "submitted study '{}' ({} trials, strategy {})",
            s.name, s.max_trials, s.strategy
        );
        Ok(())
    } else {
        print_study(&s, format)
    }
}

/// `quantune studies [--tag T]…`: every study, or those with all the tags given.
pub async fn studies(client: &Client, tags: &[String], format: Format) -> Result<()> {
    let mut s = client.studies().await?;
    s.retain(|s| tags.iter().all(|t| s.tags.contains(t)));
    match format {
        Format::Json => print_json(&s),
        _ => {
            print_table(&table::studies_table(&s, format == Format::Csv), format);
            Ok(())
        }
    }
}

/// `quantune status STUDY`: the study's row, its budget, what waits or runs, and its best.
pub async fn study_status(client: &Client, name: &str, format: Format) -> Result<()> {
    let s = client.study(name).await?;
    print_study(&s, format)?;
    if format != Format::Table {
        return Ok(());
    }
    println!("{}", budget_line(&s));
    if !s.tags.is_empty() {
        println!("tags: {}", s.tags.join(", "));
    }
    if let Some(n) = &s.notes {
        println!("notes: {}", table::escape_control(n));
    }
    if let Some(w) = &s.waiting {
        println!("{}", table::escape_control(w));
    }
    let trials = client.trials(name).await?;
    for t in trials
        .iter()
        .filter(|t| t.state == "running" || t.state == "queued")
    {
        println!("trial {} {}{}", t.trial, t.state, where_it_runs(t));
    }
    if let Some(best) = &s.best {
        let m: Vec<String> = best
            .metrics
            .iter()
            .map(|(k, v)| format!("{}={}", table::escape_control(k), table::num(*v, false)))
            .collect();
        println!("best: trial {} {}", best.trial, m.join(" "));
    }
    for w in &s.warnings {
        println!("warning: {}", table::escape_control(w));
    }
    if let Some(t) = trials.iter().find(|t| t.state == "failed") {
        let logs = if has_logs(t) {
            format!("; its output: quantune logs {name} {}", t.trial)
        } else {
            String::new()
        };
        println!(
            "first failure: trial {}: {}{logs}",
            t.trial,
            table::escape_control(t.reason.as_deref().unwrap_or("no reason recorded")),
        );
    }
    Ok(())
}

/// Whether `quantune logs` has a trial's output: not for trials run through ask/tell, on Ray
/// (which keeps it), or imported.
fn has_logs(t: &TrialView) -> bool {
    !t.imported && !matches!(t.executor.as_deref(), Some("external" | "ray") | None)
}

/// `budget: trials 3 of 20, wall 1m of 2h, gpu-hours 0.10`.
fn budget_line(s: &StudySummary) -> String {
    let b = &s.budget;
    let of = |used: String, max: Option<String>| match max {
        Some(m) => format!("{used} of {m}"),
        None => used,
    };
    format!(
        "budget: trials {} of {}, wall {}, gpu-hours {}",
        s.trials,
        s.max_trials,
        of(format_secs(b.wall_s), b.max_wall_s.map(format_secs)),
        of(
            format!("{:.2}", b.gpu_hours),
            b.max_gpu_hours.map(|h| format!("{h:.2}"))
        )
    )
}

/// ` (Slurm job 12, RUNNING)` or ` on gpu0`, or nothing.
fn where_it_runs(t: &TrialView) -> String {
    match (&t.job_id, &t.job_state) {
        (Some(id), Some(st)) => format!(" (Slurm job {id}, {st})"),
        (Some(id), None) => format!(" (Slurm job {id})"),
        _ => t
            .slot
            .as_ref()
            .map(|s| format!(" on {s}"))
            .unwrap_or_default(),
    }
}

/// `quantune status`: the daemon, its slots and GPUs, and every study.
pub async fn daemon_status(client: &Client, format: Format) -> Result<()> {
    let s = client.daemon_status().await?;
    if format == Format::Json {
        return print_json(&s);
    }
    println!(
        "quantune {} (pid {}), state in {}",
        s.version, s.pid, s.state_dir
    );
    println!(
        "slots: cpu {}/{} busy, gpu {}/{} busy",
        s.slots.cpu_busy, s.slots.cpu_total, s.slots.gpu_busy, s.slots.gpu_total
    );
    match &s.gpus.note {
        Some(n) => println!("gpus: none ({n})"),
        None => {
            for g in &s.gpus.devices {
                let usage = s.gpu_usage.iter().find(|u| u.index == g.index);
                let util = usage
                    .and_then(|u| u.utilization)
                    .map(|u| format!(", {:.0}% busy", u * 100.0))
                    .unwrap_or_default();
                let holder = usage
                    .and_then(|u| u.trial.clone())
                    .map(|t| format!(", running {t}"))
                    .unwrap_or_else(|| ", free".into());
                let total = crate::gpu::gib(g.memory_total);
                println!("gpu{}: {} ({total}){util}{holder}", g.index, g.name);
            }
        }
    }
    println!();
    print_table(
        &table::studies_table(&s.studies, format == Format::Csv),
        format,
    );
    Ok(())
}

/// `quantune trials STUDY [--columns A,B | --all]`.
pub async fn trials(
    client: &Client,
    name: &str,
    columns: &table::Columns,
    format: Format,
) -> Result<()> {
    let t = client.trials(name).await?;
    match format {
        Format::Json => print_json(&t),
        Format::Csv => print_csv(&table::trials_table(&t, true), columns),
        Format::Table => {
            let key = client.study(name).await?.key_metrics();
            let text = table::trials_text(&t, &key, columns, screen_width(), color(format))
                .map_err(|e| anyhow!(e))?;
            print!("{text}");
            if let Some(f) = t.iter().find(|t| t.state == "failed" && has_logs(t)) {
                crate::client::output::note(&format!(
                    "a failed trial's output: quantune logs {name} {} (--attempt K for an earlier try)",
                    f.trial
                ));
            }
            Ok(())
        }
    }
}

/// Prints the chosen `columns` of a complete table as CSV.
fn print_csv(full: &table::Table, columns: &table::Columns) -> Result<()> {
    let chosen = table::csv_columns(full, columns).map_err(|e| anyhow!(e))?;
    print!("{}", chosen.to_csv());
    Ok(())
}

/// The width tables are fitted to: the terminal's (or `$COLUMNS`), else 100.
fn screen_width() -> usize {
    crate::view::width::stdout().unwrap_or(crate::view::width::DEFAULT)
}

/// Whether stdout gets colours.
fn color(format: Format) -> bool {
    crate::view::color::stdout(format)
}

/// `quantune leaderboard STUDY [--top N] [--columns A,B | --all]`.
pub async fn leaderboard(
    client: &Client,
    name: &str,
    top: Option<usize>,
    columns: &table::Columns,
    format: Format,
) -> Result<()> {
    let rows = client.leaderboard(name, top).await?;
    match format {
        Format::Json => print_json(&rows),
        Format::Csv => print_csv(&table::leaderboard_table(&rows, true), columns),
        Format::Table => {
            let key = client.study(name).await?.key_metrics();
            let text = table::leaderboard_text(&rows, &key, columns, screen_width(), color(format))
                .map_err(|e| anyhow!(e))?;
            print!("{text}");
            Ok(())
        }
    }
}

/// `quantune curve STUDY TRIAL`: the trial's intermediate reports.
pub async fn curve(client: &Client, name: &str, trial: u64, format: Format) -> Result<()> {
    let v = client.trial(name, trial).await?;
    if format == Format::Json {
        return print_json(&v);
    }
    let reports: Vec<quantune_state::Report> = serde_json::from_value(v["reports"].clone())?;
    if reports.is_empty() {
        println!("trial {trial} of '{name}' has no intermediate reports");
    } else {
        print_table(&table::curve_table(&reports, format == Format::Csv), format);
    }
    Ok(())
}

/// `quantune pause|resume|cancel STUDY`.
pub async fn lifecycle(client: &Client, name: &str, what: Lifecycle, format: Format) -> Result<()> {
    let s = client.lifecycle(name, what).await?;
    match format {
        Format::Json => print_json(&s),
        _ => {
            println!("study '{}' is {}", s.name, s.state);
            Ok(())
        }
    }
}
