//! Training and evaluation loops: the base model's pre-training and a trial's QAT fine-tune
//! share one loop (AdamW, seeded batch order); evaluation is mean next-byte cross-entropy over
//! fixed windows of held-out text.

use super::model::{batch, train_logits, Quantized, Weights};
use super::quant::Format;
use candle_core::Result;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{Rng, SeedableRng};

/// How one training run goes.
pub struct Schedule {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps, then cosine decay to `lr * final_frac`.
    pub warmup: usize,
    /// The learning rate at the end, as a fraction of the peak.
    pub final_frac: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Seeds the batch order.
    pub seed: u64,
}

impl Schedule {
    fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = (self.steps - self.warmup).max(1) as f64;
        let progress = (step - self.warmup) as f64 / span;
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.lr * (self.final_frac + (1.0 - self.final_frac) * cos)
    }
}

/// Why a training run stopped early.
pub enum Stop {
    /// The loss became NaN or infinite at this step.
    Diverged(usize),
    /// A candle error.
    Error(candle_core::Error),
}

impl From<candle_core::Error> for Stop {
    fn from(e: candle_core::Error) -> Stop {
        Stop::Error(e)
    }
}

/// Trains `w` in place on random windows of `text`, fake-quantized as `format`; `after_step`
/// sees each finished step (1-based) and its training loss.
pub fn train(
    w: &Weights,
    format: Format,
    text: &[u8],
    sched: &Schedule,
    mut after_step: impl FnMut(usize, f64) -> Result<()>,
) -> std::result::Result<(), Stop> {
    let seq = w.config.seq_len;
    let mut opt = AdamW::new(
        w.vars(),
        ParamsAdamW {
            lr: sched.lr_at(0),
            weight_decay: sched.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(sched.seed);
    for step in 0..sched.steps {
        let starts: Vec<usize> = (0..sched.batch_size)
            .map(|_| rng.random_range(0..text.len() - seq - 1))
            .collect();
        let (x, y) = batch(text, &starts, seq)?;
        let logits = train_logits(w, format, &x)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        if !value.is_finite() {
            return Err(Stop::Diverged(step + 1));
        }
        opt.set_learning_rate(sched.lr_at(step));
        opt.backward_step(&loss)?;
        after_step(step + 1, value)?;
    }
    Ok(())
}

/// The window starts of the first `tokens` bytes of `text` (non-overlapping, `seq_len` each).
fn windows(text: &[u8], seq_len: usize, tokens: usize) -> Vec<usize> {
    let n = (tokens.min(text.len() - 1) / seq_len).max(1);
    (0..n).map(|i| i * seq_len).collect()
}

const EVAL_BATCH: usize = 32;

/// Mean cross-entropy (nats per byte) of the fake-quantized training pass on held-out text.
pub fn eval_fake_quant(w: &Weights, format: Format, text: &[u8], tokens: usize) -> Result<f64> {
    eval_with(text, w.config.seq_len, tokens, |x| {
        train_logits(w, format, x)
    })
}

/// Mean cross-entropy (nats per byte) of a model in its real storage format on held-out text.
pub fn eval_quantized(m: &Quantized, text: &[u8], seq_len: usize, tokens: usize) -> Result<f64> {
    eval_with(text, seq_len, tokens, |x| m.logits(x, None))
}

fn eval_with(
    text: &[u8],
    seq_len: usize,
    tokens: usize,
    logits: impl Fn(&candle_core::Tensor) -> Result<candle_core::Tensor>,
) -> Result<f64> {
    let starts = windows(text, seq_len, tokens);
    let mut sum = 0.0;
    for chunk in starts.chunks(EVAL_BATCH) {
        let (x, y) = batch(text, chunk, seq_len)?;
        let loss = candle_nn::loss::cross_entropy(&logits(&x)?, &y)?;
        sum += f64::from(loss.to_scalar::<f32>()?) * chunk.len() as f64;
    }
    Ok(sum / starts.len() as f64)
}
