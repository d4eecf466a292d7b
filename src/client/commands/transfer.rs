//! Moving studies in and out of the daemon: `export`, `import` of an export, `backup` and
//! `restore`. (`import STUDY FILES…` of outside results is `client::import`.)

use super::print_json;
use crate::client::cli::Format;
use crate::client::http::Client;
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// `quantune export STUDY [--out FILE]`: the study's JSON lines (`--format table|json`), or
/// with `--format csv` its trials as one flat CSV table (every column, exact numbers), to the
/// file or stdout.
pub async fn export(
    client: &Client,
    study: &str,
    out: Option<&Path>,
    format: Format,
) -> Result<()> {
    let data = match format {
        Format::Csv => {
            let trials = client.trials(study).await?;
            crate::view::table::trials_table(&trials, true)
                .to_csv()
                .into_bytes()
        }
        Format::Table | Format::Json => client.export(study).await?,
    };
    match out {
        Some(p) => {
            std::fs::write(p, &data).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => std::io::stdout().write_all(&data)?,
    }
    Ok(())
}

/// `quantune import [--as NAME] FILE`: a study exported by `export` (or `-` for stdin),
/// renamed to NAME when given.
pub async fn import_export(
    client: &Client,
    first: &str,
    to: Option<&str>,
    format: Format,
) -> Result<()> {
    let file = PathBuf::from(first);
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
    let v = client.import_export(data, to).await?;
    match format {
        Format::Json => print_json(&v),
        _ => {
            println!("imported {} trial(s) in {}", v["trials"], v["studies"]);
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
pub async fn backup(client: &Client, dir: &Path, format: Format) -> Result<()> {
    let data = client.backup().await?;
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
pub async fn restore(
    client: &Client,
    dir: &Path,
    skip_existing: bool,
    format: Format,
) -> Result<()> {
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
        let have = client.studies().await?;
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
    let v = client.import_export(data, None).await?;
    match format {
        Format::Json => print_json(&v),
        _ => {
            println!("restored {} trial(s) in {}", v["trials"], v["studies"]);
            Ok(())
        }
    }
}
