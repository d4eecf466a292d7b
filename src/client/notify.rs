//! `quantune notify test`: sends a `test` event to every `[[notify]]` target of a daemon config
//! file, from this process, and prints what each answered (docs/NOTIFY.md). One attempt per
//! target, so that the answer comes at once; the daemon retries real events.

use crate::notify::deliver::{deliver_with, Outcome};
use crate::notify::{target, EventKind, Payload};
use crate::view::table::{Format, Table};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// `quantune notify …`.
#[derive(clap::Subcommand, Debug)]
pub enum NotifyAction {
    /// Send a test event to every [[notify]] webhook of the daemon config and print each
    /// one's answer (HTTP status or error); exits 1 unless every one took it (2xx).
    #[command(
        after_help = "Examples:\n  quantune notify test\n  quantune notify test --config /etc/quantune/quantune.toml --format json"
    )]
    Test {
        /// The daemon config file whose [[notify]] tables to use.
        #[arg(long, default_value = crate::model::DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

/// Runs `quantune notify ACTION`; returns the exit code.
pub async fn run(action: NotifyAction, format: Format) -> Result<i32> {
    match action {
        NotifyAction::Test { config } => test(&config, format).await,
    }
}

/// One target's answer, as `--format json` prints it.
#[derive(serde::Serialize)]
struct Answer {
    url: String,
    delivered: bool,
    status: Option<u16>,
    error: Option<String>,
}

async fn test(config: &Path, format: Format) -> Result<i32> {
    let targets = target::load(config).map_err(anyhow::Error::msg)?;
    if targets.is_empty() {
        bail!(
            "{} has no [[notify]] tables; add one (docs/NOTIFY.md), e.g.\n[[notify]]\nurl = \"http://127.0.0.1:9000/quantune\"\nevents = [\"new_best\", \"study_completed\", \"study_failed\"]",
            config.display()
        );
    }
    let mut sends = tokio::task::JoinSet::new();
    for (i, t) in targets.into_iter().enumerate() {
        sends.spawn(async move {
            let mut p = Payload::new(EventKind::Test);
            p.message = Some("a test from `quantune notify test`".into());
            let outcome: Outcome = deliver_with(&t, &p, 1).await;
            (i, t.url, outcome)
        });
    }
    let mut answers = Vec::new();
    while let Some(r) = sends.join_next().await {
        answers.push(r?);
    }
    answers.sort_by_key(|(i, _, _)| *i);
    let all = answers.iter().all(|(_, _, o)| o.delivered());
    match format {
        Format::Json => {
            let list: Vec<Answer> = answers
                .into_iter()
                .map(|(_, url, o)| Answer {
                    url,
                    delivered: o.delivered(),
                    status: o.status,
                    error: o.error,
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        _ => {
            let table = Table {
                headers: vec!["target".into(), "result".into(), "answer".into()],
                rows: answers
                    .into_iter()
                    .map(|(_, url, o)| {
                        let result = if o.delivered() { "ok" } else { "FAILED" };
                        vec![url, result.into(), o.describe()]
                    })
                    .collect(),
            };
            if format == Format::Csv {
                print!("{}", table.to_csv());
            } else {
                print!("{}", table.to_text());
            }
        }
    }
    Ok(if all { 0 } else { 1 })
}
