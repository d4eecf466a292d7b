//! The commands of an external (ask/tell) study and hand-placed trials: `ask`, `report`,
//! `tell`, `enqueue`.

use super::print_json;
use crate::client::cli::Format;
use crate::client::http::Client;
use crate::model::wire::{ReportRequest, TellRequest};
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;

/// Parses a `--metrics` JSON object of numbers.
fn metrics_arg(flag: &str, text: &str) -> Result<BTreeMap<String, f64>> {
    serde_json::from_str(text).map_err(|e| {
        anyhow!("{flag} must be a JSON object of numbers, e.g. '{{\"eval_loss\": 2.31}}' ({e})")
    })
}

/// `quantune ask STUDY`: prints `{"trial": N, "params": {…}}` on one line.
pub async fn ask(client: &Client, study: &str) -> Result<()> {
    let r = client.ask(study).await?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

/// `quantune report STUDY TRIAL --step S --metrics {…}`: prints `{"prune": bool}`.
pub async fn report(
    client: &Client,
    study: &str,
    trial: u64,
    step: u64,
    metrics: &str,
) -> Result<()> {
    let req = ReportRequest {
        step,
        metrics: metrics_arg("--metrics", metrics)?,
    };
    let r = client.report(study, trial, &req).await?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

/// The outcome `tell` was given: exactly one of its three flags.
pub struct Outcome {
    /// `--metrics`.
    pub metrics: Option<String>,
    /// `--failed`.
    pub failed: Option<String>,
    /// `--infeasible`.
    pub infeasible: Option<String>,
}

/// `quantune tell STUDY TRIAL (--metrics {…} | --failed WHY | --infeasible WHY)`.
pub async fn tell(
    client: &Client,
    study: &str,
    trial: u64,
    outcome: Outcome,
    format: Format,
) -> Result<()> {
    let req = match (outcome.metrics, outcome.failed, outcome.infeasible) {
        (Some(m), None, None) => TellRequest {
            metrics: Some(metrics_arg("--metrics", &m)?),
            ..TellRequest::default()
        },
        (None, Some(r), None) => TellRequest {
            failed: Some(r),
            ..TellRequest::default()
        },
        (None, None, Some(r)) => TellRequest {
            infeasible: Some(r),
            ..TellRequest::default()
        },
        _ => bail!("tell needs exactly one of --metrics, --failed, --infeasible"),
    };
    let t = client.tell(study, trial, &req).await?;
    match format {
        Format::Json => print_json(&t),
        _ => {
            println!("trial {} of '{}' is {}", t.trial, study, t.state);
            Ok(())
        }
    }
}

/// `quantune enqueue STUDY --params {…}`.
pub async fn enqueue(client: &Client, study: &str, params: &str, format: Format) -> Result<()> {
    let params: serde_json::Value = serde_json::from_str(params).map_err(|e| {
        anyhow!("--params must be a JSON object, e.g. '{{\"learning_rate\": 3e-4}}' ({e})")
    })?;
    let t = client.enqueue(study, &params).await?;
    match format {
        Format::Json => print_json(&t),
        _ => {
            let p: Vec<String> = t.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("queued trial {} of '{study}': {}", t.trial, p.join(" "));
            Ok(())
        }
    }
}
