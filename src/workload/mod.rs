//! Built-in workloads: trials the `quantune` binary runs itself, so that a study works with no
//! Python, no GPU and no script of the user's (`trial.workload = "builtin:…"`).
//!
//! A built-in workload keeps the one executor path: the daemon starts the same binary as a
//! child process with a hidden subcommand (`quantune qat-bench …`), and that process speaks the
//! ordinary trial protocol (docs/TRIALS.md) — it reads its parameters from argv and appends JSON lines
//! to `$QUANTUNE_METRICS_FILE`. Timeouts, cancellation, retries and the stderr tail therefore
//! behave exactly as for a user's command.
//!
//! [`BUILTINS`] is the one list of them. A workload implements [`Builtin`]: its name (which is
//! also its hidden subcommand), the `[trial.<table>]` its settings are written in, the metrics
//! it reports, how a study using it is checked, the argv of one trial, and the subcommand's
//! entry point. The study parser, the local executor and `main` find it here by name, so adding
//! one is its own module plus a line in [`BUILTINS`] (and its page in docs/STUDY.md).

pub mod qat;

use quantune_strategies::{Params, SearchSpace};
use std::ffi::OsString;
use std::path::Path;

/// What a built-in workload checks a study against.
pub struct StudyContext<'a> {
    /// The study's search space.
    pub space: &'a SearchSpace,
    /// GPUs per trial the study asks for.
    pub gpus: u32,
    /// The study's seed.
    pub seed: u64,
}

/// A problem with a study, as (key path, message): the parser turns it into file:line.
pub type Problem = (String, String);

/// One built-in workload (see the module doc).
pub trait Builtin: Sync {
    /// Its name: `trial.workload = "builtin:<name>"`, and the hidden subcommand
    /// `quantune <name> …` a trial runs.
    fn name(&self) -> &'static str;
    /// What it runs, for messages ("quantune's own QAT benchmark").
    fn about(&self) -> &'static str;
    /// The table its settings are written in: `[trial.<table>]`.
    fn table(&self) -> &'static str;
    /// The numeric metrics a trial reports; objectives, constraints and the pruner may name
    /// only these.
    fn metrics(&self) -> &'static [&'static str];
    /// Checks a study that uses the workload (its space, its GPUs) and validates
    /// `[trial.<table>]` (`None` when absent), returning the settings as they are stored with
    /// the study. Problems name their key (`space.batch_size`, `trial.qat.steps`).
    fn validate(
        &self,
        study: &StudyContext<'_>,
        settings: Option<toml::Value>,
    ) -> Result<serde_json::Value, Problem>;
    /// The argv of one trial with `params`, given the stored `settings`: this very binary
    /// (resolved on the daemon's side) and the subcommand. `cache_dir` is the state
    /// directory's cache.
    fn argv(
        &self,
        settings: &serde_json::Value,
        params: &Params,
        cache_dir: &Path,
    ) -> Result<Vec<String>, String>;
    /// `quantune <name> ARGS…` (`args` without the program name and subcommand); returns the
    /// exit code. Runs before any runtime or logging is set up.
    fn main(&self, args: Vec<OsString>) -> i32;
}

/// Every built-in workload.
pub const BUILTINS: &[&dyn Builtin] = &[&qat::QatBench];

/// The built-in workload called `name` (without `builtin:`).
pub fn named(name: &str) -> Option<&'static dyn Builtin> {
    BUILTINS.iter().copied().find(|b| b.name() == name)
}

/// The built-in workload whose settings table is `[trial.<table>]`.
pub fn with_table(table: &str) -> Option<&'static dyn Builtin> {
    BUILTINS.iter().copied().find(|b| b.table() == table)
}

/// When `args` (the whole command line) starts a built-in workload's subcommand, runs it and
/// returns its exit code.
pub fn dispatch(args: &[OsString]) -> Option<i32> {
    let b = named(args.get(1)?.to_str()?)?;
    Some(b.main(args[2..].to_vec()))
}

/// Deserializes a workload's settings table (`None`: absent, read as empty) into its raw
/// shape; a problem names the key under `[trial.<table>]`.
pub fn raw_settings<T: serde::de::DeserializeOwned>(
    table: &str,
    settings: Option<toml::Value>,
) -> Result<T, Problem> {
    let value = settings.unwrap_or_else(|| toml::Value::Table(Default::default()));
    if !value.is_table() {
        return Err((
            format!("trial.{table}"),
            format!(
                "must be a table: write its keys under a [trial.{table}] header (got {} {value})",
                value.type_str()
            ),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            format!("trial.{table}")
        } else {
            format!("trial.{table}.{path}")
        };
        // Worded as the rest of the study file's errors are ("expected an integer").
        let message = crate::model::study::plain_message(e.into_inner().to_string().trim());
        (path, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tables_are_distinct_and_clear_of_cli_commands() {
        let cli = crate::client::cli::command();
        for (i, a) in BUILTINS.iter().enumerate() {
            assert!(
                cli.find_subcommand(a.name()).is_none(),
                "builtin:{} would shadow `quantune {}`",
                a.name(),
                a.name()
            );
            for b in &BUILTINS[i + 1..] {
                assert_ne!(a.name(), b.name());
                assert_ne!(a.table(), b.table());
            }
            assert!(named(a.name()).is_some() && with_table(a.table()).is_some());
        }
    }

    #[test]
    fn a_settings_problem_names_its_key() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Raw {
            steps: Option<i64>,
        }
        let bad: toml::Value = toml::from_str("steps = \"many\"").unwrap();
        let (path, msg) = raw_settings::<Raw>("t", Some(bad)).unwrap_err();
        assert_eq!(path, "trial.t.steps");
        assert!(msg.contains("invalid type"), "{msg}");
        assert!(msg.contains("expected an integer"), "{msg}");
        let typo: toml::Value = toml::from_str("stepz = 1").unwrap();
        let (path, msg) = raw_settings::<Raw>("t", Some(typo)).unwrap_err();
        assert!(path.starts_with("trial.t"), "{path}");
        assert!(msg.contains("unknown field `stepz`"), "{msg}");
        assert!(raw_settings::<Raw>("t", None).unwrap().steps.is_none());
        let (path, msg) = raw_settings::<Raw>("t", Some(toml::Value::Integer(5))).unwrap_err();
        assert_eq!(path, "trial.t");
        assert!(
            msg.contains("must be a table") && !msg.contains("Raw"),
            "{msg}"
        );
    }
}
