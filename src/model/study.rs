//! Study definitions (docs/STUDY.md): the TOML file a user writes, parsed strictly (unknown keys are
//! errors) and validated into a [`StudyDefinition`]. Every error names the file, the line where
//! it can be found, the key path, what is wrong and what is allowed.

use crate::model::duration::parse_duration;
use quantune_strategies::pruner::{self, PruneMetric, PrunerOptions};
use quantune_strategies::registry::{self, StrategyOptions};
use quantune_strategies::{
    Constraint, Direction, Domain, Objective, Param, ParamValue, SearchSpace,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A validated study, as the scheduler uses it and the store keeps it (as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyDefinition {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Labels for finding the study (`studies --tag x`); changed by `quantune tag`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A user's notes on the study; changed by `quantune note`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The seed every random choice of the study derives from.
    pub seed: u64,
    /// Whether the seed came from the file (else it was drawn at submission).
    pub seed_given: bool,
    /// What to optimize, in order (the first one sorts within a Pareto rank).
    pub objectives: Vec<Objective>,
    /// Bounds that make a trial infeasible when violated.
    pub constraints: Vec<Constraint>,
    /// The parameters.
    pub space: SearchSpace,
    /// How to choose trials.
    pub strategy: StrategySpec,
    /// How many trials, how many at once, when to give up.
    pub budget: Budget,
    /// How to run one trial.
    pub trial: TrialSpec,
    /// Early stopping.
    #[serde(default)]
    pub pruner: PrunerSpec,
    /// What categorical choices need of the hardware (`space.<p>.requires`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<crate::gpu::hardware::ChoiceRequirement>,
    /// The directory relative paths in the file are resolved against (the study file's own).
    pub base_dir: PathBuf,
}

/// `[strategy]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrategySpec {
    /// `random | sobol | grid | tpe | bayes`.
    pub kind: String,
    /// Space-filling trials before a model is used.
    pub initial_trials: u64,
    /// Values per float parameter for `grid`.
    pub grid_points: u64,
    /// `bayes`: the metric that measures what a trial cost (improvement per unit of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_metric: Option<String>,
    /// `bayes`: use the trials' measured spreads as known noise (`None`: the default, on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_noise: Option<bool>,
    /// `bayes`: input-warp linear-scale parameters (`None`: the default, off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_warp: Option<bool>,
    /// `bayes`: a trust region around the incumbent in the later trials (`None`: the
    /// default, on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_region: Option<bool>,
}

impl StrategySpec {
    /// The options handed to the strategy registry.
    pub fn options(&self) -> StrategyOptions {
        StrategyOptions {
            initial_trials: self.initial_trials,
            grid_points: self.grid_points,
            cost_metric: self.cost_metric.clone(),
            measured_noise: self.measured_noise,
            input_warp: self.input_warp,
            trust_region: self.trust_region,
        }
    }
}

/// `[budget]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Trials the study runs in all.
    pub max_trials: u64,
    /// Trials in flight at once.
    pub parallel: u64,
    /// The study fails after this many failed trials.
    pub max_failed: u64,
    /// Wall-clock limit in seconds from the study's creation.
    pub max_wall_secs: Option<f64>,
    /// Limit on GPU time (GPUs × seconds of every attempt, in hours).
    #[serde(default)]
    pub max_gpu_hours: Option<f64>,
    /// What happens to running trials when a budget runs out.
    #[serde(default)]
    pub on_exhausted: OnExhausted,
}

/// `budget.on_exhausted`: what running trials do when `max_wall` or `max_gpu_hours` is reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// They run to the end and are recorded.
    #[default]
    Finish,
    /// They are stopped and recorded as cancelled.
    Cancel,
}

/// `[pruner]`: early stopping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PrunerSpec {
    /// `none | median | asha`.
    pub kind: String,
    /// The intermediate metrics compared (default: the first objective).
    pub metrics: Vec<PruneMetric>,
    /// The pruners' numeric options.
    pub options: PrunerOptions,
    /// Quality gate: stop a trial whose report breaks a constraint by more than this.
    pub constraint_grace: Option<f64>,
}

/// Where a trial's work happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// The daemon starts `trial.command`.
    Command,
    /// A client runs trials itself through ask/report/tell.
    External,
    /// `builtin:<name>`: the daemon runs one of this binary's built-in workloads
    /// ([`crate::workload::BUILTINS`], e.g. `qat-bench`), configured by `[trial.<table>]`.
    Builtin(String),
}

impl Workload {
    /// The name a study file uses.
    pub fn name(&self) -> String {
        match self {
            Workload::Command => "command".into(),
            Workload::External => "external".into(),
            Workload::Builtin(n) => format!("builtin:{n}"),
        }
    }

    /// Reads a name as a study file (or a stored definition) writes it; any `builtin:<name>`
    /// reads, known or not (a study file is checked against the registry when parsed).
    pub fn from_name(name: &str) -> Option<Workload> {
        match name {
            "command" => Some(Workload::Command),
            "external" => Some(Workload::External),
            _ => name
                .strip_prefix("builtin:")
                .map(|n| Workload::Builtin(n.to_string())),
        }
    }

    /// The built-in workload this names, when it is one this binary has.
    pub fn builtin(&self) -> Option<&'static dyn crate::workload::Builtin> {
        match self {
            Workload::Builtin(n) => crate::workload::named(n),
            _ => None,
        }
    }

    /// Whether the daemon starts a process for each trial (else a client runs them).
    pub fn daemon_runs_trials(&self) -> bool {
        !matches!(self, Workload::External)
    }
}

impl Serialize for Workload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Workload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Workload, D::Error> {
        let name = String::deserialize(d)?;
        Workload::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown workload \"{name}\" (command, external or builtin:<name>)"
            ))
        })
    }
}

/// `[trial]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialSpec {
    /// What runs a trial.
    pub workload: Workload,
    /// argv template (`{param}`, `{trial}`, `{study}` substituted); empty for external.
    pub command: Vec<String>,
    /// Working directory of the trial process (absolute).
    pub working_dir: PathBuf,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// GPUs per trial (0 = CPU slot).
    pub gpus: u32,
    /// Free memory (bytes) each of the trial's GPUs must have before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory: Option<u64>,
    /// Per-attempt time limit in seconds.
    pub timeout_secs: f64,
    /// Re-runs of a failed trial.
    pub retries: u32,
    /// `local`, `slurm` or `ray` (`crate::executor::KINDS`).
    pub executor: String,
    /// A built-in workload's validated `[trial.<table>]`, under its table name (`qat` for
    /// `builtin:qat-bench`); empty for other workloads.
    #[serde(flatten)]
    pub settings: BTreeMap<String, serde_json::Value>,
}

impl TrialSpec {
    /// The built-in workload's stored settings (`[trial.<table>]`), when the study uses one.
    pub fn builtin_settings(&self) -> Option<&serde_json::Value> {
        let b = self.workload.builtin()?;
        self.settings.get(b.table())
    }
}

/// A study file problem, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyError {
    /// The file (or `<submitted>` for API input).
    pub file: String,
    /// 1-based line, where it could be found.
    pub line: Option<usize>,
    /// 1-based column, where known.
    pub column: Option<usize>,
    /// Key path (`space.learning_rate.low`), empty for syntax errors.
    pub path: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl StudyError {
    /// A problem with key `path` (`trial.command[0]`) of the study file `file` whose text is
    /// `source`, with the key's line and column.
    pub fn at(source: &str, file: &str, path: &str, message: String) -> StudyError {
        let (line, column) = locate(source, path);
        StudyError {
            file: file.to_string(),
            line,
            column,
            path: path.to_string(),
            message,
        }
    }
}

impl fmt::Display for StudyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for StudyError {}

// ---- raw file shape (serde, strict) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    study: RawStudy,
    #[serde(default)]
    objective: Vec<RawObjective>,
    #[serde(default)]
    constraint: Vec<RawConstraint>,
    #[serde(default)]
    space: BTreeMap<String, RawParam>,
    #[serde(default)]
    strategy: RawStrategy,
    budget: RawBudget,
    trial: RawTrial,
    #[serde(default)]
    pruner: RawPruner,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStudy {
    name: String,
    description: Option<String>,
    seed: Option<i64>,
    #[serde(default)]
    tags: Vec<String>,
    notes: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObjective {
    metric: String,
    direction: Direction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConstraint {
    metric: String,
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    #[serde(rename = "type")]
    kind: String,
    low: Option<Num>,
    high: Option<Num>,
    log: Option<bool>,
    step: Option<Num>,
    values: Option<Vec<i64>>,
    choices: Option<Vec<ParamValue>>,
    requires: Option<BTreeMap<String, RawRequirement>>,
    /// `when = { parent = [values…] }`: the parameter exists only when every parent has one
    /// of its listed values.
    when: Option<BTreeMap<String, Vec<ParamValue>>>,
}

/// `requires.<choice> = { compute_capability = "8.9" }` of a categorical parameter.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequirement {
    compute_capability: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    kind: Option<String>,
    initial_trials: Option<i64>,
    grid_points: Option<i64>,
    cost_metric: Option<String>,
    measured_noise: Option<bool>,
    input_warp: Option<bool>,
    trust_region: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    max_trials: i64,
    parallel: Option<i64>,
    max_failed: Option<i64>,
    max_wall: Option<crate::model::duration::DurationText>,
    max_gpu_hours: Option<f64>,
    on_exhausted: Option<String>,
}

/// `[trial]` as written. Its keys are checked by hand ([`check_trial_keys`]) rather than with
/// `deny_unknown_fields`, because the tables of built-in workloads (`[trial.qat]`) are found
/// by name in the registry.
#[derive(Deserialize)]
struct RawTrial {
    workload: Option<String>,
    command: Option<Vec<String>>,
    working_dir: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    gpus: Option<i64>,
    gpu_memory: Option<String>,
    timeout: Option<crate::model::duration::DurationText>,
    retries: Option<i64>,
    executor: Option<String>,
    /// Every other key: a built-in workload's table, or a mistake.
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

/// The keys `[trial]` itself has (besides built-in workloads' tables).
const TRIAL_KEYS: &[&str] = &[
    "workload",
    "command",
    "working_dir",
    "env",
    "gpus",
    "gpu_memory",
    "timeout",
    "retries",
    "executor",
];

/// Refuses a `[trial]` key that is neither one of [`TRIAL_KEYS`] nor a built-in workload's
/// table, naming the closest.
fn check_trial_keys(other: &BTreeMap<String, toml::Value>) -> Result<(), (String, String)> {
    for key in other.keys() {
        if crate::workload::with_table(key).is_some() {
            continue;
        }
        let mut allowed: Vec<&str> = TRIAL_KEYS.to_vec();
        allowed.extend(crate::workload::BUILTINS.iter().map(|b| b.table()));
        let hint = crate::model::suggest::did_you_mean(key, allowed.iter().copied());
        return Err((
            format!("trial.{key}"),
            format!(
                "unknown field `{key}`{hint}, expected one of `{}`",
                allowed.join("`, `")
            ),
        ));
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPruner {
    kind: Option<String>,
    metric: Option<String>,
    metrics: Option<Vec<String>>,
    direction: Option<Direction>,
    warmup_steps: Option<i64>,
    min_trials: Option<i64>,
    min_resource: Option<i64>,
    reduction_factor: Option<i64>,
    max_resource: Option<i64>,
    constraint_grace: Option<f64>,
}

/// Default per-attempt timeout when a study sets none.
const DEFAULT_TIMEOUT_SECS: f64 = 24.0 * 3600.0;

/// Names a command template may use besides the parameters.
const BUILTIN_PLACEHOLDERS: &[&str] = &["trial", "study"];

/// Tags a study may have at most.
pub const MAX_TAGS: usize = 16;

/// Longest note (study or trial), in bytes.
pub const MAX_NOTE: usize = 4096;

/// Checks a study name: 1 to 64 characters from `a-z`, `0-9`, `_` and `-`.
pub fn check_study_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        // Debug form: control characters in a hostile name are shown escaped, not printed.
        Err(format!(
            "{name:?} is not a valid study name: use 1 to 64 characters from a-z, 0-9, '_' and '-'"
        ))
    }
}

/// Checks a tag: 1 to 32 characters from letters, digits, `_`, `-`, `.` and `:`, starting
/// with a letter or digit (so that `+tag`/`-tag` on the command line are unambiguous).
pub fn check_tag(tag: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&tag.len())
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{tag:?} is not a valid tag: use 1 to 32 characters from letters, digits, '_', '-', '.' and ':', starting with a letter or digit"
        ))
    }
}

/// Checks a note: at most [`MAX_NOTE`] bytes, no control characters but newlines and tabs.
pub fn check_note(note: &str) -> Result<(), String> {
    if note.len() > MAX_NOTE {
        return Err(format!(
            "a note is at most {MAX_NOTE} bytes (got {})",
            note.len()
        ));
    }
    if let Some(c) = note
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return Err(format!(
            "a note may not contain the control character {c:?} (newlines and tabs are fine)"
        ));
    }
    Ok(())
}

/// Reads and validates a study file from disk.
pub fn load(path: &Path) -> Result<(StudyDefinition, String), StudyError> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| StudyError {
        file: file.clone(),
        line: None,
        column: None,
        path: String::new(),
        message: format!("cannot read the study file: {e}"),
    })?;
    let base = path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")));
    let def = parse(&source, &file, &base, None)?;
    Ok((def, source))
}

/// Parses and validates study TOML. `file` names it in errors; `base_dir` resolves relative
/// paths; `seed` is used when the file sets none (else one is drawn from the clock).
pub fn parse(
    source: &str,
    file: &str,
    base_dir: &Path,
    seed: Option<u64>,
) -> Result<StudyDefinition, StudyError> {
    let err_at = |path: &str, message: String| StudyError::at(source, file, path, message);
    let de = toml::Deserializer::parse(source).map_err(|e| syntax_error(source, file, &e))?;
    let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = match inner.span() {
            Some(span) => {
                let (l, c) = line_col(source, span.start);
                (Some(l), Some(c))
            }
            None => locate(source, &path),
        };
        let path = if path == "." { String::new() } else { path };
        let mut message = plain_message(inner.message().trim());
        if path.is_empty() {
            // A whole table missing at the top: say which, and what it needs.
            if let Some(table) = message
                .strip_prefix("missing field `")
                .and_then(|m| m.strip_suffix('`'))
            {
                message = match table {
                    "study" => "missing the [study] table (it needs name = \"…\")".into(),
                    "budget" => "missing the [budget] table (it needs max_trials = N)".into(),
                    "trial" => "missing the [trial] table (it needs command = [\"program\", …] or workload = \"external\")".into(),
                    other => format!("missing the [{other}] table"),
                };
            }
        }
        StudyError {
            file: file.to_string(),
            line,
            column,
            path,
            message,
        }
    })?;
    validate(raw, base_dir, seed).map_err(|(path, message)| err_at(&path, message))
}

fn validate(
    raw: RawFile,
    base_dir: &Path,
    seed: Option<u64>,
) -> Result<StudyDefinition, (String, String)> {
    let e = |p: &str, m: String| (p.to_string(), m);

    // [study]
    let name = raw.study.name;
    check_study_name(&name).map_err(|m| e("study.name", m))?;
    for (i, tag) in raw.study.tags.iter().enumerate() {
        check_tag(tag).map_err(|m| e(&format!("study.tags[{i}]"), m))?;
        if raw.study.tags[..i].contains(tag) {
            return Err(e(
                &format!("study.tags[{i}]"),
                format!("tag \"{tag}\" is listed twice"),
            ));
        }
    }
    if raw.study.tags.len() > MAX_TAGS {
        return Err(e(
            "study.tags",
            format!("at most {MAX_TAGS} tags (got {})", raw.study.tags.len()),
        ));
    }
    if let Some(n) = &raw.study.notes {
        check_note(n).map_err(|m| e("study.notes", m))?;
    }
    let (seed, seed_given) = match raw.study.seed {
        Some(s) if s < 0 => {
            return Err(e(
                "study.seed",
                format!("must be a non-negative integer (got {s})"),
            ))
        }
        Some(s) => (s as u64, true),
        None => (seed.unwrap_or_else(clock_seed), false),
    };

    // [[objective]]
    if raw.objective.is_empty() {
        return Err(e(
            "objective",
            "a study needs at least one [[objective]] table with `metric` and `direction = \"minimize\" | \"maximize\"`".into(),
        ));
    }
    if raw.objective.len() > 4 {
        return Err(e(
            "objective",
            format!(
                "at most 4 objectives are supported (got {})",
                raw.objective.len()
            ),
        ));
    }
    let mut objectives = Vec::new();
    for (i, o) in raw.objective.into_iter().enumerate() {
        let p = format!("objective[{i}].metric");
        check_metric_name(&o.metric).map_err(|m| e(&p, m))?;
        if objectives.iter().any(|x: &Objective| x.metric == o.metric) {
            return Err(e(&p, format!("metric \"{}\" is already an objective; each objective names a different metric", o.metric)));
        }
        objectives.push(Objective {
            metric: o.metric,
            direction: o.direction,
        });
    }

    // [[constraint]]
    let mut constraints = Vec::new();
    for (i, c) in raw.constraint.into_iter().enumerate() {
        let p = format!("constraint[{i}]");
        check_metric_name(&c.metric).map_err(|m| e(&format!("{p}.metric"), m))?;
        if c.min.is_none() && c.max.is_none() {
            return Err(e(
                &p,
                format!("constraint on \"{}\" needs `min`, `max` or both", c.metric),
            ));
        }
        for (k, v) in [("min", c.min), ("max", c.max)] {
            if let Some(v) = v {
                if !v.is_finite() {
                    return Err(e(
                        &format!("{p}.{k}"),
                        format!("must be a finite number (got {v})"),
                    ));
                }
            }
        }
        if let (Some(lo), Some(hi)) = (c.min, c.max) {
            if lo > hi {
                return Err(e(
                    &p,
                    format!("min must be <= max (got min = {lo}, max = {hi})"),
                ));
            }
        }
        constraints.push(Constraint {
            metric: c.metric,
            min: c.min,
            max: c.max,
        });
    }

    // [space.*]
    if raw.space.is_empty() {
        return Err(e(
            "space",
            "a study needs at least one parameter, e.g. [space.learning_rate] with type = \"float\", low, high".into(),
        ));
    }
    let mut params = Vec::new();
    let mut requires = Vec::new();
    let mut conditions = BTreeMap::new();
    for (pname, mut rp) in raw.space {
        let p = format!("space.{pname}");
        if pname.is_empty()
            || !pname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || BUILTIN_PLACEHOLDERS.contains(&pname.as_str())
        {
            return Err(e(
                &p,
                format!("\"{pname}\" is not a valid parameter name: use letters, digits and '_' (and not \"trial\" or \"study\", which are reserved)"),
            ));
        }
        let raw_requires = rp.requires.take();
        if let Some(when) = rp.when.take() {
            conditions.insert(
                pname.clone(),
                conditions_of(&p, when).map_err(|(k, m)| e(&k, m))?,
            );
        }
        let domain = param_domain(&p, rp)?;
        domain.validate().map_err(|m| e(&p, m))?;
        if let Some(raw_requires) = raw_requires {
            requires.extend(
                choice_requirements(&p, &pname, &domain, raw_requires)
                    .map_err(|(k, m)| e(&k, m))?,
            );
        }
        params.push(Param::new(pname, domain));
    }
    let space = SearchSpace::new(params)
        .map_err(|m| e("space", m))?
        .with_conditions(conditions)
        .map_err(|(k, m)| e(&format!("space.{k}"), m))?;

    // [strategy]
    let kind = raw
        .strategy
        .kind
        .unwrap_or_else(|| registry::DEFAULT_KIND.to_string());
    let initial_trials = non_negative("strategy.initial_trials", raw.strategy.initial_trials, 8)?;
    let grid_points = non_negative("strategy.grid_points", raw.strategy.grid_points, 5)?;
    let cost_metric = raw.strategy.cost_metric;
    if let Some(c) = &cost_metric {
        if c.trim().is_empty() {
            return Err(e(
                "strategy.cost_metric",
                "is empty; name a metric the trials report, e.g. \"train_s\", or remove the key"
                    .into(),
            ));
        }
        if objectives.iter().any(|o| &o.metric == c) {
            return Err(e(
                "strategy.cost_metric",
                format!(
                    "\"{c}\" is an objective; a cost metric measures what a trial costs (e.g. \"train_s\"), not what it optimizes"
                ),
            ));
        }
    }
    let strategy = StrategySpec {
        kind,
        initial_trials,
        grid_points,
        cost_metric,
        measured_noise: raw.strategy.measured_noise,
        input_warp: raw.strategy.input_warp,
        trust_region: raw.strategy.trust_region,
    };
    if strategy.kind == "grid" && strategy.grid_points < 2 {
        return Err(e(
            "strategy.grid_points",
            format!("must be >= 2 (got {})", strategy.grid_points),
        ));
    }
    registry::build(&strategy.kind, &strategy.options()).map_err(|m| {
        // The registry words its messages for use on their own ("strategy.kind = …"); the
        // key path is already in front here.
        for key in strategy.options().bayes_only_keys() {
            let field = format!("strategy.{key}");
            if let Some(rest) = m.strip_prefix(&format!("{field} ")) {
                return e(&field, rest.to_string());
            }
        }
        let m = m
            .replace("unknown strategy.kind = ", "unknown strategy ")
            .replace("strategy.kind = ", "");
        e("strategy.kind", m)
    })?;

    // [budget]
    if raw.budget.max_trials < 1 {
        return Err(e(
            "budget.max_trials",
            format!("must be at least 1 (got {})", raw.budget.max_trials),
        ));
    }
    let max_trials = raw.budget.max_trials as u64;
    let parallel = non_negative("budget.parallel", raw.budget.parallel, 1)?;
    if parallel < 1 {
        return Err(e("budget.parallel", "must be at least 1 (got 0)".into()));
    }
    let max_failed = non_negative("budget.max_failed", raw.budget.max_failed, 10)?;
    if max_failed < 1 {
        return Err(e("budget.max_failed", "must be at least 1 (got 0)".into()));
    }
    let max_wall_secs = match raw.budget.max_wall {
        Some(s) => Some(parse_duration(&s.0).map_err(|m| e("budget.max_wall", m))?),
        None => None,
    };
    let max_gpu_hours = match raw.budget.max_gpu_hours {
        Some(h) if !(h.is_finite() && h > 0.0) => {
            return Err(e(
                "budget.max_gpu_hours",
                format!("must be a positive number of hours (got {h})"),
            ))
        }
        h => h,
    };
    let on_exhausted = match raw.budget.on_exhausted.as_deref() {
        None | Some("finish") => OnExhausted::Finish,
        Some("cancel") => OnExhausted::Cancel,
        Some(o) => {
            return Err(e(
                "budget.on_exhausted",
                format!("unknown value \"{o}\"; allowed: \"finish\" (running trials complete) or \"cancel\""),
            ))
        }
    };
    let budget = Budget {
        max_trials,
        parallel,
        max_failed,
        max_wall_secs,
        max_gpu_hours,
        on_exhausted,
    };

    // [trial]
    let t = raw.trial;
    check_trial_keys(&t.other)?;
    let w = t.workload.as_deref().unwrap_or("command");
    let workload = match Workload::from_name(w) {
        Some(k) if !matches!(k, Workload::Builtin(_)) || k.builtin().is_some() => k,
        _ => {
            let mut allowed = vec!["command".to_string()];
            allowed.extend(
                crate::workload::BUILTINS
                    .iter()
                    .map(|b| format!("builtin:{}", b.name())),
            );
            allowed.push("external".into());
            return Err(e(
                "trial.workload",
                format!(
                    "unknown workload \"{w}\"{}; allowed: \"{}\"",
                    crate::model::suggest::did_you_mean(w, allowed.iter().map(String::as_str)),
                    allowed.join("\", \"")
                ),
            ));
        }
    };
    let command = t.command.unwrap_or_default();
    match &workload {
        Workload::Command => {
            if command.is_empty() {
                return Err(e(
                    "trial.command",
                    "workload = \"command\" needs command = [\"program\", \"arg\", …] (an argv list, never run through a shell)".into(),
                ));
            }
            if command[0].trim().is_empty() {
                return Err(e(
                    "trial.command",
                    "the program (first element) must not be empty".into(),
                ));
            }
            for (i, arg) in command.iter().enumerate() {
                check_placeholders(arg, &space)
                    .map_err(|m| e(&format!("trial.command[{i}]"), m))?;
                check_conditional_arg(&command, i, &space)
                    .map_err(|m| e(&format!("trial.command[{i}]"), m))?;
            }
        }
        Workload::External => {
            if !command.is_empty() {
                return Err(e(
                    "trial.command",
                    "workload = \"external\" runs no command (trials come through `quantune ask`/`tell`); remove `command`".into(),
                ));
            }
        }
        Workload::Builtin(_) => {
            if let (false, Some(b)) = (command.is_empty(), workload.builtin()) {
                return Err(e(
                    "trial.command",
                    format!(
                        "workload = \"builtin:{}\" runs {}; remove `command` (its knobs go in [trial.{}])",
                        b.name(),
                        b.about(),
                        b.table()
                    ),
                ));
            }
        }
    }
    let mut settings = BTreeMap::new();
    match workload.builtin() {
        Some(b) => {
            let mut other = t.other;
            let study = crate::workload::StudyContext {
                space: &space,
                gpus: t.gpus.map_or(0, |g| g.clamp(0, i64::from(u32::MAX)) as u32),
                seed,
            };
            let stored = b.validate(&study, other.remove(b.table()))?;
            let metric = |path: String, m: &str| {
                if b.metrics().contains(&m) {
                    Ok(())
                } else {
                    Err((
                        path,
                        format!(
                            "workload \"builtin:{}\" never reports \"{m}\"{}; it reports {}",
                            b.name(),
                            crate::model::suggest::did_you_mean(m, b.metrics().iter().copied()),
                            b.metrics().join(", ")
                        ),
                    ))
                }
            };
            for (i, o) in objectives.iter().enumerate() {
                metric(format!("objective[{i}].metric"), &o.metric)?;
            }
            for (i, c) in constraints.iter().enumerate() {
                metric(format!("constraint[{i}].metric"), &c.metric)?;
            }
            if let Some(c) = &strategy.cost_metric {
                metric("strategy.cost_metric".to_string(), c)?;
            }
            if let Some(table) = other.keys().next() {
                return Err(e(
                    &format!("trial.{table}"),
                    format!(
                        "[trial.{table}] configures another built-in workload than \"{}\"; remove it",
                        workload.name()
                    ),
                ));
            }
            settings.insert(b.table().to_string(), stored);
        }
        None => {
            if let Some(table) = t.other.keys().next() {
                let owner = crate::workload::with_table(table)
                    .map_or(String::new(), |b| format!("builtin:{}", b.name()));
                return Err(e(
                    &format!("trial.{table}"),
                    format!("[trial.{table}] configures workload = \"{owner}\"; remove it or set that workload"),
                ));
            }
        }
    }
    let working_dir = match t.working_dir {
        Some(d) if d.trim().is_empty() => {
            return Err(e("trial.working_dir", "must not be empty".into()))
        }
        Some(d) => base_dir.join(d),
        None => base_dir.to_path_buf(),
    };
    // Checked where the trial will start (the daemon's view of the file system, which under
    // systemd has its own /tmp): a missing directory would otherwise fail every trial.
    if workload == Workload::Command && !working_dir.is_dir() {
        let what = if working_dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(e(
            "trial.working_dir",
            format!(
                "{} {what}; trials start there (a daemon under systemd has a private /tmp and a read-only /home: use a directory such as /srv/…)",
                working_dir.display()
            ),
        ));
    }
    for k in t.env.keys() {
        let ok = !k.is_empty()
            && !k.as_bytes()[0].is_ascii_digit()
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(e(&format!("trial.env.{k}"), "is not a valid environment variable name (letters, digits, '_', not starting with a digit)".into()));
        }
        if k.starts_with("QUANTUNE_") || k == "CUDA_VISIBLE_DEVICES" {
            return Err(e(
                &format!("trial.env.{k}"),
                "is set by quantune for every trial (QUANTUNE_* and CUDA_VISIBLE_DEVICES are reserved); remove it".into(),
            ));
        }
    }
    let gpus = non_negative("trial.gpus", t.gpus, 0)?;
    if gpus > 64 {
        return Err(e(
            "trial.gpus",
            format!("must be between 0 and 64 (got {gpus})"),
        ));
    }
    let gpu_memory =
        match t.gpu_memory {
            None => None,
            Some(_) if gpus == 0 => return Err(e(
                "trial.gpu_memory",
                "needs trial.gpus >= 1 (it is the free memory each of the trial's GPUs must have)"
                    .into(),
            )),
            Some(m) => Some(parse_bytes(&m).map_err(|m| e("trial.gpu_memory", m))?),
        };
    let timeout_secs = match t.timeout {
        Some(s) => parse_duration(&s.0).map_err(|m| e("trial.timeout", m))?,
        None => DEFAULT_TIMEOUT_SECS,
    };
    let retries = non_negative("trial.retries", t.retries, 0)?;
    if retries > 100 {
        return Err(e(
            "trial.retries",
            format!("must be between 0 and 100 (got {retries})"),
        ));
    }
    let executor = t.executor.unwrap_or_else(|| "local".into());
    match crate::executor::KINDS.iter().find(|(k, _)| *k == executor) {
        Some((_, false)) if workload.builtin().is_some() => {
            return Err(e(
                "trial.executor",
                format!("workload = \"{}\" runs on this machine's CPU slots (it starts the daemon's own binary, which compute nodes may not have); remove executor or set it to \"local\"", workload.name()),
            ))
        }
        Some(_) => {}
        None => {
            let allowed: Vec<String> = crate::executor::KINDS
                .iter()
                .map(|(k, _)| format!("\"{k}\""))
                .collect();
            return Err(e(
                "trial.executor",
                format!("unknown executor \"{executor}\"; allowed: {}", allowed.join(", ")),
            ));
        }
    }

    // [pruner]
    let pruner = pruner_spec(raw.pruner, &objectives, !constraints.is_empty())?;

    Ok(StudyDefinition {
        name,
        description: raw.study.description,
        tags: raw.study.tags,
        notes: raw.study.notes.filter(|n| !n.trim().is_empty()),
        seed,
        seed_given,
        objectives,
        constraints,
        space,
        strategy,
        budget,
        trial: TrialSpec {
            workload,
            command,
            working_dir,
            env: t.env,
            gpus: gpus as u32,
            gpu_memory,
            timeout_secs,
            retries: retries as u32,
            executor,
            settings,
        },
        base_dir: base_dir.to_path_buf(),
        pruner,
        requires,
    })
}

/// Validates `[pruner]`: the kind, its options and which metrics it compares.
fn pruner_spec(
    raw: RawPruner,
    objectives: &[Objective],
    has_constraints: bool,
) -> Result<PrunerSpec, (String, String)> {
    let e = |k: &str, m: String| (format!("pruner.{k}"), m);
    let kind = raw.kind.unwrap_or_else(|| "none".into());
    let d = PrunerOptions::default();
    let opt =
        |k: &str, v: Option<i64>, default: u64| non_negative(&format!("pruner.{k}"), v, default);
    let options = PrunerOptions {
        warmup_steps: opt("warmup_steps", raw.warmup_steps, d.warmup_steps)?,
        min_trials: opt("min_trials", raw.min_trials, d.min_trials)?,
        min_resource: opt("min_resource", raw.min_resource, d.min_resource)?,
        reduction_factor: opt("reduction_factor", raw.reduction_factor, d.reduction_factor)?,
        max_resource: match raw.max_resource {
            Some(m) => Some(opt("max_resource", Some(m), 0)?),
            None => None,
        },
    };
    pruner::build(&kind, &options).map_err(|(k, m)| e(&k, m))?;
    let names = match (raw.metric, raw.metrics) {
        (Some(_), Some(_)) => {
            return Err(e(
                "metrics",
                "give either `metric = \"name\"` or `metrics = [...]`, not both".into(),
            ))
        }
        (Some(m), None) => vec![m],
        (None, Some(ms)) if ms.is_empty() => {
            return Err(e("metrics", "must name at least one metric".into()))
        }
        (None, Some(ms)) => ms,
        (None, None) => vec![objectives[0].metric.clone()],
    };
    if names.len() > 1 && kind == "median" {
        return Err(e(
            "metrics",
            "the median pruner compares one metric; name one with `metric`".into(),
        ));
    }
    if names.len() > 1 && raw.direction.is_some() {
        return Err(e("direction", "applies to a single `metric`; with several, each takes its objective's direction (else minimize)".into()));
    }
    let mut metrics = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        check_metric_name(&name).map_err(|m| e(&format!("metrics[{i}]"), m))?;
        let direction = raw
            .direction
            .or_else(|| {
                objectives
                    .iter()
                    .find(|o| o.metric == name)
                    .map(|o| o.direction)
            })
            .unwrap_or(Direction::Minimize);
        metrics.push(PruneMetric { name, direction });
    }
    if let Some(g) = raw.constraint_grace {
        if !has_constraints {
            return Err(e(
                "constraint_grace",
                "the quality gate needs at least one [[constraint]] to check".into(),
            ));
        }
        if !(g.is_finite() && g >= 0.0) {
            return Err(e(
                "constraint_grace",
                format!("must be a number >= 0 (got {g})"),
            ));
        }
    }
    Ok(PrunerSpec {
        kind,
        metrics,
        options,
        constraint_grace: raw.constraint_grace,
    })
}

fn param_domain(p: &str, rp: RawParam) -> Result<Domain, (String, String)> {
    let e = |k: &str, m: String| {
        (
            if k.is_empty() {
                p.to_string()
            } else {
                format!("{p}.{k}")
            },
            m,
        )
    };
    let forbid = |present: bool, key: &str, kind: &str| -> Result<(), (String, String)> {
        if present {
            Err(e(
                key,
                format!("is not a key of a type = \"{kind}\" parameter; remove it"),
            ))
        } else {
            Ok(())
        }
    };
    match rp.kind.as_str() {
        "float" => {
            forbid(rp.step.is_some(), "step", "float")?;
            forbid(rp.values.is_some(), "values", "float")?;
            forbid(rp.choices.is_some(), "choices", "float")?;
            let low = rp
                .low
                .ok_or_else(|| e("low", "a float parameter needs `low` and `high`".into()))?;
            let high = rp
                .high
                .ok_or_else(|| e("high", "a float parameter needs `low` and `high`".into()))?;
            Ok(Domain::Float {
                low: low.as_f64(),
                high: high.as_f64(),
                log: rp.log.unwrap_or(false),
            })
        }
        "int" => {
            forbid(rp.choices.is_some(), "choices", "int")?;
            if let Some(values) = rp.values {
                for (k, present) in [
                    ("low", rp.low.is_some()),
                    ("high", rp.high.is_some()),
                    ("step", rp.step.is_some()),
                    ("log", rp.log.is_some()),
                ] {
                    if present {
                        return Err(e(k, "an int parameter takes either `values = [...]` or `low`/`high` (with optional `step`, `log`), not both".into()));
                    }
                }
                return Ok(Domain::IntValues { values });
            }
            let int = |k: &str, v: Option<Num>| -> Result<Option<i64>, (String, String)> {
                match v {
                    None => Ok(None),
                    Some(Num::Int(i)) => Ok(Some(i)),
                    Some(Num::Float(f)) => Err(e(
                        k,
                        format!("must be an integer for an int parameter (got {f})"),
                    )),
                }
            };
            let low = int("low", rp.low)?.ok_or_else(|| {
                e(
                    "low",
                    "an int parameter needs `values = [...]` or `low` and `high`".into(),
                )
            })?;
            let high = int("high", rp.high)?.ok_or_else(|| {
                e(
                    "high",
                    "an int parameter needs `values = [...]` or `low` and `high`".into(),
                )
            })?;
            let step = int("step", rp.step)?.unwrap_or(1);
            Ok(Domain::Int {
                low,
                high,
                step,
                log: rp.log.unwrap_or(false),
            })
        }
        "categorical" => {
            for (k, present) in [
                ("low", rp.low.is_some()),
                ("high", rp.high.is_some()),
                ("step", rp.step.is_some()),
                ("log", rp.log.is_some()),
                ("values", rp.values.is_some()),
            ] {
                forbid(present, k, "categorical")?;
            }
            let choices = rp.choices.ok_or_else(|| {
                e(
                    "choices",
                    "a categorical parameter needs choices = [\"a\", \"b\", …]".into(),
                )
            })?;
            if let Some(i) = choices
                .iter()
                .position(|c| matches!(c, ParamValue::Str(s) if s.contains('\0')))
            {
                return Err(e(
                    "choices",
                    format!("choice {} contains a NUL byte; choices are text a trial receives in its argv and environment, which cannot hold one", i + 1),
                ));
            }
            Ok(Domain::Categorical { choices })
        }
        other => Err(e(
            "type",
            format!(
                "unknown parameter type \"{other}\"; allowed: \"float\", \"int\", \"categorical\""
            ),
        )),
    }
}

/// Why an enqueued trial's parameters could not be completed ([`complete_params`]).
#[derive(Debug, Clone, PartialEq)]
pub enum FillError {
    /// The given parameters are not a point of the space (an inactive conditional parameter
    /// given, a value outside its domain): a bad request.
    Bad(String),
    /// Parameters are missing and the strategy could not suggest values for them.
    NoSuggestion(String),
}

/// The parameters of an enqueued trial (`POST …/trials`, `quantune enqueue`), completed:
/// returned as they are when they already are a point of the space; otherwise the missing
/// active parameters come from `suggest()` (the study's strategy) and the suggestion's
/// parameters that the given values switch off are left out ([`SearchSpace::complete`]). A
/// given conditional parameter whose condition the given values break is refused before the
/// strategy is asked.
pub fn complete_params<E: fmt::Display>(
    space: &SearchSpace,
    given: quantune_strategies::Params,
    suggest: impl FnOnce() -> Result<quantune_strategies::Params, E>,
) -> Result<quantune_strategies::Params, FillError> {
    if space.contains(&given) {
        return Ok(given);
    }
    let active = space.active(&given);
    for (p, a) in space.params().iter().zip(active) {
        let decided = space
            .conditions_of(&p.name)
            .iter()
            .all(|c| given.contains_key(&c.parent));
        if !a && decided && given.contains_key(&p.name) {
            return Err(FillError::Bad(format!(
                "{}: {}; remove it",
                p.name,
                space.why_inactive(&p.name, &given)
            )));
        }
    }
    let suggested = suggest().map_err(|e| FillError::NoSuggestion(e.to_string()))?;
    space.complete(given, &suggested).map_err(FillError::Bad)
}

/// `space.<p>.when`: one condition per parent (checked against the space afterwards, by
/// [`SearchSpace::with_conditions`]).
fn conditions_of(
    p: &str,
    when: BTreeMap<String, Vec<ParamValue>>,
) -> Result<Vec<quantune_strategies::Condition>, (String, String)> {
    if when.is_empty() {
        return Err((
            format!("{p}.when"),
            "names no parent; write when = { <parameter> = [values…] } or remove it".into(),
        ));
    }
    Ok(when
        .into_iter()
        .map(|(parent, values)| quantune_strategies::Condition { parent, values })
        .collect())
}

/// `space.<p>.requires`: each key a choice of the categorical parameter, each value what it
/// needs.
fn choice_requirements(
    p: &str,
    name: &str,
    domain: &Domain,
    raw: BTreeMap<String, RawRequirement>,
) -> Result<Vec<crate::gpu::hardware::ChoiceRequirement>, (String, String)> {
    let Domain::Categorical { choices } = domain else {
        return Err((
            format!("{p}.requires"),
            "only a type = \"categorical\" parameter's choices can declare requirements; remove it"
                .into(),
        ));
    };
    let mut out = Vec::new();
    for (key, r) in raw {
        let path = format!("{p}.requires.{key}");
        let Some(choice) = choices.iter().find(|c| c.to_string() == key) else {
            return Err((
                path,
                format!(
                    "\"{key}\" is not one of the choices ({}); requires.<choice> names a choice",
                    choices
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let Some(cc) = r.compute_capability else {
            return Err((
                path,
                "needs compute_capability = \"major.minor\" (e.g. \"8.9\" for fp8)".into(),
            ));
        };
        let compute_capability = crate::gpu::hardware::Capability::parse(&cc)
            .map_err(|m| (format!("{path}.compute_capability"), m))?;
        out.push(crate::gpu::hardware::ChoiceRequirement {
            param: name.to_string(),
            choice: choice.clone(),
            compute_capability,
        });
    }
    Ok(out)
}

/// `"24GiB"`, `"512 MiB"`, `"80GB"`, `"1.5TiB"` or a plain number of bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024f64.powi(2),
        "GiB" => 1024f64.powi(3),
        "TiB" => 1024f64.powi(4),
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => {
            return Err(format!(
                "\"{s}\" is not a size; write a number with a unit: B, KiB, MiB, GiB, TiB (or kB, MB, GB, TB), e.g. \"20GiB\""
            ))
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("\"{s}\" is not a size; e.g. \"20GiB\""))?;
    let bytes = v * mult;
    if !(1.0..1e18).contains(&bytes) {
        return Err(format!("\"{s}\": must be at least 1 byte and below 1 EB"));
    }
    Ok(bytes.round() as u64)
}

fn non_negative(path: &str, v: Option<i64>, default: u64) -> Result<u64, (String, String)> {
    match v {
        None => Ok(default),
        Some(x) if x < 0 => Err((path.to_string(), format!("must be >= 0 (got {x})"))),
        Some(x) => Ok(x as u64),
    }
}

fn check_metric_name(m: &str) -> Result<(), String> {
    if m.is_empty()
        || m == "step"
        || m == "infeasible"
        || !m
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return Err(format!(
            "\"{m}\" is not a valid metric name: use letters, digits, '_', '.', '-' (\"step\" and \"infeasible\" are reserved)"
        ));
    }
    Ok(())
}

/// Checks every `{name}` in an argv element names a parameter, `trial` or `study`.
/// `{{` and `}}` stand for literal braces.
fn check_placeholders(arg: &str, space: &SearchSpace) -> Result<(), String> {
    for name in crate::executor::protocol::placeholders(arg)? {
        if !BUILTIN_PLACEHOLDERS.contains(&name.as_str())
            && !space.params().iter().any(|p| p.name == name)
        {
            let known: Vec<String> = space
                .params()
                .iter()
                .map(|p| format!("{{{}}}", p.name))
                .chain(BUILTIN_PLACEHOLDERS.iter().map(|b| format!("{{{b}}}")))
                .collect();
            return Err(format!(
                "{{{name}}} names no parameter; known: {}",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// A command element naming a conditional parameter is left out of trials that lack it
/// (`executor::protocol::argv`); a lone `"{group_size}"` right after a `"--group-size"` flag
/// would leave the flag without its value, so that spelling is refused.
fn check_conditional_arg(command: &[String], i: usize, space: &SearchSpace) -> Result<(), String> {
    let names = crate::executor::protocol::placeholders(&command[i])?;
    let Some(cond) = names.iter().find(|n| !space.conditions_of(n).is_empty()) else {
        return Ok(());
    };
    let Some(prev) = i.checked_sub(1).map(|j| &command[j]) else {
        return Ok(());
    };
    let prev_is_flag = prev.starts_with('-')
        && crate::executor::protocol::placeholders(prev).is_ok_and(|p| p.is_empty());
    if prev_is_flag && !command[i].starts_with('-') {
        return Err(format!(
            "\"{}\" names the conditional parameter {cond}, and trials without {cond} leave this element out, but the flag \"{prev}\" before it would stay; write \"{prev}={{{cond}}}\" as one element",
            command[i]
        ));
    }
    Ok(())
}

/// Rewords serde's type names and untagged-enum messages for people who write TOML.
pub(crate) fn plain_message(m: &str) -> String {
    if m.contains("untagged enum Num") {
        return "must be a number".into();
    }
    if m.contains("untagged enum ParamValue") {
        return "each choice must be a string, an integer, a float or a boolean".into();
    }
    if m.contains("as i128, expected i64") {
        return "is out of range: integers must be between -9223372036854775808 and 9223372036854775807".into();
    }
    if m == "wanted string or table" {
        return "invalid type: expected a string".into();
    }
    m.replace("expected i64", "expected an integer")
        .replace("expected f64", "expected a number")
        .replace("expected a sequence", "expected an array")
}

fn clock_seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_nanos() as u64 ^ u64::from(std::process::id())
}

fn syntax_error(source: &str, file: &str, e: &toml::de::Error) -> StudyError {
    let (line, column) = match e.span() {
        Some(s) => {
            let (l, c) = line_col(source, s.start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    let mut message = format!("TOML syntax error: {}", e.message().trim());
    if e.message().trim() == "duplicate key" {
        if let Some(key) = e.span().and_then(|s| source.get(s)) {
            message = format!("TOML syntax error: duplicate key `{}`", key.trim());
        }
    }
    StudyError {
        file: file.to_string(),
        line,
        column,
        path: String::new(),
        message,
    }
}

/// 1-based line and column of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Finds the line (and column) of a key path like `space.lr.low` or `objective[1].metric` in
/// the TOML source, using toml's spanned parse. Falls back to the deepest key found.
fn locate(source: &str, path: &str) -> (Option<usize>, Option<usize>) {
    use toml::de::{DeTable, DeValue};
    let Ok(root) = DeTable::parse(source) else {
        return (None, None);
    };
    let mut table = root.get_ref();
    let mut found: Option<usize> = None;
    let mut segments: Vec<(String, Option<usize>)> = Vec::new();
    for seg in path.split('.') {
        if seg.is_empty() {
            continue;
        }
        match seg.find('[') {
            Some(i) => {
                let idx = seg[i + 1..].trim_end_matches(']').parse().ok();
                segments.push((seg[..i].to_string(), idx));
            }
            None => segments.push((seg.to_string(), None)),
        }
    }
    let mut iter = segments.into_iter().peekable();
    while let Some((key, idx)) = iter.next() {
        let Some((k, v)) = table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key.as_str())
        else {
            break;
        };
        found = Some(k.span().start);
        let value = match (v.get_ref(), idx) {
            (DeValue::Array(a), Some(i)) => match a.get(i) {
                Some(item) => {
                    found = Some(item.span().start);
                    item.get_ref()
                }
                None => break,
            },
            (other, _) => other,
        };
        match value {
            DeValue::Table(t) if iter.peek().is_some() => table = t,
            _ => break,
        }
    }
    match found {
        Some(off) => {
            let (l, c) = line_col(source, off);
            (Some(l), Some(c))
        }
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[study]
name = "demo"
seed = 7

[[objective]]
metric = "latency_ms"
direction = "minimize"

[space.learning_rate]
type = "float"
low = 1e-5
high = 1e-3
log = true

[space.quantization]
type = "categorical"
choices = ["bf16", "int8"]

[budget]
max_trials = 4

[trial]
command = ["python3", "t.py", "--lr", "{learning_rate}"]
"#;

    fn parse_str(s: &str) -> Result<StudyDefinition, StudyError> {
        parse(s, "s.toml", Path::new("/tmp"), Some(1))
    }

    const CONDITIONAL: &str = r#"
[study]
name = "cond"
seed = 7

[[objective]]
metric = "loss"
direction = "minimize"

[space.quantization]
type = "categorical"
choices = ["bf16", "int8", "int4", "int8-int4"]

[space.group_size]
type = "int"
values = [32, 64, 128]
when = { quantization = ["int4", "int8-int4"] }

[space.lr]
type = "float"
low = 1e-5
high = 1e-2
log = true

[budget]
max_trials = 4

[trial]
command = ["python", "train.py", "--group-size={group_size}"]
"#;

    #[test]
    fn parses_conditions_and_locates_their_errors() {
        let d = parse_str(CONDITIONAL).unwrap();
        assert_eq!(
            d.space.conditions_of("group_size"),
            [quantune_strategies::Condition {
                parent: "quantization".into(),
                values: vec![
                    ParamValue::Str("int4".into()),
                    ParamValue::Str("int8-int4".into())
                ],
            }]
        );
        // The definition (as the store keeps it) round-trips with its conditions.
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<StudyDefinition>(&json).unwrap(), d);
        let bad = CONDITIONAL.replace(r#"["int4", "int8-int4"]"#, r#"["int4", "int5"]"#);
        let err = parse_str(&bad).unwrap_err();
        assert_eq!(err.path, "space.group_size.when.quantization");
        assert_eq!(err.line, Some(17));
        assert!(
            err.message
                .contains("\"int5\" is not a value of \"quantization\""),
            "{err}"
        );
        let bad = CONDITIONAL.replace("when = { quantization", "when = { quant");
        let err = parse_str(&bad).unwrap_err();
        assert_eq!(
            (err.path.as_str(), err.line),
            ("space.group_size.when.quant", Some(17))
        );
        let bad = CONDITIONAL.replace("when = { quantization = [", "when = { lr = [1e-3, ");
        let err = parse_str(&bad).unwrap_err();
        assert!(
            err.message.contains("has a range, not listed values"),
            "{err}"
        );
        let bad = CONDITIONAL.replace("when = {", "whenever = {");
        let err = parse_str(&bad).unwrap_err();
        assert!(err.to_string().contains("whenever"), "{err}");
    }

    #[test]
    fn complete_params_fills_and_refuses() {
        let d = parse_str(CONDITIONAL).unwrap();
        let p = |pairs: &[(&str, ParamValue)]| -> quantune_strategies::Params {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        let s = |x: &str| ParamValue::Str(x.into());
        let lr = ("lr", ParamValue::Float(1e-3));
        // Complete already: the strategy is not asked.
        let given = p(&[("quantization", s("bf16")), lr.clone()]);
        let got = complete_params(&d.space, given.clone(), || -> Result<_, String> {
            panic!("asked")
        })
        .unwrap();
        assert_eq!(got, given);
        // A given group size for bf16 is refused before the strategy is asked.
        let err = complete_params(
            &d.space,
            p(&[
                ("quantization", s("bf16")),
                ("group_size", ParamValue::Int(64)),
            ]),
            || -> Result<_, String> { panic!("asked") },
        )
        .unwrap_err();
        assert_eq!(
            err,
            FillError::Bad("group_size: only exists when quantization is \"int4\" or \"int8-int4\" (here quantization = \"bf16\"); remove it".into())
        );
        // int4 given, the suggestion had bf16: group size gets a value, lr the suggestion's.
        let got = complete_params(&d.space, p(&[("quantization", s("int4"))]), || {
            Ok::<_, String>(p(&[
                ("quantization", s("bf16")),
                ("lr", ParamValue::Float(2e-4)),
            ]))
        })
        .unwrap();
        assert!(d.space.contains(&got), "{got:?}");
        assert_eq!(got["lr"], ParamValue::Float(2e-4));
        let err = complete_params(&d.space, p(&[("quantization", s("int4"))]), || {
            Err::<quantune_strategies::Params, _>("exhausted")
        })
        .unwrap_err();
        assert_eq!(err, FillError::NoSuggestion("exhausted".into()));
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("20GiB"), Ok(20 << 30));
        assert_eq!(parse_bytes("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5TiB"), Ok(3 << 39));
        assert_eq!(parse_bytes("80GB"), Ok(80_000_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        for bad in ["", "GiB", "20 gigs", "-1GiB", "0", "1e30"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_a_good_file() {
        let d = parse_str(GOOD).unwrap();
        assert_eq!(d.name, "demo");
        assert_eq!(d.seed, 7);
        assert_eq!(d.space.dim(), 2);
        assert_eq!(d.strategy.kind, "bayes");
        assert_eq!(d.trial.working_dir, PathBuf::from("/tmp"));
    }

    #[test]
    fn log_float_with_zero_low_names_key_and_line() {
        let s = GOOD.replace("low = 1e-5", "low = 0");
        let err = parse_str(&s).unwrap_err();
        assert_eq!(err.path, "space.learning_rate");
        assert!(err.message.contains("low > 0"), "{}", err.message);
        // The `[space.learning_rate]` header.
        assert_eq!(err.line, Some(10));
    }

    #[test]
    fn unknown_key_is_an_error_with_its_path() {
        let s = GOOD.replace("seed = 7", "seed = 7\ncolour = \"red\"");
        let err = parse_str(&s).unwrap_err();
        assert_eq!(err.path, "study.colour");
        assert!(err.message.contains("colour"), "{err}");
        assert_eq!(err.line, Some(5));
    }

    #[test]
    fn unknown_placeholder_lists_known_names() {
        let s = GOOD.replace("{learning_rate}", "{lr}");
        let err = parse_str(&s).unwrap_err();
        assert_eq!(err.path, "trial.command[3]");
        assert!(err.message.contains("{learning_rate}"), "{err}");
    }

    #[test]
    fn messages_speak_toml_not_rust() {
        let err = parse_str(&GOOD.replace("max_trials = 4", "max_trials = \"ten\"")).unwrap_err();
        assert_eq!(err.path, "budget.max_trials");
        assert!(err.message.ends_with("expected an integer"), "{err}");
        let err = parse_str(&GOOD.replace("low = 1e-5", "low = \"small\"")).unwrap_err();
        assert_eq!(err.path, "space.learning_rate.low");
        assert_eq!(err.message, "must be a number");
        let err = parse_str(&GOOD.replace("[budget]\nmax_trials = 4\n", "")).unwrap_err();
        assert!(
            err.message.starts_with("missing the [budget] table"),
            "{err}"
        );
        let err = parse_str(&GOOD.replace("seed = 7", "seed = 7\nseed = 8")).unwrap_err();
        assert_eq!(err.line, Some(5));
        assert!(err.message.ends_with("duplicate key `seed`"), "{err}");
    }

    #[test]
    fn strategy_errors_name_the_right_key() {
        let err = parse_str(&format!(
            "{GOOD}\n[strategy]\nkind = \"grid\"\ngrid_points = 1\n"
        ))
        .unwrap_err();
        assert_eq!(err.path, "strategy.grid_points");
        let err = parse_str(&format!("{GOOD}\n[strategy]\nkind = \"annealing\"\n")).unwrap_err();
        assert_eq!(err.path, "strategy.kind");
        assert!(
            err.message.starts_with("unknown strategy \"annealing\""),
            "{err}"
        );
        for kind in ["bayes", "tpe"] {
            let d = parse_str(&format!("{GOOD}\n[strategy]\nkind = \"{kind}\"\n")).unwrap();
            assert_eq!(d.strategy.kind, kind);
        }
    }

    #[test]
    fn a_cost_metric_is_checked_and_reaches_the_strategy() {
        let with = |extra: &str| parse_str(&format!("{GOOD}\n[strategy]\n{extra}\n"));
        let d = with("cost_metric = \"train_s\"").unwrap();
        assert_eq!(d.strategy.cost_metric.as_deref(), Some("train_s"));
        assert_eq!(d.strategy.options().cost_metric.as_deref(), Some("train_s"));
        // Stored definitions without the key still load, and one without it stores none.
        let json = serde_json::to_value(parse_str(GOOD).unwrap()).unwrap();
        assert!(json["strategy"].get("cost_metric").is_none(), "{json}");
        let back: StudyDefinition = serde_json::from_value(json).unwrap();
        assert_eq!(back.strategy.cost_metric, None);
        for (extra, message) in [
            ("cost_metric = \"\"", "is empty"),
            (
                "cost_metric = \"latency_ms\"",
                "\"latency_ms\" is an objective",
            ),
            (
                "kind = \"tpe\"\ncost_metric = \"train_s\"",
                "is used only by strategy.kind = \"bayes\"",
            ),
            ("cost_metric = 3", "invalid type"),
        ] {
            let err = with(extra).unwrap_err();
            assert_eq!(err.path, "strategy.cost_metric", "{extra}: {err}");
            assert!(err.message.contains(message), "{extra}: {err}");
        }
    }

    #[test]
    fn the_bayes_switches_reach_the_strategy_and_are_checked() {
        let with = |extra: &str| parse_str(&format!("{GOOD}\n[strategy]\n{extra}\n"));
        let d = with("measured_noise = false\ninput_warp = true\ntrust_region = true").unwrap();
        let o = d.strategy.options();
        assert_eq!(
            (o.measured_noise, o.input_warp, o.trust_region),
            (Some(false), Some(true), Some(true))
        );
        // Unset, they stay unset (the strategy's defaults) and are not stored.
        let json = serde_json::to_value(parse_str(GOOD).unwrap()).unwrap();
        for key in ["measured_noise", "input_warp", "trust_region"] {
            assert!(json["strategy"].get(key).is_none(), "{json}");
        }
        let back: StudyDefinition = serde_json::from_value(json).unwrap();
        assert_eq!(
            back.strategy.options().bayes_only_keys(),
            Vec::<&str>::new()
        );
        for (extra, path, message) in [
            ("input_warp = 1", "strategy.input_warp", "invalid type"),
            (
                "kind = \"tpe\"\ntrust_region = true",
                "strategy.trust_region",
                "is used only by strategy.kind = \"bayes\"",
            ),
            (
                "kind = \"random\"\nmeasured_noise = false",
                "strategy.measured_noise",
                "remove it or use bayes",
            ),
        ] {
            let err = with(extra).unwrap_err();
            assert_eq!(err.path, path, "{extra}: {err}");
            assert!(err.message.contains(message), "{extra}: {err}");
        }
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = parse_str("[study\nname=1").unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(err.to_string().starts_with("s.toml:1:"), "{err}");
    }
}
