//! The client subcommands: each turns its flags into one API call and prints the reply in the
//! chosen format. Errors come back worded for the user; `main` prints them and exits 1.

use crate::client::cli::{Command, Format};
use crate::client::http::{segment, Client, Endpoint};
use crate::model::duration::format_secs;
use crate::model::leaderboard::Row;
use crate::model::wire::{AskReply, DaemonStatus, StudySummary, SubmitRequest, TrialView};
use crate::view::table;
use anyhow::{anyhow, bail, Context, Result};
use hyper::Method;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_table(t: &table::Table, format: Format) {
    print_painted(t, format, &[]);
}

/// Prints a table, its rows in `paints` when colours are on (a terminal, `--format table`).
fn print_painted(t: &table::Table, format: Format, paints: &[Option<crate::view::color::Paint>]) {
    match format {
        Format::Csv => print!("{}", t.to_csv()),
        _ if crate::view::color::stdout(format) => print!("{}", t.to_text_painted(Some(paints))),
        _ => print!("{}", t.to_text()),
    }
}

fn metrics_arg(flag: &str, text: &str) -> Result<BTreeMap<String, f64>> {
    serde_json::from_str(text).map_err(|e| {
        anyhow!("{flag} must be a JSON object of numbers, e.g. '{{\"eval_loss\": 2.31}}' ({e})")
    })
}

/// Prints the daemon's answer to `submit` (shared with `run`'s resume path).
fn print_study(s: &StudySummary, format: Format) -> Result<()> {
    match format {
        Format::Json => print_json(s),
        _ => {
            print_table(&table::studies_table(std::slice::from_ref(s)), format);
            Ok(())
        }
    }
}

/// Where client commands go: the TCP listener when `url` is given (token from
/// `$QUANTUNE_TOKEN`, else `token_file`), else the Unix socket.
pub fn endpoint(socket: &Path, url: Option<&str>, token_file: Option<&Path>) -> Result<Endpoint> {
    let Some(url) = url else {
        return Ok(Endpoint::Unix(socket.to_path_buf()));
    };
    let token = match (std::env::var("QUANTUNE_TOKEN"), token_file) {
        (Ok(t), _) if !t.trim().is_empty() => Some(t.trim().to_string()),
        (_, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the token file {}", f.display()))?
                .trim()
                .to_string(),
        ),
        _ => None,
    };
    Ok(Endpoint::from_url(url, token)?)
}

/// Runs one client command against the daemon at `endpoint`.
pub async fn run_client(command: Command, endpoint: Endpoint, format: Format) -> Result<()> {
    let client = Client::to(endpoint);
    match command {
        Command::Submit { file } => {
            let source = std::fs::read_to_string(&file)
                .with_context(|| format!("{}: cannot read the study file", file.display()))?;
            // Check locally first: the same messages without a round trip.
            crate::model::study::load(&file).map_err(|e| anyhow!("{e}"))?;
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
            let s: StudySummary = client
                .json(
                    Method::POST,
                    "/v1/studies",
                    Some(serde_json::to_value(req)?),
                )
                .await?;
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
        Command::Studies => {
            let s: Vec<StudySummary> = client.json(Method::GET, "/v1/studies", None).await?;
            match format {
                Format::Json => print_json(&s),
                _ => {
                    print_table(&table::studies_table(&s), format);
                    Ok(())
                }
            }
        }
        Command::Status { study: Some(name) } => {
            let s: StudySummary = client
                .json(
                    Method::GET,
                    &format!("/v1/studies/{}", segment(&name)),
                    None,
                )
                .await?;
            print_study(&s, format)?;
            if format == Format::Table {
                let b = &s.budget;
                let of = |used: String, max: Option<String>| match max {
                    Some(m) => format!("{used} of {m}"),
                    None => used,
                };
                println!(
                    "budget: trials {} of {}, wall {}, gpu-hours {}",
                    s.trials,
                    s.max_trials,
                    of(format_secs(b.wall_s), b.max_wall_s.map(format_secs)),
                    of(
                        format!("{:.2}", b.gpu_hours),
                        b.max_gpu_hours.map(|h| format!("{h:.2}"))
                    )
                );
                if let Some(w) = &s.waiting {
                    println!("{w}");
                }
                let trials: Vec<TrialView> = client
                    .json(
                        Method::GET,
                        &format!("/v1/studies/{}/trials", segment(&name)),
                        None,
                    )
                    .await?;
                for t in trials
                    .iter()
                    .filter(|t| t.state == "running" || t.state == "queued")
                {
                    let job = match (&t.job_id, &t.job_state) {
                        (Some(id), Some(st)) => format!(" (Slurm job {id}, {st})"),
                        (Some(id), None) => format!(" (Slurm job {id})"),
                        _ => t
                            .slot
                            .as_ref()
                            .map(|s| format!(" on {s}"))
                            .unwrap_or_default(),
                    };
                    println!("trial {} {}{job}", t.trial, t.state);
                }
                if let Some(best) = &s.best {
                    let m: Vec<String> = best
                        .metrics
                        .iter()
                        .map(|(k, v)| format!("{k}={}", table::num(*v, false)))
                        .collect();
                    println!("best: trial {} {}", best.trial, m.join(" "));
                }
            }
            Ok(())
        }
        Command::Status { study: None } => {
            let s: DaemonStatus = client.json(Method::GET, "/v1/status", None).await?;
            match format {
                Format::Json => print_json(&s),
                _ => {
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
                    print_table(&table::studies_table(&s.studies), format);
                    Ok(())
                }
            }
        }
        Command::Trials { study } => {
            let t: Vec<TrialView> = client
                .json(
                    Method::GET,
                    &format!("/v1/studies/{}/trials", segment(&study)),
                    None,
                )
                .await?;
            match format {
                Format::Json => print_json(&t),
                _ => {
                    print_painted(
                        &table::trials_table(&t, format == Format::Csv),
                        format,
                        &table::trial_paints(&t),
                    );
                    Ok(())
                }
            }
        }
        Command::Leaderboard { study, top } => {
            let q = top.map(|n| format!("?top={n}")).unwrap_or_default();
            let rows: Vec<Row> = client
                .json(
                    Method::GET,
                    &format!("/v1/studies/{}/leaderboard{q}", segment(&study)),
                    None,
                )
                .await?;
            match format {
                Format::Json => print_json(&rows),
                _ => {
                    print_painted(
                        &table::leaderboard_table(&rows, format == Format::Csv),
                        format,
                        &table::leaderboard_paints(&rows),
                    );
                    Ok(())
                }
            }
        }
        Command::Curve { study, trial } => {
            let v: serde_json::Value = client
                .json(
                    Method::GET,
                    &format!("/v1/studies/{}/trials/{trial}", segment(&study)),
                    None,
                )
                .await?;
            match format {
                Format::Json => print_json(&v),
                _ => {
                    let reports: Vec<quantune_state::Report> =
                        serde_json::from_value(v["reports"].clone())?;
                    if reports.is_empty() {
                        println!("trial {trial} of '{study}' has no intermediate reports");
                    } else {
                        print_table(&table::curve_table(&reports, format == Format::Csv), format);
                    }
                    Ok(())
                }
            }
        }
        Command::Pause { study } => lifecycle(&client, &study, "pause", format).await,
        Command::Resume { study } => lifecycle(&client, &study, "resume", format).await,
        Command::Cancel { study } => lifecycle(&client, &study, "cancel", format).await,
        Command::Ask { study } => {
            let r: AskReply = client
                .json(
                    Method::POST,
                    &format!("/v1/studies/{}/ask", segment(&study)),
                    None,
                )
                .await?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Command::Report {
            study,
            trial,
            step,
            metrics,
        } => {
            let metrics = metrics_arg("--metrics", &metrics)?;
            let body = serde_json::json!({ "step": step, "metrics": metrics });
            let r: serde_json::Value = client
                .json(
                    Method::POST,
                    &format!("/v1/studies/{}/trials/{trial}/report", segment(&study)),
                    Some(body),
                )
                .await?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Command::Tell {
            study,
            trial,
            metrics,
            failed,
            infeasible,
        } => {
            let body = match (metrics, failed, infeasible) {
                (Some(m), None, None) => {
                    serde_json::json!({ "metrics": metrics_arg("--metrics", &m)? })
                }
                (None, Some(r), None) => serde_json::json!({ "failed": r }),
                (None, None, Some(r)) => serde_json::json!({ "infeasible": r }),
                _ => bail!("tell needs exactly one of --metrics, --failed, --infeasible"),
            };
            let t: TrialView = client
                .json(
                    Method::POST,
                    &format!("/v1/studies/{}/trials/{trial}/tell", segment(&study)),
                    Some(body),
                )
                .await?;
            match format {
                Format::Json => print_json(&t),
                _ => {
                    println!("trial {} of '{}' is {}", t.trial, study, t.state);
                    Ok(())
                }
            }
        }
        Command::Export { study, out } => {
            let data = client
                .call(
                    Method::GET,
                    &format!("/v1/studies/{}/export", segment(&study)),
                    None,
                )
                .await?;
            match out {
                Some(p) => std::fs::write(&p, &data)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => std::io::stdout().write_all(&data)?,
            }
            Ok(())
        }
        Command::Import {
            first,
            files,
            map,
            mapping,
            skip_invalid,
            dry_run,
        } if !files.is_empty() => {
            let opts = crate::client::import::ImportOptions {
                map,
                mapping,
                skip_invalid,
                dry_run,
            };
            crate::client::import::run(&client, &first, &files, &opts, format).await
        }
        Command::Import { first, .. } => {
            let file = std::path::PathBuf::from(first);
            let mut data = Vec::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_end(&mut data)?;
            } else {
                data = std::fs::read(&file).with_context(|| {
                    format!(
                        "cannot read {} (to import result files into a study: quantune import STUDY FILES…)",
                        file.display()
                    )
                })?;
            }
            let reply = client.call(Method::POST, "/v1/import", Some(data)).await?;
            let v: serde_json::Value = serde_json::from_slice(&reply)?;
            match format {
                Format::Json => print_json(&v),
                _ => {
                    println!("imported {} trial(s) in {}", v["trials"], v["studies"]);
                    Ok(())
                }
            }
        }
        Command::Enqueue { study, params } => {
            let params: serde_json::Value = serde_json::from_str(&params).map_err(|e| {
                anyhow!("--params must be a JSON object, e.g. '{{\"learning_rate\": 3e-4}}' ({e})")
            })?;
            let t: TrialView = client
                .json(
                    Method::POST,
                    &format!("/v1/studies/{}/enqueue", segment(&study)),
                    Some(serde_json::json!({ "params": params })),
                )
                .await?;
            match format {
                Format::Json => print_json(&t),
                _ => {
                    let p: Vec<String> = t.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!("queued trial {} of '{study}': {}", t.trial, p.join(" "));
                    Ok(())
                }
            }
        }
        Command::Plot {
            study,
            kind,
            out,
            size,
            metric,
            quantile,
        } => {
            let opts = crate::view::plot::PlotOptions {
                width: size.0,
                height: size.1,
                metric,
                quantile,
            };
            crate::client::viz::plot(&client, &study, kind, &out, opts, format).await
        }
        Command::Importance { study, quantile } => {
            crate::client::viz::importance(&client, &study, quantile, format).await
        }
        Command::Watch {
            study,
            interval,
            top,
        } => crate::client::viz::watch(&client, &study, interval, top, format).await,
        Command::Web { listen } => {
            crate::daemon::web::proxy(client.endpoint().clone(), &listen).await
        }
        Command::Backup { dir } => backup(&client, &dir, format).await,
        Command::Restore { dir, skip_existing } => {
            restore(&client, &dir, skip_existing, format).await
        }
        other => bail!("{other:?} is not a client command"),
    }
}

async fn lifecycle(client: &Client, study: &str, verb: &str, format: Format) -> Result<()> {
    let s: StudySummary = client
        .json(
            Method::POST,
            &format!("/v1/studies/{}/{verb}", segment(study)),
            None,
        )
        .await?;
    match format {
        Format::Json => print_json(&s),
        _ => {
            println!("study '{}' is {}", s.name, s.state);
            Ok(())
        }
    }
}

/// The data file of a backup directory.
pub const BACKUP_FILE: &str = "quantune-backup.jsonl";
/// The manifest of a backup directory.
pub const BACKUP_MANIFEST: &str = "manifest.json";

/// Studies and trials in export JSON lines, by the `"kind"` of each line.
fn count_lines(data: &[u8]) -> Result<(Vec<String>, u64)> {
    let mut studies = Vec::new();
    let mut trials = 0;
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(line)
            .with_context(|| format!("backup line {} is not JSON", i + 1))?;
        match v["kind"].as_str() {
            Some("study") => studies.push(v["name"].as_str().unwrap_or_default().to_string()),
            Some("trial") => trials += 1,
            _ => bail!("backup line {}: unknown kind {}", i + 1, v["kind"]),
        }
    }
    Ok((studies, trials))
}

/// `quantune backup DIR`: the daemon's consistent export of every study, written to a
/// temporary file, synced, then renamed into place, so a crash leaves no half backup.
async fn backup(client: &Client, dir: &Path, format: Format) -> Result<()> {
    let data = client.call(Method::GET, "/v1/backup", None).await?;
    let (studies, trials) = count_lines(&data)?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the backup directory {}", dir.display()))?;
    let file = dir.join(BACKUP_FILE);
    if file.exists() {
        bail!(
            "{} already holds a backup ({}); choose a new directory",
            dir.display(),
            file.display()
        );
    }
    let manifest = serde_json::json!({
        "format": 1,
        "quantune": env!("CARGO_PKG_VERSION"),
        "created_at": crate::model::now(),
        "studies": studies,
        "trials": trials,
        "bytes": data.len(),
    });
    for (name, bytes) in [
        (BACKUP_FILE, data.clone()),
        (BACKUP_MANIFEST, serde_json::to_vec_pretty(&manifest)?),
    ] {
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(name))
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    match format {
        Format::Json => print_json(&manifest),
        _ => {
            println!(
                "backed up {} stud{} ({trials} trials) to {}",
                studies.len(),
                if studies.len() == 1 { "y" } else { "ies" },
                dir.display()
            );
            Ok(())
        }
    }
}

/// `quantune restore DIR`: checks the backup against its manifest and imports it.
async fn restore(client: &Client, dir: &Path, skip_existing: bool, format: Format) -> Result<()> {
    let (file, manifest) = if dir.is_dir() {
        (dir.join(BACKUP_FILE), Some(dir.join(BACKUP_MANIFEST)))
    } else {
        (dir.to_path_buf(), None)
    };
    let data = std::fs::read(&file)
        .with_context(|| format!("cannot read the backup {}", file.display()))?;
    let (studies, trials) = count_lines(&data)?;
    if let Some(m) = manifest.filter(|m| m.exists()) {
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&m)?)
            .with_context(|| format!("{} is not JSON", m.display()))?;
        if m["trials"].as_u64() != Some(trials) || m["bytes"].as_u64() != Some(data.len() as u64) {
            bail!(
                "{} does not match its manifest ({} trials and {} bytes expected, {trials} and {} found): the backup is damaged",
                file.display(),
                m["trials"],
                m["bytes"],
                data.len()
            );
        }
    }
    let mut data = data;
    if skip_existing {
        let have: Vec<StudySummary> = client.json(Method::GET, "/v1/studies", None).await?;
        let have: std::collections::BTreeSet<String> = have.into_iter().map(|s| s.name).collect();
        let mut kept = Vec::new();
        let mut keep = true;
        for line in data.split(|b| *b == b'\n') {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) {
                if v["kind"] == "study" {
                    keep = !have.contains(v["name"].as_str().unwrap_or_default());
                    if !keep {
                        eprintln!(
                            "skipping study '{}': the daemon has it",
                            v["name"].as_str().unwrap_or_default()
                        );
                    }
                }
            }
            if keep && !line.is_empty() {
                kept.extend_from_slice(line);
                kept.push(b'\n');
            }
        }
        data = kept;
    }
    if studies.is_empty() || data.is_empty() {
        println!("nothing to restore");
        return Ok(());
    }
    let reply = client.call(Method::POST, "/v1/import", Some(data)).await?;
    let v: serde_json::Value = serde_json::from_slice(&reply)?;
    match format {
        Format::Json => print_json(&v),
        _ => {
            println!("restored {} trial(s) in {}", v["trials"], v["studies"]);
            Ok(())
        }
    }
}
