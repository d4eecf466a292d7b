//! Managing studies as a whole: `delete`, `extend`, `copy`, `tag` and `note`.

use super::{print_json, print_study};
use crate::client::cli::Format;
use crate::client::http::Client;
use crate::model::wire::{ExtendRequest, TagRequest};
use crate::view::table;
use anyhow::{bail, Result};
use std::io::{BufRead, IsTerminal, Write};

/// `quantune delete STUDY [--yes]`: asks on a terminal, refuses elsewhere without `--yes`.
pub async fn delete(client: &Client, name: &str, yes: bool, format: Format) -> Result<()> {
    if !yes {
        // The study must exist before anyone is asked about it.
        let s = client.study(name).await?;
        if !std::io::stdin().is_terminal() {
            bail!("refusing to delete study '{name}' without --yes: stdin is not a terminal to confirm on (quantune delete {name} --yes)");
        }
        let running = s.counts.get("running").copied().unwrap_or(0);
        let stopping = if running > 0 {
            format!(", stopping its {running} running trial(s)")
        } else {
            String::new()
        };
        eprint!(
            "delete study '{name}' ({} state, {} trial(s)){stopping}? This cannot be undone (export it first to keep a copy). [y/N] ",
            s.state,
            s.trials + s.imported
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
            bail!("study '{name}' was not deleted");
        }
    }
    let r = client.delete(name).await?;
    match format {
        Format::Json => print_json(&r),
        _ => {
            println!("deleted study '{}' ({} trial(s))", r.name, r.trials);
            Ok(())
        }
    }
}

/// `quantune extend STUDY --max-trials N [--max-wall D] [--max-gpu-hours H]`.
pub async fn extend(
    client: &Client,
    name: &str,
    req: &ExtendRequest,
    format: Format,
) -> Result<()> {
    if req.max_trials.is_none() && req.max_wall.is_none() && req.max_gpu_hours.is_none() {
        bail!("extend needs at least one of --max-trials, --max-wall, --max-gpu-hours");
    }
    let s = client.extend(name, req).await?;
    match format {
        Format::Table => {
            println!(
                "study '{}' is {} with budget.max_trials = {} ({} used){}",
                s.name,
                s.state,
                s.max_trials,
                s.trials,
                s.message
                    .as_deref()
                    .map(|m| format!(": {}", table::escape_control(m)))
                    .unwrap_or_default()
            );
            Ok(())
        }
        _ => print_study(&s, format),
    }
}

/// `quantune copy STUDY NEW`.
pub async fn copy(client: &Client, name: &str, to: &str, format: Format) -> Result<()> {
    let s = client.copy(name, to).await?;
    match format {
        Format::Table => {
            println!(
                "copied study '{name}' to '{}' ({} trial(s), {})",
                s.name,
                s.trials + s.imported,
                s.state
            );
            Ok(())
        }
        _ => print_study(&s, format),
    }
}

/// Splits `+a b -c` into tags to add (`a`, `b`) and to remove (`c`).
fn tag_changes(changes: &[String]) -> TagRequest {
    let mut req = TagRequest::default();
    for c in changes {
        match c.strip_prefix('-') {
            Some(t) => req.remove.push(t.to_string()),
            None => req.add.push(c.strip_prefix('+').unwrap_or(c).to_string()),
        }
    }
    req
}

/// `quantune tag STUDY [+TAG|-TAG]…`: changes the tags and prints them.
pub async fn tag(client: &Client, name: &str, changes: &[String], format: Format) -> Result<()> {
    let s = if changes.is_empty() {
        client.study(name).await?
    } else {
        client.tag(name, &tag_changes(changes)).await?
    };
    match format {
        Format::Table => {
            let tags = if s.tags.is_empty() {
                "no tags".to_string()
            } else {
                s.tags.join(", ")
            };
            println!("study '{}': {tags}", s.name);
            Ok(())
        }
        _ => print_study(&s, format),
    }
}

/// `quantune note STUDY TEXT` or `quantune note STUDY TRIAL TEXT`.
pub async fn note(client: &Client, name: &str, args: &[String], format: Format) -> Result<()> {
    match args {
        [text] => {
            let s = client.study_note(name, text).await?;
            match format {
                Format::Table => {
                    let what = if s.notes.is_some() { "set" } else { "removed" };
                    println!("notes of study '{}' {what}", s.name);
                    Ok(())
                }
                _ => print_study(&s, format),
            }
        }
        [trial, text] => {
            let Ok(n) = trial.parse::<u64>() else {
                bail!("\"{trial}\" is not a trial number; write quantune note STUDY TEXT, or quantune note STUDY TRIAL TEXT");
            };
            let t = client.trial_note(name, n, text).await?;
            match format {
                Format::Json => print_json(&t),
                _ => {
                    let what = if t.note.is_some() { "set" } else { "removed" };
                    println!("note of trial {} of '{name}' {what}", t.trial);
                    Ok(())
                }
            }
        }
        _ => bail!("write quantune note STUDY TEXT, or quantune note STUDY TRIAL TEXT"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_changes_split_into_adds_and_removes() {
        let r = tag_changes(&["+a".into(), "b".into(), "-c".into()]);
        assert_eq!(r.add, ["a", "b"]);
        assert_eq!(r.remove, ["c"]);
    }
}
