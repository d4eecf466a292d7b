//! Progress of `quantune run` on stderr: on a terminal, a bar of finished/total trials with live
//! counts and the best value so far, and a line per finished trial above it; elsewhere (a log
//! file, CI) just the lines, so logs stay readable. Lines are cut (with …) to the terminal's
//! width, or `$COLUMNS`, never wrapped; a closed stderr silences them, the study goes on.

use crate::model::wire::StudySummary;
use crate::view::color::Paint;
use crate::view::table;
use indicatif::{ProgressBar, ProgressStyle};
use quantune_state::{TrialRecord, TrialState};
use std::io::IsTerminal;
use std::time::Duration;

/// The progress display of one study run.
pub struct Progress {
    /// The bar, when stderr is a terminal and `--quiet` is off.
    bar: Option<ProgressBar>,
    /// No per-trial lines.
    quiet: bool,
    /// Colours on the per-trial lines.
    color: bool,
    /// `budget.max_trials`.
    max: u64,
}

impl Progress {
    /// A display for a study with `max` trials of which `done` already finished.
    pub fn new(max: u64, done: u64, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(max);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} [{bar:30.cyan/blue}] {pos}/{len} trials · {elapsed} · {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_position(done);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            quiet,
            color: crate::view::color::stderr(),
            max,
        }
    }

    /// A trial finished: its line, and the bar moves.
    pub fn finished(&self, t: &TrialRecord, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done.min(self.max));
        }
        if self.quiet {
            return;
        }
        let line = trial_line(t, done, self.max, self.color);
        let line = match crate::view::width::stderr() {
            Some(w) => crate::view::width::elide(&line, w),
            None => line,
        };
        match &self.bar {
            Some(bar) => bar.println(line),
            None => crate::client::output::note(&line),
        }
    }

    /// Live counts from the study's summary.
    pub fn counts(&self, s: &StudySummary) {
        let Some(bar) = &self.bar else { return };
        let c = |k: &str| s.counts.get(k).copied().unwrap_or(0);
        let mut msg = format!("{} running, {} complete", c("running"), c("complete"));
        for k in ["failed", "pruned", "infeasible"] {
            if c(k) > 0 {
                msg.push_str(&format!(", {} {k}", c(k)));
            }
        }
        if let Some(best) = &s.best {
            let m: Vec<String> = best
                .metrics
                .iter()
                .take(2)
                .map(|(k, v)| format!("{k}={}", table::num(*v, false)))
                .collect();
            msg.push_str(&format!(" · best #{} {}", best.trial, m.join(" ")));
        }
        bar.set_message(msg);
    }

    /// Removes the bar (before the leaderboard is printed).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `[done/max] trial N state  params  metrics  (reason)`.
fn trial_line(t: &TrialRecord, done: u64, max: u64, color: bool) -> String {
    let params: Vec<String> = t
        .params
        .iter()
        .map(|(k, v)| match v {
            quantune_strategies::ParamValue::Float(f) => format!("{k}={}", table::num(*f, false)),
            v => format!("{k}={v}"),
        })
        .collect();
    let metrics: Vec<String> = t
        .metrics
        .iter()
        .map(|(k, v)| format!("{k}={}", table::num(*v, false)))
        .collect();
    let extra = match &t.reason {
        Some(r) if t.state != TrialState::Complete => format!("  ({r})"),
        _ => String::new(),
    };
    let state = match Paint::for_state(t.state.as_str()).filter(|_| color) {
        Some(p) => p.apply(t.state.as_str()),
        None => t.state.as_str().to_string(),
    };
    format!(
        "[{done}/{max}] trial {} {state}  {}  {}{extra}",
        t.number,
        params.join(" "),
        metrics.join(" ")
    )
}
