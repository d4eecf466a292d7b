//! Generation benchmarks of a model in its real storage format: greedy decoding with a
//! key/value cache after a short prompt, untimed warm-up runs first, then timed repeats. Only
//! the decode steps are timed (each step: pick the next byte from the last logits, run the
//! model on it), not the prompt.

use super::model::{KvCache, Quantized, VOCAB};
use candle_core::{Device, Result, Tensor, D};
use std::time::Instant;

/// Summary of repeated measurements.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// Median over the samples.
    pub median: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// Largest minus smallest sample.
    pub spread: f64,
    /// The samples, in measurement order.
    pub samples: Vec<f64>,
}

impl Stats {
    /// Summarizes `samples` (at least one).
    pub fn of(samples: Vec<f64>) -> Stats {
        let mut s = samples.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        let p90 = s[((0.9 * n as f64).ceil() as usize).clamp(1, n) - 1];
        Stats {
            median,
            p90,
            spread: s[n - 1] - s[0],
            samples,
        }
    }
}

/// One generation run: `tokens` decode steps for `prompts.len()` sequences; returns the
/// duration of each decode step in seconds.
fn generate(model: &Quantized, prompts: &[&[u8]], tokens: usize) -> Result<Vec<f64>> {
    let b = prompts.len();
    let p = prompts[0].len();
    let ids: Vec<u32> = prompts
        .iter()
        .flat_map(|s| s.iter().map(|&c| u32::from(c)))
        .collect();
    let ids = Tensor::from_vec(ids, (b, p), &Device::Cpu)?;
    let mut cache = KvCache::new(model.model_config());
    let logits = model.logits(&ids, Some(&mut cache))?;
    let mut last = logits
        .reshape((b, p, VOCAB))?
        .narrow(1, p - 1, 1)?
        .squeeze(1)?;
    let mut steps = Vec::with_capacity(tokens);
    for _ in 0..tokens {
        let t = Instant::now();
        let next = last.argmax(D::Minus1)?.reshape((b, 1))?;
        last = model.logits(&next, Some(&mut cache))?;
        // Reading the result forces the work (candle on CPU is eager, but be explicit).
        let _ = last.dims2()?;
        steps.push(t.elapsed().as_secs_f64());
    }
    Ok(steps)
}

/// Per-token decode latency at batch 1, in ms.
pub struct Latency {
    /// Every single decode step of every timed repeat: the median and p90 reported. The
    /// median of steps rather than the mean of a run, so that a moment the trial was scheduled
    /// out (a busy machine) moves p90, not the headline figure.
    pub steps: Stats,
    /// The median of each repeat: their spread is the run-to-run variation reported.
    pub runs: Stats,
}

/// Measures decode latency at batch 1.
pub fn latency(
    model: &Quantized,
    prompt: &[u8],
    tokens: usize,
    warmup: usize,
    repeats: usize,
) -> Result<Latency> {
    for _ in 0..warmup {
        generate(model, &[prompt], tokens)?;
    }
    let mut runs = Vec::with_capacity(repeats);
    let mut steps = Vec::with_capacity(repeats * tokens);
    for _ in 0..repeats {
        let ms: Vec<f64> = generate(model, &[prompt], tokens)?
            .iter()
            .map(|s| s * 1e3)
            .collect();
        runs.push(Stats::of(ms.clone()).median);
        steps.extend(ms);
    }
    Ok(Latency {
        steps: Stats::of(steps),
        runs: Stats::of(runs),
    })
}

/// Decode throughput (generated tokens per second, all sequences together) at a batch.
pub struct Throughput {
    /// Per decode step: batch / step time. The median is reported (robust to a step the
    /// trial was scheduled out for, like [`Latency::steps`]).
    pub steps: Stats,
    /// Each repeat's median: their spread is the run-to-run variation reported.
    pub runs: Stats,
}

/// Measures decode throughput at the batch of `prompts.len()` sequences.
pub fn throughput(
    model: &Quantized,
    prompts: &[&[u8]],
    tokens: usize,
    warmup: usize,
    repeats: usize,
) -> Result<Throughput> {
    for _ in 0..warmup {
        generate(model, prompts, tokens)?;
    }
    let b = prompts.len() as f64;
    let mut runs = Vec::with_capacity(repeats);
    let mut steps = Vec::with_capacity(repeats * tokens);
    for _ in 0..repeats {
        let rates: Vec<f64> = generate(model, prompts, tokens)?
            .iter()
            .map(|s| b / s)
            .collect();
        runs.push(Stats::of(rates.clone()).median);
        steps.extend(rates);
    }
    Ok(Throughput {
        steps: Stats::of(steps),
        runs: Stats::of(runs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_known_samples() {
        let s = Stats::of(vec![5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!(s.median, 3.0);
        assert_eq!(s.spread, 4.0);
        assert_eq!(s.p90, 5.0);
        let s = Stats::of((1..=10).map(f64::from).collect());
        assert_eq!(s.median, 5.5);
        assert_eq!(s.p90, 9.0);
    }
}
