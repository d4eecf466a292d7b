//! `[trial.qat]`: the knobs of `builtin:qat-bench` (model size, step budgets, measurement), and
//! the checks a study that uses the workload must pass (its parameters, its metrics).

use quantune_strategies::{Domain, ParamValue, SearchSpace};
use serde::{Deserialize, Serialize};

/// The quantization formats the workload implements, as `space.quantization` choices.
pub const FORMATS: &[&str] = &["f32", "f16", "bf16", "int8", "int4"];

/// The parameters the workload reads; a study using it has exactly these.
pub const PARAMS: &[&str] = &["learning_rate", "batch_size", "quantization"];

/// Numeric metrics of the final line; objectives and constraints may name these.
pub const METRICS: &[&str] = &[
    "latency_ms",
    "latency_ms_p90",
    "latency_ms_spread",
    "throughput_tok_s",
    "throughput_tok_s_spread",
    "eval_loss",
    "eval_loss_delta",
    "base_eval_loss",
    "ptq_eval_loss_delta",
    "qat_eval_loss",
    "weight_mib",
    "train_s",
    "bench_s",
];

/// Prompt tokens fed before decoding starts in the latency benchmark.
pub const PROMPT_TOKENS: usize = 8;

/// Largest training batch the workload accepts (`space.batch_size`).
pub const MAX_BATCH: i64 = 512;

/// `[trial.qat]` as written (every key optional).
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawQatSettings {
    pub(crate) steps: Option<i64>,
    pub(crate) eval_every: Option<i64>,
    pub(crate) d_model: Option<i64>,
    pub(crate) layers: Option<i64>,
    pub(crate) heads: Option<i64>,
    pub(crate) seq_len: Option<i64>,
    pub(crate) base_steps: Option<i64>,
    pub(crate) eval_tokens: Option<i64>,
    pub(crate) bench_tokens: Option<i64>,
    pub(crate) bench_repeats: Option<i64>,
    pub(crate) warmup: Option<i64>,
    pub(crate) threads: Option<i64>,
}

/// Validated `[trial.qat]`, stored with the study (JSON) and turned into the subcommand's argv.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QatSettings {
    /// QAT fine-tuning steps per trial.
    pub steps: usize,
    /// An intermediate `{"step": N, "eval_loss": …}` report every this many steps.
    pub eval_every: usize,
    /// Model width (a multiple of 256: int4 uses Q4K, whose blocks are 256 wide).
    pub d_model: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Context length in bytes (training windows and the decode benchmark).
    pub seq_len: usize,
    /// Training steps of the base model (trained once, cached in the state directory).
    pub base_steps: usize,
    /// Held-out bytes the final eval loss is measured on.
    pub eval_tokens: usize,
    /// Tokens generated per benchmark repeat.
    pub bench_tokens: usize,
    /// Timed repeats of each benchmark (≥ 5).
    pub bench_repeats: usize,
    /// Untimed warm-up runs before the repeats.
    pub warmup: usize,
    /// Threads a trial uses (candle's matmuls); 1 keeps parallel trials from competing.
    pub threads: usize,
    /// The study's seed: every trial fine-tunes from the same data order (common random
    /// numbers), so trials differ only by their parameters.
    pub seed: u64,
}

impl QatSettings {
    /// The defaults, as `[trial.qat]` with no keys gives them.
    pub fn defaults(seed: u64) -> QatSettings {
        validate(None, seed).expect("defaults are valid")
    }
}

/// Validates `[trial.qat]`; errors are (key path, message).
pub fn validate(raw: Option<RawQatSettings>, seed: u64) -> Result<QatSettings, (String, String)> {
    let raw = raw.unwrap_or_default();
    let get = |key: &str, v: Option<i64>, default: i64, lo: i64, hi: i64| {
        let v = v.unwrap_or(default);
        if v < lo || v > hi {
            Err((
                format!("trial.qat.{key}"),
                format!("must be between {lo} and {hi} (got {v})"),
            ))
        } else {
            Ok(v as usize)
        }
    };
    let steps = get("steps", raw.steps, 200, 1, 1_000_000)?;
    let eval_every = get("eval_every", raw.eval_every, 50, 1, 1_000_000)?;
    if eval_every > steps {
        return Err((
            "trial.qat.eval_every".into(),
            format!("must be at most trial.qat.steps = {steps} (got {eval_every})"),
        ));
    }
    let d_model = get("d_model", raw.d_model, 256, 256, 2048)?;
    if d_model % 256 != 0 {
        return Err((
            "trial.qat.d_model".into(),
            format!(
                "must be a multiple of 256 (int4 uses Q4K blocks of 256 weights; got {d_model})"
            ),
        ));
    }
    let layers = get("layers", raw.layers, 2, 1, 48)?;
    let heads = get("heads", raw.heads, 4, 1, 64)?;
    if d_model % heads != 0 {
        return Err((
            "trial.qat.heads".into(),
            format!("must divide d_model = {d_model} (got {heads})"),
        ));
    }
    let seq_len = get("seq_len", raw.seq_len, 64, 16, 1024)?;
    let base_steps = get("base_steps", raw.base_steps, 600, 1, 1_000_000)?;
    let eval_tokens = get(
        "eval_tokens",
        raw.eval_tokens,
        8192,
        seq_len as i64 + 1,
        super::corpus::EVAL_BYTES_MAX as i64,
    )?;
    let bench_tokens = get(
        "bench_tokens",
        raw.bench_tokens,
        48.min(seq_len as i64 - PROMPT_TOKENS as i64),
        1,
        (seq_len - PROMPT_TOKENS) as i64,
    )
    .map_err(|(k, m)| (k, format!("{m}: the prompt ({PROMPT_TOKENS}) and the generated tokens must fit in seq_len = {seq_len}")))?;
    let bench_repeats = get("bench_repeats", raw.bench_repeats, 7, 5, 10_000)?;
    let warmup = get("warmup", raw.warmup, 2, 1, 1000)?;
    let threads = get("threads", raw.threads, 1, 1, 1024)?;
    Ok(QatSettings {
        steps,
        eval_every,
        d_model,
        layers,
        heads,
        seq_len,
        base_steps,
        eval_tokens,
        bench_tokens,
        bench_repeats,
        warmup,
        threads,
        seed,
    })
}

/// Checks that `space` is what the workload reads: `learning_rate` (positive floats),
/// `batch_size` (integers from 1 to [`MAX_BATCH`]) and `quantization` (choices from
/// [`FORMATS`]), and nothing else. Errors are (key path, message).
pub fn check_space(space: &SearchSpace) -> Result<(), (String, String)> {
    let params = space.params();
    for p in params {
        if !PARAMS.contains(&p.name.as_str()) {
            return Err((
                format!("space.{}", p.name),
                format!(
                    "workload \"builtin:qat-bench\" reads only {}; remove this parameter (or set its value in [trial.qat])",
                    PARAMS.join(", ")
                ),
            ));
        }
    }
    for want in PARAMS {
        if !params.iter().any(|p| p.name == *want) {
            let example = match *want {
                "learning_rate" => "type = \"float\", low = 1e-5, high = 1e-2, log = true",
                "batch_size" => "type = \"int\", values = [8, 16, 32]",
                _ => "type = \"categorical\", choices = [\"f32\", \"int8\", \"int4\"]",
            };
            return Err((
                format!("space.{want}"),
                format!("workload \"builtin:qat-bench\" needs this parameter ([space.{want}] with {example})"),
            ));
        }
    }
    for p in params {
        let path = format!("space.{}", p.name);
        match (p.name.as_str(), &p.domain) {
            ("learning_rate", Domain::Float { low, .. }) if *low <= 0.0 => {
                return Err((
                    format!("{path}.low"),
                    format!("a learning rate must be > 0 (got low = {low})"),
                ));
            }
            ("learning_rate", Domain::Float { .. }) => {}
            ("learning_rate", Domain::Categorical { choices }) => {
                for c in choices {
                    let ok = match c {
                        ParamValue::Float(f) => *f > 0.0 && f.is_finite(),
                        ParamValue::Int(i) => *i > 0,
                        _ => false,
                    };
                    if !ok {
                        return Err((
                            format!("{path}.choices"),
                            format!("learning rates must be positive numbers (got {c})"),
                        ));
                    }
                }
            }
            ("learning_rate", _) => {
                return Err((
                    format!("{path}.type"),
                    "learning_rate must be type = \"float\" (or categorical numbers)".into(),
                ))
            }
            ("batch_size", Domain::Int { low, high, .. }) if *low < 1 || *high > MAX_BATCH => {
                return Err((
                    path,
                    format!("batch sizes must be between 1 and {MAX_BATCH} (got low = {low}, high = {high})"),
                ));
            }
            ("batch_size", Domain::Int { .. }) => {}
            ("batch_size", Domain::IntValues { values }) => {
                if let Some(v) = values.iter().find(|v| **v < 1 || **v > MAX_BATCH) {
                    return Err((
                        format!("{path}.values"),
                        format!("batch sizes must be between 1 and {MAX_BATCH} (got {v})"),
                    ));
                }
            }
            ("batch_size", _) => {
                return Err((
                    format!("{path}.type"),
                    "batch_size must be type = \"int\" (values = [...] or low/high)".into(),
                ))
            }
            ("quantization", Domain::Categorical { choices }) => {
                for c in choices {
                    let ok = matches!(c, ParamValue::Str(s) if FORMATS.contains(&s.as_str()));
                    if !ok {
                        let shown = match c {
                            ParamValue::Str(s) => format!("\"{s}\""),
                            other => other.to_string(),
                        };
                        return Err((
                            format!("{path}.choices"),
                            format!(
                                "{shown} is not a format of builtin:qat-bench; allowed: \"{}\"",
                                FORMATS.join("\", \"")
                            ),
                        ));
                    }
                }
            }
            ("quantization", _) => {
                return Err((
                    format!("{path}.type"),
                    format!(
                        "quantization must be type = \"categorical\" with choices from \"{}\"",
                        FORMATS.join("\", \"")
                    ),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_together() {
        let s = QatSettings::defaults(3);
        assert_eq!(s.d_model % 256, 0);
        assert!(s.bench_tokens + PROMPT_TOKENS <= s.seq_len);
        assert!(s.bench_repeats >= 5);
        assert_eq!(s.seed, 3);
    }

    #[test]
    fn out_of_range_keys_name_themselves() {
        let raw: RawQatSettings = toml::from_str("d_model = 384").unwrap();
        let (path, msg) = validate(Some(raw), 0).unwrap_err();
        assert_eq!(path, "trial.qat.d_model");
        assert!(msg.contains("multiple of 256"), "{msg}");
        let raw: RawQatSettings = toml::from_str("bench_repeats = 3").unwrap();
        let (path, msg) = validate(Some(raw), 0).unwrap_err();
        assert_eq!(path, "trial.qat.bench_repeats");
        assert!(msg.contains("between 5 and"), "{msg}");
        let raw: RawQatSettings = toml::from_str("seq_len = 32\nbench_tokens = 30").unwrap();
        let (path, msg) = validate(Some(raw), 0).unwrap_err();
        assert_eq!(path, "trial.qat.bench_tokens");
        assert!(msg.contains("seq_len = 32"), "{msg}");
        assert!(toml::from_str::<RawQatSettings>("stepz = 1").is_err());
        // The registry's key check: a typo in [trial.qat] names its key.
        let typo: toml::Value = toml::from_str("stepz = 1").unwrap();
        let (path, msg) =
            crate::workload::raw_settings::<RawQatSettings>("qat", Some(typo)).unwrap_err();
        assert!(path.starts_with("trial.qat"), "{path}");
        assert!(msg.contains("`stepz`"), "{msg}");
    }

    #[test]
    fn the_shipped_studies_validate() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let (def, _) = crate::model::study::load(&dir.join("quickstart.toml")).unwrap();
        assert_eq!(
            def.trial.workload,
            crate::model::study::Workload::Builtin("qat-bench".into())
        );
        let stored = def.trial.builtin_settings().expect("[trial.qat] kept");
        let qat: QatSettings = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(qat.seed, def.seed);
        assert!(qat.bench_repeats >= 5);
        // Stored as JSON and read back unchanged (the daemon keeps definitions this way).
        let json = serde_json::to_string(&def.trial).unwrap();
        let back: crate::model::study::TrialSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back.builtin_settings(), Some(stored));
        assert!(json.contains("\"workload\":\"builtin:qat-bench\"") && json.contains("\"qat\":{"));
        let (def, _) = crate::model::study::load(&dir.join("gemma1b-qat.toml")).unwrap();
        assert_eq!(def.trial.workload, crate::model::study::Workload::Command);
        assert!(def.trial.builtin_settings().is_none() && def.trial.settings.is_empty());
    }

    #[test]
    fn builtin_argv_runs_this_binary_with_every_setting() {
        let s = QatSettings::defaults(9);
        let mut p = quantune_strategies::Params::new();
        p.insert("learning_rate".into(), ParamValue::Float(0.1 + 0.2));
        p.insert("batch_size".into(), ParamValue::Int(8));
        p.insert("quantization".into(), ParamValue::Str("int4".into()));
        let argv = super::super::argv(&s, &p, std::path::Path::new("/state/cache")).unwrap();
        assert_eq!(
            argv[0],
            std::env::current_exe().unwrap().display().to_string()
        );
        assert_eq!(argv[1], "qat-bench");
        let joined = argv.join(" ");
        for want in [
            "--learning-rate 0.30000000000000004",
            "--batch-size 8",
            "--quantization int4",
            "--seed 9",
            "--cache-dir /state/cache/qat-bench",
            "--steps 200",
            "--threads 1",
        ] {
            assert!(joined.contains(want), "{want}: {joined}");
        }
        p.remove("batch_size");
        assert!(super::super::argv(&s, &p, std::path::Path::new("/c")).is_err());
    }
}
