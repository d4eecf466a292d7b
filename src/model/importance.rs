//! `quantune importance`: which parameters mattered, per objective. The maths (PED-ANOVA) is
//! in `quantune_strategies::importance`; this module picks the trials (feasible complete ones,
//! imported results included), runs it once per objective and prints a text bar chart.

use crate::model::study::StudyDefinition;
use quantune_state::TrialRecord;
use quantune_strategies::importance::{ped_anova, Importance, ImportanceOptions};
use quantune_strategies::Params;
use serde::Serialize;

/// The importance of every parameter for one objective.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectiveImportance {
    /// The objective's metric.
    pub metric: String,
    /// `minimize` or `maximize`.
    pub direction: String,
    /// The estimate.
    pub importance: Importance,
}

/// One objective's entry of `importance --format json`.
#[derive(Serialize)]
struct JsonEntry<'a> {
    objective: &'a str,
    direction: &'a str,
    method: &'static str,
    quantile: f64,
    trials: usize,
    top: usize,
    note: Option<&'a str>,
    importance: Vec<JsonParam<'a>>,
}

#[derive(Serialize)]
struct JsonParam<'a> {
    param: &'a str,
    importance: f64,
}

/// PED-ANOVA importance for each objective of the study, over its feasible complete trials;
/// `quantile` is the share of them that counts as "top".
pub fn per_objective(
    def: &StudyDefinition,
    trials: &[TrialRecord],
    quantile: f64,
) -> Vec<ObjectiveImportance> {
    let opts = ImportanceOptions {
        quantile,
        ..ImportanceOptions::default()
    };
    def.objectives
        .iter()
        .map(|o| {
            let samples: Vec<(Params, f64)> = trials
                .iter()
                .filter(|t| crate::model::leaderboard::feasible(def, t))
                .filter_map(|t| {
                    let v = *t.metrics.get(&o.metric)?;
                    Some(((*t.params).clone(), o.loss(v)))
                })
                .collect();
            ObjectiveImportance {
                metric: o.metric.clone(),
                direction: format!("{:?}", o.direction).to_lowercase(),
                importance: ped_anova(&def.space, &samples, &opts),
            }
        })
        .collect()
}

/// The results as the documented JSON array (`docs/CLI.md`).
pub fn to_json(results: &[ObjectiveImportance], quantile: f64) -> serde_json::Value {
    let entries: Vec<JsonEntry<'_>> = results
        .iter()
        .map(|r| JsonEntry {
            objective: &r.metric,
            direction: &r.direction,
            method: "ped-anova",
            quantile,
            trials: r.importance.trials,
            top: r.importance.top,
            note: r.importance.note.as_deref(),
            importance: r
                .importance
                .params
                .iter()
                .map(|(p, v)| JsonParam {
                    param: p,
                    importance: *v,
                })
                .collect(),
        })
        .collect();
    serde_json::to_value(entries).unwrap_or_default()
}

/// Width of a bar of importance 1.
const BAR: usize = 40;

/// A text bar chart per objective.
pub fn text_chart(results: &[ObjectiveImportance], quantile: f64) -> String {
    let mut out = String::new();
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "{} ({}): PED-ANOVA over {} feasible trial(s), top {} ({:.0} %)\n",
            r.metric,
            r.direction,
            r.importance.trials,
            r.importance.top,
            quantile * 100.0
        ));
        let width = r
            .importance
            .params
            .iter()
            .map(|(p, _)| p.chars().count())
            .max()
            .unwrap_or(0);
        for (p, v) in &r.importance.params {
            let n = (v * BAR as f64).round() as usize;
            let n = if *v > 0.0 { n.max(1) } else { 0 };
            out.push_str(&format!("  {p:<width$}  {v:.3}  {}\n", "#".repeat(n)));
        }
        if let Some(note) = &r.importance.note {
            out.push_str(&format!("  note: {note}\n"));
        }
    }
    out
}
