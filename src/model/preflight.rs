//! Checks of a valid study against the machine that will run it, before any trial does:
//! whether the program of `trial.command` can be started where trials start (PATH, or a path
//! relative to `trial.working_dir`, as the executor resolves it), and pruner metrics that no
//! objective or constraint names (a typo there silently prunes nothing). `quantune validate`
//! runs them with its own PATH, the daemon with its own on `submit` and `run`.

use crate::model::study::{StudyDefinition, StudyError, Workload};
use crate::model::suggest::did_you_mean;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Checks that `trial.command`'s program exists and is executable where this process would
/// start it. `source` and `file` locate the error. For an executor that runs trials on other
/// machines (Slurm, Ray) a problem is only a warning (their PATH is not this one): `Ok(Some)`.
pub fn check_program(
    def: &StudyDefinition,
    source: &str,
    file: &str,
) -> Result<Option<String>, StudyError> {
    let Some(program) = def.trial.command.first() else {
        return Ok(None);
    };
    if def.trial.workload != Workload::Command || program.contains('{') {
        return Ok(None);
    }
    let path = search_path(&def.trial.env);
    let Err(problem) = find_program(program, &def.trial.working_dir, &path) else {
        return Ok(None);
    };
    if def.trial.executor != "local" {
        return Ok(Some(format!(
            "trial.command[0]: on this machine, {problem} (trial.executor = \"{}\" starts it on others, whose PATH may differ)",
            def.trial.executor
        )));
    }
    Err(StudyError::at(source, file, "trial.command[0]", problem))
}

/// The PATH a trial's program is looked up on: the one in its `trial.env`, else this
/// process's.
pub fn search_path(env: &std::collections::BTreeMap<String, String>) -> std::ffi::OsString {
    match env.get("PATH") {
        Some(p) => p.into(),
        None => std::env::var_os("PATH").unwrap_or_default(),
    }
}

/// Where `program` is found: a name with a `/` relative to `working_dir` (absolute as is), a
/// bare name on `path` (relative entries relative to `working_dir`, as `execvp` after the
/// `chdir` does). The error says what is wrong and, for a bare name, the closest name on PATH.
/// The local executor checks each trial's program with it before the spawn.
pub fn find_program(program: &str, working_dir: &Path, path: &OsStr) -> Result<PathBuf, String> {
    if program.contains('/') {
        let p = working_dir.join(program);
        return match executable(&p) {
            Ok(()) => Ok(p),
            Err(why) if program.starts_with('/') => Err(format!("\"{program}\" {why}")),
            Err(why) => Err(format!(
                "\"{program}\" {why} (looked for {}, relative to trial.working_dir)",
                p.display()
            )),
        };
    }
    let dirs: Vec<PathBuf> = std::env::split_paths(path)
        .map(|d| working_dir.join(d))
        .collect();
    let mut not_executable = None;
    for d in &dirs {
        let p = d.join(program);
        match executable(&p) {
            Ok(()) => return Ok(p),
            Err(why) if p.exists() && not_executable.is_none() => {
                not_executable = Some(format!("{} {why}", p.display()))
            }
            Err(_) => {}
        }
    }
    if let Some(why) = not_executable {
        return Err(format!("\"{program}\" is on PATH but {why}"));
    }
    // Only on failure: the names on PATH, for a suggestion.
    let names: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    Err(format!(
        "\"{program}\" is not found on PATH ({}){}; fix the name or give the program's full path",
        path.to_string_lossy(),
        did_you_mean(program, names.iter().map(String::as_str))
    ))
}

/// Whether `p` is a file someone may execute; else why not.
fn executable(p: &Path) -> Result<(), &'static str> {
    match std::fs::metadata(p) {
        Err(_) => Err("does not exist"),
        Ok(m) if m.is_dir() => Err("is a directory"),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err("is not executable (chmod +x it)"),
        Ok(_) => Ok(()),
    }
}

/// Warnings about metric names: a pruner metric that is neither an objective nor a constraint
/// (with the closest of those), since the pruner then acts only on reports that carry it.
pub fn metric_warnings(def: &StudyDefinition) -> Vec<String> {
    if def.pruner.kind == "none" {
        return Vec::new();
    }
    // A built-in workload's metrics are known (its reports carry them); a command's are the
    // objectives and constraints.
    let known: Vec<&str> = match def.trial.workload.builtin() {
        Some(b) => b.metrics().to_vec(),
        None => def
            .objectives
            .iter()
            .map(|o| o.metric.as_str())
            .chain(def.constraints.iter().map(|c| c.metric.as_str()))
            .collect(),
    };
    def.pruner
        .metrics
        .iter()
        .filter(|m| !known.contains(&m.name.as_str()))
        .map(|m| {
            format!(
                "pruner.metric: \"{}\" is neither an objective nor a constraint metric{}; the pruner acts only on trials whose reports carry it",
                m.name,
                did_you_mean(&m.name, known.iter().copied())
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_as_the_executor_would() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("run.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let path = OsStr::new("/usr/bin:/bin");
        assert!(find_program("sh", dir.path(), path).is_ok());
        let e = find_program("./run.sh", dir.path(), path).unwrap_err();
        assert!(e.contains("is not executable"), "{e}");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_program("./run.sh", dir.path(), path).unwrap(), script);
        let e = find_program("./nope.sh", dir.path(), path).unwrap_err();
        assert!(
            e.contains("does not exist") && e.contains("trial.working_dir"),
            "{e}"
        );
        let e = find_program("shh", dir.path(), path).unwrap_err();
        assert!(
            e.contains("\"shh\" is not found on PATH (/usr/bin:/bin)"),
            "{e}"
        );
        assert!(e.contains("did you mean"), "{e}");
        // A relative PATH entry is relative to the working directory.
        assert_eq!(
            find_program("run.sh", dir.path(), OsStr::new(".")).unwrap(),
            dir.path().join(".").join("run.sh")
        );
    }
}
