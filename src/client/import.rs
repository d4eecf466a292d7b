//! `quantune import STUDY FILES…`: the client side of importing earlier benchmark results.
//! Reading, mapping and checking the rows is [`crate::model::results`]; this sends the good
//! ones to the daemon and prints what happened.

use crate::client::http::Client;
use crate::model::results::{convert, expand, read_file, BadRow, ImportRequest, Mapping};
use crate::view::table::Format;
use anyhow::{anyhow, bail, Result};
use serde::Serialize;
use std::path::PathBuf;

/// Options of `quantune import STUDY FILES…`.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// `--map COLUMN=NAME`.
    pub map: Vec<String>,
    /// `--mapping FILE`.
    pub mapping: Option<PathBuf>,
    /// Import the valid rows even when some are bad.
    pub skip_invalid: bool,
    /// Check only.
    pub dry_run: bool,
}

/// What `import STUDY FILES…` did, as `--format json` prints it.
#[derive(Debug, Serialize)]
struct ImportReport {
    study: String,
    files: usize,
    rows: usize,
    valid: usize,
    invalid: Vec<BadRow>,
    imported: Vec<u64>,
    dry_run: bool,
}

/// `quantune import STUDY FILES…`: reads, maps and checks every row, reports every bad one,
/// then sends the good ones to the daemon (all of them, or none while some are bad unless
/// `--skip-invalid`).
pub async fn run(
    client: &Client,
    study: &str,
    paths: &[PathBuf],
    opts: &ImportOptions,
    format: Format,
) -> Result<()> {
    let export = client.export(study).await?;
    let data = crate::view::plot::StudyData::from_export(&export).map_err(|e| anyhow!(e))?;
    let def = &data.def;
    let mut mapping = match &opts.mapping {
        Some(p) => Mapping::load(p)?,
        None => Mapping::default(),
    };
    mapping.add_args(&opts.map)?;
    mapping.check(def)?;
    let files = expand(paths)?;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut rows = 0;
    for f in &files {
        let (file_rows, file_bad) = read_file(f);
        rows += file_rows.len();
        bad.extend(file_bad);
        for row in &file_rows {
            match convert(def, &mapping, row) {
                Ok(r) => good.push(r),
                Err(error) => bad.push(BadRow {
                    file: row.file.clone(),
                    line: Some(row.line),
                    error,
                }),
            }
        }
    }
    for b in &bad {
        eprintln!("{b}");
    }
    let mut report = ImportReport {
        study: study.to_string(),
        files: files.len(),
        rows,
        valid: good.len(),
        invalid: bad.clone(),
        imported: Vec::new(),
        dry_run: opts.dry_run,
    };
    let blocked = !bad.is_empty() && !opts.skip_invalid;
    if !opts.dry_run && !blocked && !good.is_empty() {
        let trials = client
            .import_results(study, &ImportRequest { results: good })
            .await?;
        report.imported = trials.iter().map(|t| t.trial).collect();
    }
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        _ => {
            println!(
                "{} file(s), {} row(s): {} valid, {} invalid",
                report.files,
                report.rows,
                report.valid,
                bad.len()
            );
            if let (Some(a), Some(b)) = (report.imported.first(), report.imported.last()) {
                println!(
                    "imported {} result(s) into '{study}' as trials {a}–{b}",
                    report.imported.len()
                );
            }
        }
    }
    if blocked {
        bail!(
            "{} invalid row(s) (listed above); nothing imported: fix them, or pass --skip-invalid to import the {} valid row(s)",
            bad.len(),
            report.valid
        );
    }
    if report.valid == 0 {
        bail!("no valid rows to import");
    }
    if opts.dry_run && format != Format::Json {
        println!("dry run: nothing imported");
    }
    Ok(())
}
