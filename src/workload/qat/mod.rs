//! `workload = "builtin:qat-bench"` (docs/STUDY.md, "builtin:qat-bench"): a QAT fine-tune-and-benchmark trial that runs
//! anywhere, in Rust on candle's CPU backend. One trial:
//!
//! 1. loads the base model — a small byte-level transformer trained once on *Pride and
//!    Prejudice* and cached in the state directory ([`cache`]);
//! 2. fine-tunes it on a domain it never saw (*Persuasion*, first 90 %) at the trial's
//!    `learning_rate` and `batch_size`, with the weights (and the activations the format's
//!    kernel quantizes) fake-quantized as `quantization` through a straight-through estimator,
//!    reporting `{"step": N, "eval_loss": …}` every `eval_every` steps;
//! 3. converts the weights to the real format (Q8_0, Q4K, f16, bf16 or f32) and measures
//!    `eval_loss` on the held-out last 10 % of *Persuasion*, and `eval_loss_delta` against the
//!    unquantized base model on the same text;
//! 4. benchmarks greedy decoding of that converted model: `latency_ms` per token at batch 1
//!    and `throughput_tok_s` at the trial's batch size ([`bench`]), plus `weight_mib`.
//!
//! The daemon runs it as `quantune qat-bench …` (a hidden subcommand, see [`argv`]), so it
//! speaks the ordinary trial protocol. Training is deterministic for a seed and a thread count;
//! timings are measurements.

pub mod bench;
pub mod cache;
pub mod corpus;
pub mod model;
pub mod quant;
pub mod settings;
pub mod train;

use anyhow::{anyhow, bail, Context, Result};
use quant::Format;
use quantune_strategies::Params;
pub use settings::QatSettings;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `quantune qat-bench`: one trial of the built-in workload. The daemon starts it; it can also
/// be run by hand (metrics go to `--metrics-file`, `$QUANTUNE_METRICS_FILE`, or stdout).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Peak learning rate of the QAT fine-tune.
    #[arg(long)]
    pub learning_rate: f64,
    /// Sequences per fine-tuning step; also the batch of the throughput benchmark.
    #[arg(long)]
    pub batch_size: usize,
    /// f32 | f16 | bf16 | int8 | int4.
    #[arg(long)]
    pub quantization: String,
    /// Seeds the fine-tune's batch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the base model is cached.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Where the JSON lines go (default: $QUANTUNE_METRICS_FILE, else stdout).
    #[arg(long)]
    pub metrics_file: Option<PathBuf>,
    /// Only make sure the base model is cached, then exit (what a trial runs, on every core,
    /// when the cache is empty).
    #[arg(long, hide = true)]
    pub base_only: bool,
    /// `[trial.qat]` keys (see docs/STUDY.md); unset ones take their defaults.
    #[arg(long)]
    pub steps: Option<i64>,
    #[arg(long)]
    #[allow(missing_docs)]
    pub eval_every: Option<i64>,
    #[arg(long)]
    #[allow(missing_docs)]
    pub d_model: Option<i64>,
    #[arg(long)]
    #[allow(missing_docs)]
    pub layers: Option<i64>,
    #[arg(long)]
    #[allow(missing_docs)]
    pub heads: Option<i64>,
    #[arg(long)]
    #[allow(missing_docs)]
    pub seq_len: Option<i64>,
    #[arg(long)]
    #[allow(missing_docs)]
    pub base_steps: Option<i64>,
    #[arg(long)]
    #[allow(missing_docs)]
    pub eval_tokens: Option<i64>,
    #[arg(long)]
    #[allow(missing_docs)]
    pub bench_tokens: Option<i64>,
    #[arg(long)]
    #[allow(missing_docs)]
    pub bench_repeats: Option<i64>,
    #[arg(long)]
    #[allow(missing_docs)]
    pub warmup: Option<i64>,
    #[arg(long)]
    #[allow(missing_docs)]
    pub threads: Option<i64>,
}

/// The argv that runs one trial of a study whose `[trial.qat]` is `s`: this very binary
/// (resolved now, on the daemon's side, so the trial runs the daemon's own build) with the
/// hidden `qat-bench` subcommand. `cache_dir` is the state directory's cache.
pub fn argv(s: &QatSettings, params: &Params, cache_dir: &Path) -> Result<Vec<String>, String> {
    let exe = std::env::current_exe().map_err(|e| {
        format!("cannot find the quantune binary to run the built-in workload: {e}")
    })?;
    let param = |name: &str| {
        params
            .get(name)
            .map(ToString::to_string)
            .ok_or_else(|| format!("the trial has no parameter {name}"))
    };
    let mut v = vec![
        exe.display().to_string(),
        "qat-bench".into(),
        "--learning-rate".into(),
        param("learning_rate")?,
        "--batch-size".into(),
        param("batch_size")?,
        "--quantization".into(),
        param("quantization")?,
        "--seed".into(),
        s.seed.to_string(),
        "--cache-dir".into(),
        cache_dir.join("qat-bench").display().to_string(),
    ];
    for (flag, value) in [
        ("--steps", s.steps),
        ("--eval-every", s.eval_every),
        ("--d-model", s.d_model),
        ("--layers", s.layers),
        ("--heads", s.heads),
        ("--seq-len", s.seq_len),
        ("--base-steps", s.base_steps),
        ("--eval-tokens", s.eval_tokens),
        ("--bench-tokens", s.bench_tokens),
        ("--bench-repeats", s.bench_repeats),
        ("--warmup", s.warmup),
        ("--threads", s.threads),
    ] {
        v.push(flag.into());
        v.push(value.to_string());
    }
    Ok(v)
}

/// Where metric lines go.
enum Sink {
    File(std::fs::File),
    Stdout,
}

impl Sink {
    fn line(&mut self, v: &serde_json::Value) -> Result<()> {
        let line = format!("{v}\n");
        match self {
            Sink::File(f) => {
                f.write_all(line.as_bytes())?;
                f.flush()?;
            }
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes())?;
                out.flush()?;
            }
        }
        Ok(())
    }
}

/// `builtin:qat-bench` in the registry ([`crate::workload::BUILTINS`]).
pub struct QatBench;

/// `quantune qat-bench` as its own command line (parsed by the workload, not the CLI).
#[derive(clap::Parser, Debug)]
#[command(
    name = "quantune qat-bench",
    about = "One trial of the built-in workload builtin:qat-bench (the daemon starts it)"
)]
struct BenchCommand {
    #[command(flatten)]
    args: BenchArgs,
}

impl crate::workload::Builtin for QatBench {
    fn name(&self) -> &'static str {
        "qat-bench"
    }

    fn about(&self) -> &'static str {
        "quantune's own QAT benchmark"
    }

    fn table(&self) -> &'static str {
        "qat"
    }

    fn metrics(&self) -> &'static [&'static str] {
        settings::METRICS
    }

    fn validate(
        &self,
        study: &crate::workload::StudyContext<'_>,
        raw: Option<toml::Value>,
    ) -> Result<serde_json::Value, crate::workload::Problem> {
        let raw: settings::RawQatSettings = crate::workload::raw_settings(self.table(), raw)?;
        settings::check_space(study.space)?;
        if let Some(p) = study.space.conditions().keys().next() {
            return Err((
                format!("space.{p}.when"),
                "workload = \"builtin:qat-bench\" reads every parameter in every trial, so none can be conditional; remove `when`".into(),
            ));
        }
        if study.gpus > 0 {
            return Err((
                "trial.gpus".into(),
                "workload = \"builtin:qat-bench\" runs on CPU slots; set gpus = 0 or remove it"
                    .into(),
            ));
        }
        let s = settings::validate(Some(raw), study.seed)?;
        Ok(serde_json::to_value(s).expect("settings serialize"))
    }

    fn argv(
        &self,
        stored: &serde_json::Value,
        params: &Params,
        cache_dir: &Path,
    ) -> Result<Vec<String>, String> {
        let s: QatSettings = serde_json::from_value(stored.clone())
            .map_err(|e| format!("the study's stored [trial.qat] does not read back: {e}"))?;
        argv(&s, params, cache_dir)
    }

    fn main(&self, args: Vec<std::ffi::OsString>) -> i32 {
        use clap::Parser;
        let line = std::iter::once(std::ffi::OsString::from("quantune qat-bench")).chain(args);
        match BenchCommand::try_parse_from(line) {
            Ok(c) => main(&c.args),
            Err(e) => {
                let _ = e.print();
                e.exit_code()
            }
        }
    }
}

/// Entry point of `quantune qat-bench`; returns the exit code.
pub fn main(args: &BenchArgs) -> i32 {
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("qat-bench: error: {e:#}");
            1
        }
    }
}

fn settings_from(args: &BenchArgs) -> Result<QatSettings> {
    let raw = settings::RawQatSettings {
        steps: args.steps,
        eval_every: args.eval_every,
        d_model: args.d_model,
        layers: args.layers,
        heads: args.heads,
        seq_len: args.seq_len,
        base_steps: args.base_steps,
        eval_tokens: args.eval_tokens,
        bench_tokens: args.bench_tokens,
        bench_repeats: args.bench_repeats,
        warmup: args.warmup,
        threads: args.threads,
    };
    settings::validate(Some(raw), args.seed).map_err(|(k, m)| {
        anyhow!(
            "--{}: {m}",
            k.trim_start_matches("trial.qat.").replace('_', "-")
        )
    })
}

/// Trains the base model in a child process that uses every core: it is built once, and while
/// it trains the other trials wait for it anyway.
fn train_base_on_every_core(args: &BenchArgs, cache_dir: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the quantune binary")?;
    let mut child = args.clone();
    child.base_only = true;
    child.cache_dir = Some(cache_dir.to_path_buf());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let status = std::process::Command::new(exe)
        .arg("qat-bench")
        .args(child.to_argv())
        .env("RAYON_NUM_THREADS", cores.to_string())
        .stdin(std::process::Stdio::null())
        .status()
        .context("cannot start the base-model training process")?;
    if !status.success() {
        bail!("training the base model failed ({status})");
    }
    Ok(())
}

impl BenchArgs {
    /// These arguments as `qat-bench` flags (without the subcommand).
    fn to_argv(&self) -> Vec<String> {
        let mut v = vec![
            format!("--learning-rate={}", self.learning_rate),
            format!("--batch-size={}", self.batch_size),
            format!("--quantization={}", self.quantization),
            format!("--seed={}", self.seed),
        ];
        if let Some(d) = &self.cache_dir {
            v.push(format!("--cache-dir={}", d.display()));
        }
        if self.base_only {
            v.push("--base-only".into());
        }
        for (flag, value) in [
            ("steps", self.steps),
            ("eval-every", self.eval_every),
            ("d-model", self.d_model),
            ("layers", self.layers),
            ("heads", self.heads),
            ("seq-len", self.seq_len),
            ("base-steps", self.base_steps),
            ("eval-tokens", self.eval_tokens),
            ("bench-tokens", self.bench_tokens),
            ("bench-repeats", self.bench_repeats),
            ("warmup", self.warmup),
            ("threads", self.threads),
        ] {
            if let Some(value) = value {
                v.push(format!("--{flag}={value}"));
            }
        }
        v
    }
}

fn run(args: &BenchArgs) -> Result<()> {
    let s = settings_from(args)?;
    let format = Format::parse(&args.quantization).ok_or_else(|| {
        anyhow!(
            "--quantization {}: allowed: {}",
            args.quantization,
            settings::FORMATS.join(", ")
        )
    })?;
    if !(args.learning_rate > 0.0 && args.learning_rate.is_finite()) {
        bail!(
            "--learning-rate must be a positive number (got {})",
            args.learning_rate
        );
    }
    if args.batch_size == 0 || args.batch_size as i64 > settings::MAX_BATCH {
        bail!(
            "--batch-size must be between 1 and {} (got {})",
            settings::MAX_BATCH,
            args.batch_size
        );
    }
    // Before candle starts its thread pool: a trial uses exactly `threads` cores, so parallel
    // trials do not compete (and the timings mean something). A `--base-only` child is started
    // with its own RAYON_NUM_THREADS.
    if !args.base_only {
        std::env::set_var("RAYON_NUM_THREADS", s.threads.to_string());
    }
    // Keep freed tensor buffers in the heap instead of returning them to the kernel: candle
    // allocates a fresh buffer per op, and re-faulting zeroed pages cost ~10 % of a step.
    // SAFETY: mallopt only tunes glibc's allocator; called before any other thread exists.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    let mut sink = match args
        .metrics_file
        .clone()
        .or_else(|| std::env::var_os("QUANTUNE_METRICS_FILE").map(PathBuf::from))
    {
        Some(p) => Sink::File(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .with_context(|| format!("cannot open the metrics file {}", p.display()))?,
        ),
        None => Sink::Stdout,
    };
    let cache_dir = args.cache_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir()
            .join("quantune-cache")
            .join("qat-bench")
    });
    let log = |m: String| eprintln!("qat-bench: {m}");
    let mut log_mut = log;

    if args.base_only {
        cache::load_or_train(&cache_dir, &s, &mut log_mut)?;
        return Ok(());
    }
    if !cache::is_cached(&cache_dir, &s) {
        train_base_on_every_core(args, &cache_dir)?;
    }
    let base = cache::load_or_train(&cache_dir, &s, &mut log_mut)?;
    let eval_text = corpus::domain_eval();
    let base_eval_loss = train::eval_quantized(
        &model::Quantized::new(&base.weights, Format::F32)?,
        eval_text,
        s.seq_len,
        s.eval_tokens,
    )?;
    // Post-training quantization of the base model, for comparison: what the format costs
    // before QAT has had a chance to adapt the weights to it.
    let ptq_eval_loss = train::eval_quantized(
        &model::Quantized::new(&base.weights, format)?,
        eval_text,
        s.seq_len,
        s.eval_tokens,
    )?;
    log(format!(
        "base model {} ({} parameters): eval loss {base_eval_loss:.4}, {} without QAT {ptq_eval_loss:.4}",
        if base.trained { "trained" } else { "loaded" },
        base.weights.count(),
        format.name()
    ));

    // 1. QAT fine-tune, starting from a copy of the base weights.
    let w = model::Weights::from_tensors(base.weights.config, base.weights.tensors()?)?;
    let sched = train::Schedule {
        steps: s.steps,
        batch_size: args.batch_size,
        lr: args.learning_rate,
        warmup: (s.steps / 10).clamp(1, 50),
        final_frac: 0.1,
        weight_decay: 0.0,
        seed: s.seed,
    };
    // Intermediate reports on a fixed slice of the held-out text (cheaper than the final eval).
    let report_tokens = s.eval_tokens.min(2048).max(s.seq_len + 1);
    let started = Instant::now();
    let mut report_err = None;
    let result = train::train(&w, format, corpus::domain_train(), &sched, |step, loss| {
        if step % s.eval_every == 0 || step == s.steps {
            let e = train::eval_fake_quant(&w, format, eval_text, report_tokens)?;
            log(format!(
                "step {step}/{}: train loss {loss:.4}, eval loss {e:.4}",
                s.steps
            ));
            if let Err(err) =
                sink.line(&serde_json::json!({"step": step, "eval_loss": e, "train_loss": loss}))
            {
                report_err = Some(err);
            }
        }
        Ok(())
    });
    if let Some(e) = report_err {
        return Err(e.context("cannot write to the metrics file"));
    }
    match result {
        Ok(()) => {}
        Err(train::Stop::Diverged(step)) => {
            let reason = format!(
                "fine-tuning diverged (loss not finite) at step {step} with learning_rate = {}",
                args.learning_rate
            );
            log(reason.clone());
            sink.line(&serde_json::json!({ "infeasible": reason }))?;
            return Ok(());
        }
        Err(train::Stop::Error(e)) => return Err(e.into()),
    }
    let train_s = started.elapsed().as_secs_f64();
    let qat_eval_loss = train::eval_fake_quant(&w, format, eval_text, s.eval_tokens)?;

    // 2–3. Real quantized weights: quality, then speed.
    let q = model::Quantized::new(&w, format)?;
    let eval_loss = train::eval_quantized(&q, eval_text, s.seq_len, s.eval_tokens)?;
    if !eval_loss.is_finite() {
        let reason = format!("the {} model's eval loss is not finite", format.name());
        sink.line(&serde_json::json!({ "infeasible": reason }))?;
        return Ok(());
    }
    let bench_started = Instant::now();
    let prompt_at = |i: usize| {
        let off = (i * 997) % (eval_text.len() - settings::PROMPT_TOKENS);
        &eval_text[off..off + settings::PROMPT_TOKENS]
    };
    let lat = bench::latency(&q, prompt_at(0), s.bench_tokens, s.warmup, s.bench_repeats)?;
    let prompts: Vec<&[u8]> = (0..args.batch_size).map(prompt_at).collect();
    let thr = bench::throughput(&q, &prompts, s.bench_tokens, s.warmup, s.bench_repeats)?;
    let bench_s = bench_started.elapsed().as_secs_f64();
    log(format!(
        "{}: eval loss {eval_loss:.4} (base {base_eval_loss:.4}), {:.3} ms/token, {:.0} tokens/s at batch {}",
        format.name(),
        lat.steps.median,
        thr.steps.median,
        args.batch_size
    ));
    sink.line(&serde_json::json!({
        "latency_ms": lat.steps.median,
        "latency_ms_p90": lat.steps.p90,
        "latency_ms_spread": lat.runs.spread,
        "throughput_tok_s": thr.steps.median,
        "throughput_tok_s_spread": thr.runs.spread,
        "eval_loss": eval_loss,
        "eval_loss_delta": eval_loss - base_eval_loss,
        "base_eval_loss": base_eval_loss,
        "ptq_eval_loss_delta": ptq_eval_loss - base_eval_loss,
        "qat_eval_loss": qat_eval_loss,
        "weight_mib": q.weight_bytes() as f64 / (1u64 << 20) as f64,
        "train_s": train_s,
        "bench_s": bench_s,
        "host": crate::gpu::host::description(),
        "quantune_version": env!("CARGO_PKG_VERSION"),
        "weight_format": format.storage(),
        "threads": s.threads.to_string(),
        "bench": format!(
            "greedy decode, {} prompt + {} new tokens, {} warm-up + {} timed runs",
            settings::PROMPT_TOKENS, s.bench_tokens, s.warmup, s.bench_repeats
        ),
    }))?;
    Ok(())
}
