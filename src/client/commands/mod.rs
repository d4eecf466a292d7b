//! The client subcommands: [`run_client`] hands each to one function (in [`study`], [`trial`],
//! [`transfer`], `client::import` and `client::viz`) that turns its flags into API calls
//! (`client::api`) and prints the reply in the chosen format. Errors come back worded for the
//! user; `main` prints them and exits 1.

pub mod logs;
pub mod manage;
pub mod study;
pub mod transfer;
pub mod trial;

pub use transfer::{BACKUP_FILE, BACKUP_MANIFEST};

use crate::client::api::Lifecycle;
use crate::client::cli::{Command, Format};
use crate::client::http::{Client, Endpoint};
use crate::model::wire::StudySummary;
use crate::view::table;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Prints a value as pretty JSON.
fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints a table as text or CSV.
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

/// Prints one study's summary row (or its JSON).
fn print_study(s: &StudySummary, format: Format) -> Result<()> {
    match format {
        Format::Json => print_json(s),
        _ => {
            print_table(
                &table::studies_table(std::slice::from_ref(s), format == Format::Csv),
                format,
            );
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
    let c = &client;
    match command {
        Command::Submit { file } => study::submit(c, &file, format).await,
        Command::Studies { tag } => study::studies(c, &tag, format).await,
        Command::Status { study: Some(name) } => study::study_status(c, &name, format).await,
        Command::Status { study: None } => study::daemon_status(c, format).await,
        Command::Trials { study, columns } => {
            study::trials(c, &study, &columns.choice(), format).await
        }
        Command::Leaderboard {
            study,
            top,
            columns,
        } => study::leaderboard(c, &study, top, &columns.choice(), format).await,
        Command::Curve { study, trial } => study::curve(c, &study, trial, format).await,
        Command::Pause { study } => study::lifecycle(c, &study, Lifecycle::Pause, format).await,
        Command::Resume { study } => study::lifecycle(c, &study, Lifecycle::Resume, format).await,
        Command::Cancel { study } => study::lifecycle(c, &study, Lifecycle::Cancel, format).await,
        Command::Ask { study } => trial::ask(c, &study).await,
        Command::Report {
            study,
            trial,
            step,
            metrics,
        } => trial::report(c, &study, trial, step, &metrics).await,
        Command::Tell {
            study,
            trial,
            metrics,
            failed,
            infeasible,
        } => {
            let outcome = trial::Outcome {
                metrics,
                failed,
                infeasible,
            };
            trial::tell(c, &study, trial, outcome, format).await
        }
        Command::Enqueue { study, params } => trial::enqueue(c, &study, &params, format).await,
        Command::Export { study, out } => transfer::export(c, &study, out.as_deref(), format).await,
        Command::Import {
            first,
            files,
            map,
            mapping,
            skip_invalid,
            dry_run,
            ..
        } if !files.is_empty() => {
            let opts = crate::client::import::ImportOptions {
                map,
                mapping,
                skip_invalid,
                dry_run,
            };
            crate::client::import::run(c, &first, &files, &opts, format).await
        }
        Command::Import { first, to, .. } => {
            transfer::import_export(c, &first, to.as_deref(), format).await
        }
        Command::Delete { study, yes } => manage::delete(c, &study, yes, format).await,
        Command::Extend {
            study,
            max_trials,
            max_wall,
            max_gpu_hours,
        } => {
            let req = crate::model::wire::ExtendRequest {
                max_trials,
                max_wall,
                max_gpu_hours,
            };
            manage::extend(c, &study, &req, format).await
        }
        Command::Copy { study, to } => manage::copy(c, &study, &to, format).await,
        Command::Tag { study, changes } => manage::tag(c, &study, &changes, format).await,
        Command::Note { study, args } => manage::note(c, &study, &args, format).await,
        Command::Backup { dir } => transfer::backup(c, &dir, format).await,
        Command::Restore { dir, skip_existing } => {
            transfer::restore(c, &dir, skip_existing, format).await
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
            crate::client::viz::plot(c, &study, kind, &out, opts, format).await
        }
        Command::Importance { study, quantile } => {
            crate::client::viz::importance(c, &study, quantile, format).await
        }
        Command::Watch {
            study,
            interval,
            top,
        } => crate::client::viz::watch(c, &study, interval, top, format).await,
        Command::Logs {
            study,
            trial,
            attempt,
            stream,
            follow,
        } => logs::logs(c, &study, trial, attempt, stream, follow).await,
        other => bail!("{other:?} is not a client command"),
    }
}
