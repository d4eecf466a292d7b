//! The trial protocol (docs/TRIALS.md) shared by every executor that starts a command: argv
//! substitution, the environment a trial sees, and parsing of the metrics file it writes.

use super::AttemptOutcome;
use quantune_strategies::{ParamValue, Params};
use std::collections::BTreeMap;

/// The `{name}` placeholders in one argv element (`{{` / `}}` are literal braces).
pub fn placeholders(arg: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    scan(arg, |name| {
        names.push(name.to_string());
        Ok(String::new())
    })?;
    Ok(names)
}

/// Replaces `{name}` in `arg` with the parameter's value (and `{trial}`, `{study}`).
pub fn substitute(arg: &str, params: &Params, study: &str, trial: u64) -> Result<String, String> {
    scan(arg, |name| match name {
        "trial" => Ok(trial.to_string()),
        "study" => Ok(study.to_string()),
        _ => params
            .get(name)
            .map(ParamValue::to_string)
            .ok_or_else(|| format!("{{{name}}} names no parameter")),
    })
}

/// A trial's argv from the command template: every element substituted, except that an
/// element naming a parameter the trial does not have (a conditional parameter whose condition
/// does not hold) is left out, so `"--group-size={group_size}"` disappears from bf16 trials.
/// Study validation has already checked that every placeholder names a parameter.
pub fn argv(
    command: &[String],
    params: &Params,
    study: &str,
    trial: u64,
) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(command.len());
    for arg in command {
        let absent = placeholders(arg)?
            .iter()
            .any(|n| n != "trial" && n != "study" && !params.contains_key(n));
        if !absent {
            out.push(substitute(arg, params, study, trial)?);
        }
    }
    Ok(out)
}

fn scan(arg: &str, mut f: impl FnMut(&str) -> Result<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err(format!(
                "unmatched '}}' in \"{arg}\" (write '}}}}' for a literal brace)"
            ));
        } else {
            let end = tail.find('}').ok_or_else(|| {
                format!("unclosed '{{' in \"{arg}\" (write '{{{{' for a literal brace)")
            })?;
            let name = &tail[1..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("\"{{{name}}}\" in \"{arg}\" is not a placeholder: use {{parameter_name}}, {{trial}} or {{study}}"));
            }
            out.push_str(&f(name)?);
            rest = &tail[end + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The longest metrics line accepted (1 MiB); a longer one fails the trial.
pub const MAX_METRICS_LINE: usize = 1 << 20;

/// The largest metrics file accepted (256 MiB); a larger one fails the trial.
pub const MAX_METRICS_FILE: u64 = 256 << 20;

/// Reads a finished metrics file whole, refusing one that is not a regular file or is over
/// [`MAX_METRICS_FILE`] (the error says which). A missing file reads as empty.
pub fn read_metrics_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => {
            return Err(format!(
                "cannot read the metrics file {}: {e}",
                path.display()
            ))
        }
    };
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read the metrics file {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "$QUANTUNE_METRICS_FILE ({}) is {}, not a regular file; the trial must write its metrics lines to that file",
            path.display(),
            super::metrics_tail::kind_of(&meta)
        ));
    }
    if meta.len() > MAX_METRICS_FILE {
        return Err(format!(
            "the metrics file {} is {} bytes, over the limit of {} MiB",
            path.display(),
            meta.len(),
            MAX_METRICS_FILE >> 20
        ));
    }
    let mut bytes = Vec::new();
    f.take(MAX_METRICS_FILE)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the metrics file {}: {e}", path.display()))?;
    if let Some(long) = bytes
        .split(|b| *b == b'\n')
        .position(|l| l.len() > MAX_METRICS_LINE)
    {
        return Err(format!(
            "metrics file {} line {} is longer than {} KiB; write one short JSON object per line",
            path.display(),
            long + 1,
            MAX_METRICS_LINE >> 10
        ));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The `QUANTUNE_PARAMS` value: a JSON object of every parameter.
pub fn params_json(params: &Params) -> String {
    serde_json::to_string(params).unwrap_or_else(|_| "{}".into())
}

/// One line of a metrics file.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricsLine {
    /// `{"step": 200, "eval_loss": 2.31}`.
    Report {
        /// The step.
        step: u64,
        /// Its numeric values.
        values: BTreeMap<String, f64>,
    },
    /// A line without `"step"`: the final result (the last one wins).
    Final {
        /// Numeric values.
        metrics: BTreeMap<String, f64>,
        /// Non-numeric values (host descriptions and the like), as text.
        info: BTreeMap<String, String>,
    },
    /// `{"infeasible": "reason"}`.
    Infeasible(String),
}

/// Parses one line of a metrics file; the error says what is wrong with it.
pub fn parse_line(line: &str) -> Result<MetricsLine, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("not a JSON object".into());
    };
    if let Some(reason) = map.get("infeasible") {
        let reason = match reason {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Ok(MetricsLine::Infeasible(reason));
    }
    if let Some(step) = map.get("step") {
        let step = step
            .as_u64()
            .ok_or_else(|| format!("\"step\" must be a non-negative integer (got {step})"))?;
        let values = map
            .iter()
            .filter(|(k, _)| k.as_str() != "step")
            .filter_map(|(k, v)| v.as_f64().map(|f| (k.clone(), f)))
            .collect();
        return Ok(MetricsLine::Report { step, values });
    }
    let mut metrics = BTreeMap::new();
    let mut info = BTreeMap::new();
    for (k, v) in map {
        match v {
            serde_json::Value::Number(n) => {
                let f = n
                    .as_f64()
                    .ok_or_else(|| format!("\"{k}\" is not a finite number"))?;
                metrics.insert(k, f);
            }
            serde_json::Value::String(s) => {
                info.insert(k, s);
            }
            serde_json::Value::Null => return Err(format!("\"{k}\" is null; write a number")),
            other => {
                info.insert(k, other.to_string());
            }
        }
    }
    Ok(MetricsLine::Final { metrics, info })
}

/// Everything a finished metrics file said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsFile {
    /// Intermediate reports, in file order.
    pub reports: Vec<(u64, BTreeMap<String, f64>)>,
    /// The last final line.
    pub last_final: Option<(BTreeMap<String, f64>, BTreeMap<String, String>)>,
    /// The infeasibility reason, if the trial declared one.
    pub infeasible: Option<String>,
}

/// Parses a whole metrics file; a malformed line is an error naming its line number.
pub fn parse_file(text: &str) -> Result<MetricsFile, String> {
    let mut out = MetricsFile::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line).map_err(|e| format!("metrics file line {}: {e}", i + 1))? {
            MetricsLine::Report { step, values } => out.reports.push((step, values)),
            MetricsLine::Final { metrics, info } => out.last_final = Some((metrics, info)),
            MetricsLine::Infeasible(r) => out.infeasible = Some(r),
        }
    }
    Ok(out)
}

/// How a trial process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

/// Turns how a trial ended and what its metrics file says into an outcome (docs/TRIALS.md): a
/// declared infeasibility wins; a non-zero exit or a signal fails; exit 0 needs a well-formed
/// file with a final line.
pub fn outcome(exit: Exit, metrics_text: &str, stderr_tail: Option<String>) -> AttemptOutcome {
    outcome_of(exit, parse_file(metrics_text), stderr_tail)
}

/// [`outcome`] for a metrics file already parsed (its error names the malformed line).
pub fn outcome_of(
    exit: Exit,
    parsed: Result<MetricsFile, String>,
    stderr_tail: Option<String>,
) -> AttemptOutcome {
    if let Ok(m) = &parsed {
        if let Some(reason) = &m.infeasible {
            return AttemptOutcome::Infeasible(reason.clone());
        }
    }
    match exit {
        Exit::Code(0) => {}
        Exit::Code(code) => {
            return AttemptOutcome::Failed {
                reason: format!("exit status {code}"),
                stderr_tail,
            }
        }
        Exit::Signal(sig) => {
            let name = nix::sys::signal::Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("?");
            return AttemptOutcome::Failed {
                reason: format!("killed by signal {sig} ({name})"),
                stderr_tail,
            };
        }
    }
    match parsed {
        Err(e) => AttemptOutcome::Failed { reason: e, stderr_tail },
        Ok(m) => match m.last_final {
            Some((metrics, info)) => AttemptOutcome::Complete { metrics, info },
            None => AttemptOutcome::Failed {
                reason: "exited 0 without a final metrics line (a JSON object without \"step\" in $QUANTUNE_METRICS_FILE)".into(),
                stderr_tail,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_leaves_out_elements_of_absent_parameters() {
        let mut p = Params::new();
        p.insert("quantization".into(), ParamValue::Str("bf16".into()));
        let command: Vec<String> = [
            "python",
            "train.py",
            "--q={quantization}",
            "--group-size={group_size}",
            "--trial={trial}",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            argv(&command, &p, "s", 3).unwrap(),
            ["python", "train.py", "--q=bf16", "--trial=3"]
        );
        p.insert("group_size".into(), ParamValue::Int(64));
        assert_eq!(argv(&command, &p, "s", 3).unwrap()[3], "--group-size=64");
        assert!(argv(&["{a".to_string()], &p, "s", 0).is_err());
    }

    #[test]
    fn substitutes_params_and_builtins() {
        let mut p = Params::new();
        p.insert("lr".into(), ParamValue::Float(0.1 + 0.2));
        p.insert("q".into(), ParamValue::Str("int8".into()));
        let s = substitute("--lr={lr}/{q}/{trial}/{study}/{{x}}", &p, "s", 3).unwrap();
        assert_eq!(s, "--lr=0.30000000000000004/int8/3/s/{x}");
        assert_eq!(
            s.split('/').next().unwrap()[5..].parse::<f64>().unwrap(),
            0.1 + 0.2
        );
        assert!(substitute("{nope}", &p, "s", 0).is_err());
        assert!(placeholders("{a").is_err());
        assert!(placeholders("a}").is_err());
        assert_eq!(placeholders("{a}-{b}").unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn parses_lines() {
        let f = parse_file("{\"step\": 1, \"loss\": 2.5}\n\n{\"latency_ms\": 3, \"host\": \"x\"}\n{\"latency_ms\": 4}\n").unwrap();
        assert_eq!(f.reports.len(), 1);
        assert_eq!(f.last_final.unwrap().0["latency_ms"], 4.0);
        assert!(parse_file("{\"step\": -1}").unwrap_err().contains("line 1"));
        assert!(parse_file("{}\nnot json").unwrap_err().contains("line 2"));
        assert_eq!(
            parse_file("{\"infeasible\": \"oom\"}")
                .unwrap()
                .infeasible
                .as_deref(),
            Some("oom")
        );
    }
}
