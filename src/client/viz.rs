//! The client commands that look at a study as a whole: `plot`, `importance` and `watch`. Plots
//! and importance are computed here, from the study's export (`GET …/export`: definition,
//! trials and reports), so the daemon does no drawing for the CLI.

use crate::client::cli::Format;
use crate::client::http::Client;
use crate::model::leaderboard::Row;
use crate::model::wire::StudySummary;
use crate::view::plot::{PlotKind, PlotOptions, StudyData};
use crate::view::table;
use anyhow::{anyhow, bail, Context, Result};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

/// Fetches what plots and importance are computed from.
pub async fn study_data(client: &Client, study: &str) -> Result<StudyData> {
    let export = client.export(study).await?;
    StudyData::from_export(&export).map_err(|e| anyhow!("unexpected export from the daemon: {e}"))
}

/// `quantune plot`.
pub async fn plot(
    client: &Client,
    study: &str,
    kind: PlotKind,
    out: &Path,
    opts: PlotOptions,
    format: Format,
) -> Result<()> {
    let to_stdout = out.as_os_str() == "-";
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let png = match ext.as_deref() {
        _ if to_stdout => false,
        Some("svg") => false,
        Some("png") => true,
        _ => bail!(
            "--out {}: the file name must end in .svg or .png (or be - for SVG on stdout)",
            out.display()
        ),
    };
    let data = study_data(client, study).await?;
    if png {
        crate::view::plot::render_png(&data, kind, &opts, out)?;
    } else {
        let svg = crate::view::plot::render_svg(&data, kind, &opts)?;
        if to_stdout {
            std::io::stdout().write_all(svg.as_bytes())?;
            return Ok(());
        }
        std::fs::write(out, svg).with_context(|| format!("cannot write {}", out.display()))?;
    }
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "study": study,
                "kind": kind,
                "file": out.display().to_string(),
                "trials": data.trials.len(),
            })
        ),
        _ => println!(
            "wrote the {} plot of '{study}' ({} trials) to {}",
            kind.name(),
            data.trials.len(),
            out.display()
        ),
    }
    Ok(())
}

/// `quantune importance`.
pub async fn importance(client: &Client, study: &str, quantile: f64, format: Format) -> Result<()> {
    let data = study_data(client, study).await?;
    let results = crate::model::importance::per_objective(&data.def, &data.trials, quantile);
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&crate::model::importance::to_json(&results, quantile))?
        ),
        Format::Csv => {
            let mut t = table::Table {
                headers: ["objective", "param", "importance", "trials", "top"]
                    .map(String::from)
                    .to_vec(),
                rows: Vec::new(),
            };
            for r in &results {
                for (p, v) in &r.importance.params {
                    t.rows.push(vec![
                        r.metric.clone(),
                        p.clone(),
                        v.to_string(),
                        r.importance.trials.to_string(),
                        r.importance.top.to_string(),
                    ]);
                }
            }
            print!("{}", t.to_csv());
        }
        Format::Table => {
            let text = crate::model::importance::text_chart(&results, quantile);
            if crate::view::color::stdout(format) {
                // Bars in green, the rest as is.
                for line in text.lines() {
                    match line.find('#') {
                        Some(i) => println!(
                            "{}{}",
                            &line[..i],
                            crate::view::color::Paint::Good.apply(&line[i..])
                        ),
                        None => println!("{line}"),
                    }
                }
            } else {
                print!("{text}");
            }
        }
    }
    Ok(())
}

/// One screen of `watch`: the status line and the top of the leaderboard (its default
/// columns), every line cut to `width` when the output's width is known, the table fitted to
/// it (else to 100 characters).
fn screen(s: &StudySummary, rows: &[Row], color: bool, width: Option<usize>) -> String {
    let count = |k: &str| s.counts.get(k).copied().unwrap_or(0);
    let mut out = format!(
        "study '{}': {} · {} of {} trials · {} running, {} queued, {} complete, {} failed, {} pruned, {} infeasible",
        s.name,
        s.state,
        s.trials,
        s.max_trials,
        count("running"),
        count("queued"),
        count("complete"),
        count("failed"),
        count("pruned"),
        count("infeasible")
    );
    if s.imported > 0 {
        out.push_str(&format!(" · {} imported", s.imported));
    }
    if let Some(m) = &s.message {
        out.push_str(&format!(" ({m})"));
    }
    out.push('\n');
    if let Some(best) = &s.best {
        let m: Vec<String> = best
            .metrics
            .iter()
            .map(|(k, v)| format!("{k}={}", table::num(*v, false)))
            .collect();
        out.push_str(&format!("best: trial {} {}\n", best.trial, m.join(" ")));
    }
    out.push('\n');
    if rows.is_empty() {
        out.push_str("no finished trials yet\n");
    } else {
        let board = table::leaderboard_text(
            rows,
            &s.key_metrics(),
            &table::Columns::Default,
            width.unwrap_or(crate::view::width::DEFAULT),
            color,
        )
        .unwrap_or_else(|e| format!("{e}\n"));
        out.push_str(&board);
    }
    crate::view::width::elide_lines(&out, width)
}

/// `quantune watch`: refreshes until the study finishes or Ctrl-C. On a terminal the screen
/// is redrawn in place; into a pipe a screen is printed only when it changed; with
/// `--format json` each refresh is one line `{"study": …, "leaderboard": […]}`.
pub async fn watch(
    client: &Client,
    study: &str,
    interval: f64,
    top: usize,
    format: Format,
) -> Result<()> {
    let tty = std::io::stdout().is_terminal() && format == Format::Table;
    let color = crate::view::color::stdout(format);
    let stop = crate::signal::shutdown_signal();
    tokio::pin!(stop);
    let mut last = String::new();
    loop {
        let s = client.study(study).await?;
        let rows = client.leaderboard(study, Some(top)).await?;
        let finished = matches!(s.state.as_str(), "completed" | "failed" | "cancelled");
        match format {
            Format::Json => {
                println!("{}", serde_json::json!({ "study": s, "leaderboard": rows }));
            }
            _ => {
                let text = screen(&s, &rows, color, crate::view::width::stdout());
                if tty {
                    let footer = if finished {
                        String::new()
                    } else {
                        format!(
                            "\nrefreshing every {} · Ctrl-C stops\n",
                            crate::model::duration::format_secs(interval)
                        )
                    };
                    print!("\x1b[H\x1b[2J{text}{footer}");
                } else if text != last {
                    if !last.is_empty() {
                        println!();
                    }
                    print!("{text}");
                }
                last = text;
            }
        }
        std::io::stdout().flush()?;
        if finished {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(interval)) => {}
            _ = &mut stop => return Ok(()),
        }
    }
}
