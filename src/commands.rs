//! The client subcommands: each turns its flags into one API call and prints the reply in the
//! chosen format. Errors come back worded for the user; `main` prints them and exits 1.

use crate::api::client::{segment, Client};
use crate::api::{AskReply, DaemonStatus, StudySummary, SubmitRequest, TrialView};
use crate::cli::{Command, Format};
use crate::duration::format_secs;
use crate::leaderboard::Row;
use crate::output;
use anyhow::{anyhow, bail, Context, Result};
use hyper::Method;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_table(t: &output::Table, format: Format) {
    print_painted(t, format, &[]);
}

/// Prints a table, its rows in `paints` when colours are on (a terminal, `--format table`).
fn print_painted(t: &output::Table, format: Format, paints: &[Option<crate::color::Paint>]) {
    match format {
        Format::Csv => print!("{}", t.to_csv()),
        _ if crate::color::stdout(format) => print!("{}", t.to_text_painted(Some(paints))),
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
            print_table(&output::studies_table(std::slice::from_ref(s)), format);
            Ok(())
        }
    }
}

/// Runs one client command against the daemon at `socket`.
pub async fn run_client(command: Command, socket: &Path, format: Format) -> Result<()> {
    let client = Client::new(socket);
    match command {
        Command::Submit { file } => {
            let source = std::fs::read_to_string(&file)
                .with_context(|| format!("{}: cannot read the study file", file.display()))?;
            // Check locally first: the same messages without a round trip.
            crate::study::load(&file).map_err(|e| anyhow!("{e}"))?;
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
                    print_table(&output::studies_table(&s), format);
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
                        .map(|(k, v)| format!("{k}={}", output::num(*v, false)))
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
                                let gib = g.memory_total as f64 / (1u64 << 30) as f64;
                                println!("gpu{}: {} ({gib:.1} GiB){util}{holder}", g.index, g.name);
                            }
                        }
                    }
                    println!();
                    print_table(&output::studies_table(&s.studies), format);
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
                        &output::trials_table(&t, format == Format::Csv),
                        format,
                        &output::trial_paints(&t),
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
                        &output::leaderboard_table(&rows, format == Format::Csv),
                        format,
                        &output::leaderboard_paints(&rows),
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
                        print_table(
                            &output::curve_table(&reports, format == Format::Csv),
                            format,
                        );
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
            let opts = crate::results::ImportOptions {
                map,
                mapping,
                skip_invalid,
                dry_run,
            };
            crate::results::run(&client, &first, &files, &opts, format).await
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
            let opts = crate::plot::PlotOptions {
                width: size.0,
                height: size.1,
                metric,
                quantile,
            };
            crate::viz::plot(&client, &study, kind, &out, opts, format).await
        }
        Command::Importance { study, quantile } => {
            crate::viz::importance(&client, &study, quantile, format).await
        }
        Command::Watch {
            study,
            interval,
            top,
        } => crate::viz::watch(&client, &study, interval, top, format).await,
        Command::Web { listen } => crate::web::proxy(socket, &listen).await,
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
