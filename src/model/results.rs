//! Benchmark results from earlier campaigns, imported as finished trials
//! (`quantune import STUDY FILES…`): JSON (an object, an array of objects, or one object per
//! line) and CSV/TSV with a header row. Columns are mapped to parameters and metrics by name,
//! by `--map COLUMN=NAME`, or by a mapping file; every row is checked against the study's space
//! and objectives, and every bad row is reported with its file and line — none is dropped
//! silently. The daemon stores the good rows as complete (or infeasible) trials marked
//! `imported`, which the strategies use as history.

use crate::model::study::StudyDefinition;
use anyhow::{anyhow, bail, Context, Result};
use quantune_strategies::display::num;
use quantune_strategies::{Domain, ParamValue, Params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One result to store as an imported trial (the body of `POST /v1/studies/{name}/import`
/// holds a list of these).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportedResult {
    /// Every parameter of the study's space that exists for these values (a conditional
    /// parameter whose condition does not hold is left out).
    #[schemars(with = "crate::model::openapi::ParamsSchema")]
    pub params: Params,
    /// Final metrics: at least every objective and constraint metric.
    pub metrics: BTreeMap<String, f64>,
    /// Non-numeric values (host, notes).
    #[serde(default)]
    pub info: BTreeMap<String, String>,
    /// Where it came from (`file:line`), kept in the trial's info as `imported_from`.
    #[serde(default)]
    pub source: Option<String>,
}

/// Body of `POST /v1/studies/{name}/import`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The results, stored in this order.
    pub results: Vec<ImportedResult>,
}

/// How columns map to the study's parameters and metrics.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Column name → parameter or metric name; an empty name drops the column.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Values of parameters the files do not have (e.g. the format every old run used).
    #[serde(default)]
    pub defaults: BTreeMap<String, toml::Value>,
}

impl Mapping {
    /// Reads a mapping file:
    /// ```toml
    /// [columns]
    /// lr = "learning_rate"
    /// notes = ""              # dropped
    /// [defaults]
    /// quantization = "bf16"
    /// ```
    pub fn load(path: &Path) -> Result<Mapping> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the mapping file", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!(":{}", text[..s.start.min(text.len())].matches('\n').count() + 1))
                .unwrap_or_default();
            anyhow!(
                "{}{line}: {} (a mapping file has [columns] COLUMN = \"name\" and [defaults] param = value)",
                path.display(),
                e.message().trim()
            )
        })
    }

    /// Adds `--map COLUMN=NAME` arguments (they win over the file).
    pub fn add_args(&mut self, args: &[String]) -> Result<()> {
        for a in args {
            let (col, name) = a.split_once('=').ok_or_else(|| {
                anyhow!("--map {a}: expected COLUMN=NAME (e.g. --map lr=learning_rate, or --map notes= to drop a column)")
            })?;
            self.columns
                .insert(col.trim().to_string(), name.trim().to_string());
        }
        Ok(())
    }

    /// Checks the targets exist in the study (before any row is read).
    pub fn check(&self, def: &StudyDefinition) -> Result<()> {
        for (name, v) in &self.defaults {
            let p = def
                .space
                .params()
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| {
                    anyhow!(
                        "mapping defaults.{name}: '{name}' is not a parameter of study '{}' (parameters: {})",
                        def.name,
                        param_names(def)
                    )
                })?;
            let field = match v {
                toml::Value::String(s) => Field::Text(s.clone()),
                toml::Value::Integer(i) => Field::Num(*i as f64),
                toml::Value::Float(f) => Field::Num(*f),
                toml::Value::Boolean(b) => Field::Bool(*b),
                other => bail!("mapping defaults.{name}: {other} is not a parameter value"),
            };
            param_value(&p.domain, &field).map_err(|e| anyhow!("mapping defaults.{name}: {e}"))?;
        }
        Ok(())
    }
}

/// A value read from a file.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// A JSON number.
    Num(f64),
    /// A JSON string or any CSV cell.
    Text(String),
    /// A JSON boolean.
    Bool(bool),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Num(x) => write!(f, "{x}"),
            Field::Text(s) => write!(f, "\"{s}\""),
            Field::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One row of a result file, before mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The file, as given.
    pub file: String,
    /// 1-based line where the row starts.
    pub line: usize,
    /// Its fields (nested JSON objects flattened to `outer.inner`), in file order.
    pub fields: Vec<(String, Field)>,
}

/// A row (or a whole file) that cannot be imported, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BadRow {
    /// The file, as given.
    pub file: String,
    /// 1-based line; `None` when the whole file is at fault.
    pub line: Option<usize>,
    /// What is wrong and what is allowed.
    pub error: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.error),
            None => write!(f, "{}: {}", self.file, self.error),
        }
    }
}

/// The result files among `paths`: files as given, directories walked (sorted, recursively)
/// for `.json`, `.jsonl`, `.ndjson`, `.csv` and `.tsv` files.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot list the directory", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("json" | "jsonl" | "ndjson" | "csv" | "tsv")
            ) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = out.len();
            walk(p, &mut out)?;
            if out.len() == before {
                bail!(
                    "{}: the directory holds no .json, .jsonl, .csv or .tsv files",
                    p.display()
                );
            }
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Reads the rows of one file (JSON or CSV by extension; by its first character otherwise).
/// Rows that cannot be parsed are returned as bad rows; a syntax error ends the file there.
pub fn read_file(path: &Path) -> (Vec<Row>, Vec<BadRow>) {
    let file = path.display().to_string();
    let bad = |line: Option<usize>, error: String| BadRow {
        file: file.clone(),
        line,
        error,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return (Vec::new(), vec![bad(None, format!("cannot read: {e}"))]),
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "json" | "jsonl" | "ndjson" => read_json(&file, &text),
        "csv" => read_csv(&file, &text, b','),
        "tsv" => read_csv(&file, &text, b'\t'),
        _ => match text.trim_start().chars().next() {
            Some('{' | '[') => read_json(&file, &text),
            Some(_) => read_csv(&file, &text, b','),
            None => (Vec::new(), vec![bad(None, "the file is empty".into())]),
        },
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn read_json(file: &str, text: &str) -> (Vec<Row>, Vec<BadRow>) {
    use serde_json::value::RawValue;
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let base = text.as_ptr() as usize;
    let object = |raw: &RawValue, rows: &mut Vec<Row>, bad: &mut Vec<BadRow>| {
        let offset = raw.get().as_ptr() as usize - base;
        let line = line_of(text, offset);
        match serde_json::from_str::<serde_json::Value>(raw.get()) {
            Ok(serde_json::Value::Object(map)) => {
                let mut fields = Vec::new();
                flatten("", &serde_json::Value::Object(map), &mut fields);
                rows.push(Row {
                    file: file.to_string(),
                    line,
                    fields,
                });
            }
            Ok(other) => bad.push(BadRow {
                file: file.to_string(),
                line: Some(line),
                error: format!(
                    "expected a JSON object (one result), got {}",
                    json_kind(&other)
                ),
            }),
            Err(e) => bad.push(BadRow {
                file: file.to_string(),
                line: Some(line),
                error: format!("not valid JSON: {e}"),
            }),
        }
    };
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    while let Some(item) = stream.next() {
        let raw = match item {
            Ok(raw) => raw,
            Err(e) => {
                // Name the line where the broken value starts, not where parsing gave up.
                let from = stream.byte_offset();
                let rest = &text[from.min(text.len())..];
                let start = from + (rest.len() - rest.trim_start().len());
                bad.push(BadRow {
                    file: file.to_string(),
                    line: Some(line_of(text, start)),
                    error: format!("not valid JSON ({e}); the rest of the file is not read"),
                });
                break;
            }
        };
        if raw.get().starts_with('[') {
            match serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
                Ok(items) => {
                    for item in items {
                        object(item, &mut rows, &mut bad);
                    }
                }
                Err(e) => bad.push(BadRow {
                    file: file.to_string(),
                    line: Some(line_of(text, raw.get().as_ptr() as usize - base)),
                    error: format!("not valid JSON: {e}"),
                }),
            }
        } else {
            object(raw, &mut rows, &mut bad);
        }
    }
    if rows.is_empty() && bad.is_empty() {
        bad.push(BadRow {
            file: file.to_string(),
            line: None,
            error: "the file holds no results".into(),
        });
    }
    (rows, bad)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Nested objects become `outer.inner` fields; nulls are left out; arrays are kept as text.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, Field)>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::Object(_) => flatten(&key(k), v, out),
                    serde_json::Value::Null => {}
                    serde_json::Value::Bool(b) => out.push((key(k), Field::Bool(*b))),
                    serde_json::Value::Number(n) => {
                        out.push((key(k), Field::Num(n.as_f64().unwrap_or(f64::NAN))))
                    }
                    serde_json::Value::String(s) => out.push((key(k), Field::Text(s.clone()))),
                    serde_json::Value::Array(_) => out.push((key(k), Field::Text(v.to_string()))),
                }
            }
        }
        _ => out.push((prefix.to_string(), Field::Text(v.to_string()))),
    }
}

fn read_csv(file: &str, text: &str, delimiter: u8) -> (Vec<Row>, Vec<BadRow>) {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    // Comment lines become blank lines (which the reader skips) so that line numbers stay
    // right; flexible, so that a row of the wrong length is reported here with its line.
    let text: String = text
        .split_inclusive('\n')
        .map(|l| {
            if l.trim_start().starts_with('#') {
                if l.ends_with('\n') {
                    "\n"
                } else {
                    ""
                }
            } else {
                l
            }
        })
        .collect();
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = match rdr.headers() {
        Ok(h) if h.iter().any(|c| !c.is_empty()) => h.clone(),
        Ok(_) => {
            bad.push(BadRow {
                file: file.to_string(),
                line: Some(1),
                error: "the first line must be a header naming the columns".into(),
            });
            return (rows, bad);
        }
        Err(e) => {
            bad.push(BadRow {
                file: file.to_string(),
                line: Some(1),
                error: format!("cannot read the header: {e}"),
            });
            return (rows, bad);
        }
    };
    for rec in rdr.records() {
        match rec {
            Ok(rec) => {
                // The reader's position is where it started reading, before any blank
                // lines it skipped: count from the record's first character instead.
                let start = rec.position().map_or(0, |p| p.byte() as usize);
                let skipped = text
                    .get(start..)
                    .map_or(0, |t| t.len() - t.trim_start_matches(['\r', '\n']).len());
                let line = line_of(&text, start + skipped);
                if rec.len() != headers.len() {
                    bad.push(BadRow {
                        file: file.to_string(),
                        line: Some(line),
                        error: format!(
                            "{} field(s) where the header has {}",
                            rec.len(),
                            headers.len()
                        ),
                    });
                    continue;
                }
                let fields = headers
                    .iter()
                    .zip(rec.iter())
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(h, v)| (h.to_string(), Field::Text(v.to_string())))
                    .collect();
                rows.push(Row {
                    file: file.to_string(),
                    line,
                    fields,
                });
            }
            Err(e) => {
                bad.push(BadRow {
                    file: file.to_string(),
                    line: e.position().map(|p| p.line() as usize),
                    error: format!("{e}; the rest of the file is not read"),
                });
                break;
            }
        }
    }
    if rows.is_empty() && bad.is_empty() {
        bad.push(BadRow {
            file: file.to_string(),
            line: None,
            error: "the file has a header but no rows".into(),
        });
    }
    (rows, bad)
}

fn param_names(def: &StudyDefinition) -> String {
    def.space
        .params()
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a domain allows, for messages.
pub fn describe(domain: &Domain) -> String {
    match domain {
        Domain::Float { low, high, log } => {
            format!(
                "a number in [{low}, {high}]{}",
                if *log { " (log scale)" } else { "" }
            )
        }
        Domain::Int {
            low, high, step, ..
        } if *step > 1 => format!("an integer in [{low}, {high}] in steps of {step}"),
        Domain::Int { low, high, .. } => format!("an integer in [{low}, {high}]"),
        Domain::IntValues { values } => format!(
            "one of {}",
            values
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Domain::Categorical { choices } => format!(
            "one of {}",
            choices
                .iter()
                .map(|c| match c {
                    ParamValue::Str(s) => format!("\"{s}\""),
                    c => c.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Converts a field to a value of `domain` (a CSV cell "16" is the integer 16, a categorical
/// choice matches by its text, case-insensitively when that is unambiguous).
pub fn param_value(domain: &Domain, field: &Field) -> Result<ParamValue, String> {
    let out_of_space = || format!("{field} is not {}", describe(domain));
    let number = || -> Option<f64> {
        match field {
            Field::Num(x) => Some(*x),
            Field::Text(s) => s.trim().parse::<f64>().ok(),
            Field::Bool(_) => None,
        }
    };
    let value = match domain {
        Domain::Float { .. } => ParamValue::Float(number().ok_or_else(out_of_space)?),
        Domain::Int { .. } | Domain::IntValues { .. } => {
            let x = number().ok_or_else(out_of_space)?;
            if x.fract() != 0.0 || x.abs() > 9.0e15 {
                return Err(out_of_space());
            }
            ParamValue::Int(x as i64)
        }
        Domain::Categorical { choices } => {
            let text = match field {
                Field::Text(s) => s.trim().to_string(),
                Field::Num(x) => x.to_string(),
                Field::Bool(b) => b.to_string(),
            };
            let same = |c: &ParamValue| match (c, field) {
                (ParamValue::Float(a), Field::Num(b)) => a == b,
                (ParamValue::Int(a), Field::Num(b)) => *a as f64 == *b,
                (ParamValue::Bool(a), Field::Bool(b)) => a == b,
                (c, _) => c.to_string() == text,
            };
            match choices.iter().find(|c| same(c)) {
                Some(c) => c.clone(),
                None => {
                    let folded: Vec<&ParamValue> = choices
                        .iter()
                        .filter(|c| c.to_string().eq_ignore_ascii_case(&text))
                        .collect();
                    match folded.as_slice() {
                        [c] => (*c).clone(),
                        _ => return Err(out_of_space()),
                    }
                }
            }
        }
    };
    if domain.contains(&value) {
        Ok(value)
    } else {
        Err(out_of_space())
    }
}

/// Checks a result against the study: every parameter in the space, every objective and
/// constraint metric present, every metric finite. Used by the CLI for each row and by the
/// daemon for each result it is sent.
pub fn check(
    def: &StudyDefinition,
    params: &Params,
    metrics: &BTreeMap<String, f64>,
) -> Result<(), String> {
    for k in params.keys() {
        if !def.space.params().iter().any(|p| &p.name == k) {
            return Err(format!(
                "'{k}' is not a parameter of study '{}' (parameters: {})",
                def.name,
                param_names(def)
            ));
        }
    }
    let active = def.space.active(params);
    for (p, active) in def.space.params().iter().zip(active) {
        match params.get(&p.name) {
            // A conditional parameter whose condition does not hold is absent, and must be.
            None if !active => {}
            Some(_) if !active => {
                return Err(def
                    .space
                    .check_params(params)
                    .err()
                    .unwrap_or_else(|| format!("{} must not be given", p.name)))
            }
            None => return Err(format!("lacks parameter {}", p.name)),
            Some(v) if !p.domain.contains(v) => {
                return Err(format!(
                    "{} = {v} is outside the space ({})",
                    p.name,
                    describe(&p.domain)
                ))
            }
            Some(_) => {}
        }
    }
    let missing: Vec<&str> = def
        .objectives
        .iter()
        .map(|o| o.metric.as_str())
        .chain(def.constraints.iter().map(|c| c.metric.as_str()))
        .filter(|m| !metrics.contains_key(*m))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "lacks {} (every objective and constraint metric is needed)",
            missing.join(", ")
        ));
    }
    if let Some((k, v)) = metrics.iter().find(|(_, v)| !v.is_finite()) {
        return Err(format!("metric {k} = {v} is not a finite number"));
    }
    Ok(())
}

/// The constraints a result violates, worded as for a trial that ran
/// (`eval_loss_delta = 0.2 (must be <= 0.05)`).
pub fn violations(def: &StudyDefinition, metrics: &BTreeMap<String, f64>) -> Vec<String> {
    def.constraints
        .iter()
        .filter(|c| !c.satisfied_by(metrics))
        .map(|c| {
            let bound = match (c.min, c.max) {
                (Some(lo), Some(hi)) => format!("in [{}, {}]", num(lo), num(hi)),
                (Some(lo), None) => format!(">= {}", num(lo)),
                (None, Some(hi)) => format!("<= {}", num(hi)),
                (None, None) => String::new(),
            };
            let v = metrics.get(&c.metric).copied().unwrap_or(f64::NAN);
            format!("{} = {} (must be {bound})", c.metric, num(v))
        })
        .collect()
}

/// What a column is, once mapped.
enum Target<'a> {
    Param(&'a quantune_strategies::Param),
    Metric(String),
    Info(String),
    Drop,
}

/// Maps one row to a result of the study, or says why it cannot be one.
pub fn convert(
    def: &StudyDefinition,
    mapping: &Mapping,
    row: &Row,
) -> Result<ImportedResult, String> {
    let params_by_name = |n: &str| def.space.params().iter().find(|p| p.name == n);
    let known_metric = |n: &str| {
        def.objectives.iter().any(|o| o.metric == n)
            || def.constraints.iter().any(|c| c.metric == n)
    };
    let target = |col: &str, field: &Field| -> Target<'_> {
        // A mapping names the column, or (for nested JSON) its last part: `config.lr` → `lr`.
        let mapped = mapping.columns.get(col).or_else(|| {
            col.rsplit_once('.')
                .and_then(|(_, last)| mapping.columns.get(last))
        });
        let name = match mapped {
            Some(n) if n.is_empty() => return Target::Drop,
            Some(n) => n.as_str(),
            None => col,
        };
        if let Some(p) = params_by_name(name) {
            return Target::Param(p);
        }
        if known_metric(name) {
            return Target::Metric(name.to_string());
        }
        // `params.x` / `metrics.y` (quantune's own trial objects), or any `outer.name`.
        if let Some((outer, last)) = name.rsplit_once('.') {
            if let Some(p) = params_by_name(last) {
                return Target::Param(p);
            }
            if known_metric(last) || outer.ends_with("metrics") {
                return Target::Metric(last.to_string());
            }
        }
        match field {
            Field::Num(_) => Target::Metric(name.to_string()),
            Field::Text(s) if s.trim().parse::<f64>().is_ok() => Target::Metric(name.to_string()),
            _ => Target::Info(name.to_string()),
        }
    };
    let mut params = Params::new();
    let mut metrics = BTreeMap::new();
    let mut info = BTreeMap::new();
    for (col, field) in &row.fields {
        match target(col, field) {
            Target::Drop => {}
            Target::Param(p) => {
                let v = param_value(&p.domain, field).map_err(|e| {
                    let via = if col == &p.name {
                        String::new()
                    } else {
                        format!(" (column {col})")
                    };
                    format!(
                        "{}{via}: {e} — the row is outside the study's space",
                        p.name
                    )
                })?;
                if let Some(old) = params.insert(p.name.clone(), v.clone()) {
                    if old != v {
                        return Err(format!(
                            "{} is given twice with different values ({old} and {v})",
                            p.name
                        ));
                    }
                }
            }
            Target::Metric(m) => {
                let v = match field {
                    Field::Num(x) => Some(*x),
                    Field::Text(s) => s.trim().parse::<f64>().ok(),
                    Field::Bool(_) => None,
                };
                match v {
                    Some(v) if v.is_finite() => {
                        metrics.insert(m, v);
                    }
                    _ if known_metric(&m) => {
                        return Err(format!("metric {m} = {field} is not a finite number"))
                    }
                    // An unknown column that is not a number is kept as text.
                    _ => {
                        info.insert(m, field_text(field));
                    }
                }
            }
            Target::Info(k) => {
                info.insert(k, field_text(field));
            }
        }
    }
    let given: Vec<String> = params.keys().cloned().collect();
    for (name, v) in &mapping.defaults {
        if !params.contains_key(name) {
            if let Some(p) = params_by_name(name) {
                let field = match v {
                    toml::Value::String(s) => Field::Text(s.clone()),
                    toml::Value::Integer(i) => Field::Num(*i as f64),
                    toml::Value::Float(f) => Field::Num(*f),
                    toml::Value::Boolean(b) => Field::Bool(*b),
                    _ => continue,
                };
                params.insert(name.clone(), param_value(&p.domain, &field)?);
            }
        }
    }
    // A default applies only where its parameter exists (a conditional one may not).
    let active = def.space.active(&params);
    for (p, active) in def.space.params().iter().zip(&active) {
        if !active && !given.contains(&p.name) {
            params.remove(&p.name);
        }
    }
    let active = def.space.active(&params);
    if let Some((p, _)) = def
        .space
        .params()
        .iter()
        .zip(&active)
        .find(|(p, a)| **a && !params.contains_key(&p.name))
    {
        return Err(format!(
            "lacks parameter {} (add a column, --map COLUMN={}, or a [defaults] value in a --mapping file)",
            p.name, p.name
        ));
    }
    check(def, &params, &metrics)?;
    Ok(ImportedResult {
        params,
        metrics,
        info,
        source: Some(format!("{}:{}", row.file, row.line)),
    })
}

fn field_text(f: &Field) -> String {
    match f {
        Field::Text(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> StudyDefinition {
        let toml = r#"
[study]
name = "r"
seed = 1
[[objective]]
metric = "latency_ms"
direction = "minimize"
[[constraint]]
metric = "eval_loss_delta"
max = 0.05
[space.learning_rate]
type = "float"
low = 1e-5
high = 1e-3
log = true
[space.batch_size]
type = "int"
values = [8, 16, 32]
[space.quantization]
type = "categorical"
choices = ["bf16", "int8", "int4"]
[budget]
max_trials = 10
[trial]
workload = "external"
"#;
        crate::model::study::parse(toml, "r.toml", Path::new("/"), None).unwrap()
    }

    fn row(fields: &[(&str, Field)]) -> Row {
        Row {
            file: "f.csv".into(),
            line: 3,
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    fn t(s: &str) -> Field {
        Field::Text(s.into())
    }

    #[test]
    fn maps_columns_and_converts_values() {
        let mut m = Mapping::default();
        m.add_args(&["lr=learning_rate".into(), "notes=".into()])
            .unwrap();
        let r = convert(
            &def(),
            &m,
            &row(&[
                ("lr", t("1e-4")),
                ("batch_size", t("16")),
                ("quantization", t("INT8")),
                ("latency_ms", t("12.5")),
                ("eval_loss_delta", t("0.01")),
                ("weight_mib", t("512")),
                ("host", t("gpu-box")),
                ("notes", t("ignored")),
            ]),
        )
        .unwrap();
        assert_eq!(r.params["learning_rate"], ParamValue::Float(1e-4));
        assert_eq!(r.params["batch_size"], ParamValue::Int(16));
        assert_eq!(r.params["quantization"], ParamValue::Str("int8".into()));
        assert_eq!(r.metrics["weight_mib"], 512.0);
        assert_eq!(r.info["host"], "gpu-box");
        assert!(!r.info.contains_key("notes"));
        assert_eq!(r.source.as_deref(), Some("f.csv:3"));
    }

    #[test]
    fn nested_quantune_trial_objects_map_by_last_segment() {
        let v = serde_json::json!({"trial": 3, "params": {"learning_rate": 1e-4, "batch_size": 8, "quantization": "bf16"},
            "metrics": {"latency_ms": 10.0, "eval_loss_delta": 0.0}});
        let mut fields = Vec::new();
        flatten("", &v, &mut fields);
        let r = convert(
            &def(),
            &Mapping::default(),
            &row(&fields
                .iter()
                .map(|(k, f)| (k.as_str(), f.clone()))
                .collect::<Vec<_>>()),
        )
        .unwrap();
        assert_eq!(r.params.len(), 3);
        assert_eq!(r.metrics["latency_ms"], 10.0);
    }

    #[test]
    fn out_of_space_and_missing_values_are_explained() {
        let m = Mapping::default();
        let base = [
            ("learning_rate", t("1e-4")),
            ("batch_size", t("16")),
            ("quantization", t("int8")),
            ("latency_ms", t("12.5")),
            ("eval_loss_delta", t("0.01")),
        ];
        let with = |k: &str, v: Field| {
            let mut f: Vec<(&str, Field)> = base.iter().filter(|(n, _)| *n != k).cloned().collect();
            f.push((k, v));
            row(&f)
        };
        let e = convert(&def(), &m, &with("learning_rate", t("0.5"))).unwrap_err();
        assert!(
            e.contains("learning_rate") && e.contains("outside the study's space"),
            "{e}"
        );
        let e = convert(&def(), &m, &with("batch_size", t("12"))).unwrap_err();
        assert!(e.contains("one of 8, 16, 32"), "{e}");
        let e = convert(&def(), &m, &with("quantization", t("fp8"))).unwrap_err();
        assert!(e.contains("\"bf16\""), "{e}");
        let e = convert(&def(), &m, &with("latency_ms", t("fast"))).unwrap_err();
        assert!(e.contains("latency_ms"), "{e}");
        let mut f: Vec<(&str, Field)> = base.to_vec();
        f.retain(|(k, _)| *k != "eval_loss_delta");
        let e = convert(&def(), &m, &row(&f)).unwrap_err();
        assert!(e.contains("lacks eval_loss_delta"), "{e}");
        f.retain(|(k, _)| *k != "batch_size");
        let e = convert(&def(), &m, &row(&f)).unwrap_err();
        assert!(e.contains("lacks parameter batch_size"), "{e}");
    }

    /// `def()` with group_size, which exists only for int4.
    fn conditional_def() -> StudyDefinition {
        let toml = r#"
[study]
name = "r"
seed = 1
[[objective]]
metric = "latency_ms"
direction = "minimize"
[space.quantization]
type = "categorical"
choices = ["bf16", "int8", "int4"]
[space.group_size]
type = "int"
values = [32, 64, 128]
when = { quantization = ["int4"] }
[budget]
max_trials = 10
[trial]
workload = "external"
"#;
        crate::model::study::parse(toml, "r.toml", Path::new("/"), None).unwrap()
    }

    #[test]
    fn conditional_parameters_are_absent_exactly_when_inactive() {
        let def = conditional_def();
        let m = Mapping::default();
        // bf16 without group_size (a CSV cell left empty never becomes a field): fine.
        let r = convert(
            &def,
            &m,
            &row(&[("quantization", t("bf16")), ("latency_ms", t("3"))]),
        )
        .unwrap();
        assert_eq!(r.params.len(), 1);
        // int4 needs it.
        let e = convert(
            &def,
            &m,
            &row(&[("quantization", t("int4")), ("latency_ms", t("3"))]),
        )
        .unwrap_err();
        assert!(e.starts_with("lacks parameter group_size"), "{e}");
        let r = convert(
            &def,
            &m,
            &row(&[
                ("quantization", t("int4")),
                ("group_size", t("64")),
                ("latency_ms", t("3")),
            ]),
        )
        .unwrap();
        assert_eq!(r.params["group_size"], ParamValue::Int(64));
        // bf16 with a group size is refused, saying why.
        let e = convert(
            &def,
            &m,
            &row(&[
                ("quantization", t("bf16")),
                ("group_size", t("64")),
                ("latency_ms", t("3")),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "group_size: only exists when quantization is \"int4\" (here quantization = \"bf16\"); remove it"
        );
        // A default for group_size applies only to int4 rows.
        let d: Mapping = toml::from_str("[defaults]\ngroup_size = 128\n").unwrap();
        d.check(&def).unwrap();
        let bf16 = convert(
            &def,
            &d,
            &row(&[("quantization", t("bf16")), ("latency_ms", t("3"))]),
        )
        .unwrap();
        assert!(!bf16.params.contains_key("group_size"));
        let int4 = convert(
            &def,
            &d,
            &row(&[("quantization", t("int4")), ("latency_ms", t("3"))]),
        )
        .unwrap();
        assert_eq!(int4.params["group_size"], ParamValue::Int(128));
    }

    #[test]
    fn defaults_fill_missing_parameters() {
        let m: Mapping = toml::from_str("[defaults]\nquantization = \"bf16\"\n").unwrap();
        m.check(&def()).unwrap();
        let r = convert(
            &def(),
            &m,
            &row(&[
                ("learning_rate", Field::Num(1e-4)),
                ("batch_size", Field::Num(8.0)),
                ("latency_ms", Field::Num(3.0)),
                ("eval_loss_delta", Field::Num(0.0)),
            ]),
        )
        .unwrap();
        assert_eq!(r.params["quantization"], ParamValue::Str("bf16".into()));
        let bad: Mapping = toml::from_str("[defaults]\nquantization = \"fp8\"\n").unwrap();
        assert!(bad.check(&def()).is_err());
    }

    #[test]
    fn json_rows_carry_their_line_numbers() {
        let text = "[\n  {\"a\": 1},\n  {\"a\": 2},\n  3\n]\n{\"b\": {\"c\": true}}\n";
        let (rows, bad) = read_json("x.json", text);
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 3, 6]);
        assert_eq!(rows[2].fields, vec![("b.c".to_string(), Field::Bool(true))]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, Some(4));
        let (_, bad) = read_json("y.json", "{\"a\": 1}\n{\"a\": \n");
        assert_eq!(bad.len(), 1, "{bad:?}");
    }

    #[test]
    fn csv_rows_carry_their_line_numbers() {
        let text = "a,b\n1,2\n# a comment\n3\n4,5\n";
        let (rows, bad) = read_csv("x.csv", text, b',');
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 5]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, Some(4));
        assert!(
            bad[0].error.contains("1 field(s) where the header has 2"),
            "{bad:?}"
        );
    }
}
