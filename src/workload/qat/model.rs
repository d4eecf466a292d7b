//! The model: a small decoder-only transformer over bytes (pre-norm RMSNorm blocks, learned
//! positions, ReLU MLP of width 4·d, no biases; ReLU rather than GELU because on candle's CPU
//! backend GELU's scalar tanh/pow took a fifth of a training step). One forward pass serves training (weights as
//! candle `Var`s, fake-quantized) and inference (weights in their real storage format, with a
//! key/value cache for decoding), so what is fine-tuned is exactly what is benchmarked.

use super::quant::{fake_quant_activation, fake_quant_weight, Format, QLinear};
use super::settings::QatSettings;
use candle_core::{DType, Device, Result, Tensor, Var, D};
use rand::SeedableRng;
use rand_distr::Distribution;
use std::collections::HashMap;

/// Bytes.
pub const VOCAB: usize = 256;

/// RMSNorm epsilon.
const EPS: f32 = 1e-5;

/// The model's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Width.
    pub d_model: usize,
    /// Blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Context length.
    pub seq_len: usize,
}

impl Config {
    /// The shape `[trial.qat]` asks for.
    pub fn from_settings(s: &QatSettings) -> Config {
        Config {
            d_model: s.d_model,
            layers: s.layers,
            heads: s.heads,
            seq_len: s.seq_len,
        }
    }

    fn ff(&self) -> usize {
        4 * self.d_model
    }

    /// Every parameter: name, shape, and the init's standard deviation (0 = ones, a norm).
    fn params(&self) -> Vec<(String, (usize, usize), f64)> {
        let (d, ff) = (self.d_model, self.ff());
        // GPT-2's scaled init of the projections that write into the residual stream.
        let resid = 0.02 / (2.0 * self.layers as f64).sqrt();
        let mut p = vec![
            ("tok_emb".to_string(), (VOCAB, d), 0.02),
            ("pos_emb".to_string(), (self.seq_len, d), 0.02),
        ];
        for i in 0..self.layers {
            p.push((format!("blocks.{i}.norm1"), (1, d), 0.0));
            p.push((format!("blocks.{i}.wqkv"), (3 * d, d), 0.02));
            p.push((format!("blocks.{i}.wo"), (d, d), resid));
            p.push((format!("blocks.{i}.norm2"), (1, d), 0.0));
            p.push((format!("blocks.{i}.w1"), (ff, d), 0.02));
            p.push((format!("blocks.{i}.w2"), (d, ff), resid));
        }
        p.push(("norm_f".to_string(), (1, d), 0.0));
        p.push(("head".to_string(), (VOCAB, d), 0.02));
        p
    }

    /// Index of block `layer`'s parameter `k` (0 norm1, 1 wqkv, 2 wo, 3 norm2, 4 w1, 5 w2).
    fn block(&self, layer: usize, k: usize) -> usize {
        2 + 6 * layer + k
    }

    fn norm_f(&self) -> usize {
        2 + 6 * self.layers
    }

    fn head(&self) -> usize {
        3 + 6 * self.layers
    }
}

/// Trainable weights, in [`Config::params`] order.
pub struct Weights {
    /// The shape.
    pub config: Config,
    names: Vec<String>,
    vars: Vec<Var>,
}

impl Weights {
    /// Fresh weights from `seed` (deterministic: drawn with a seeded generator, not candle's).
    pub fn init(config: Config, seed: u64) -> Result<Weights> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut names = Vec::new();
        let mut vars = Vec::new();
        for (name, (r, c), std) in config.params() {
            let data: Vec<f32> = if std == 0.0 {
                vec![1.0; r * c]
            } else {
                let normal = rand_distr::Normal::new(0.0, std).expect("valid std");
                (0..r * c).map(|_| normal.sample(&mut rng) as f32).collect()
            };
            let shape: Vec<usize> = if r == 1 { vec![c] } else { vec![r, c] };
            vars.push(Var::from_tensor(&Tensor::from_vec(
                data,
                shape,
                &Device::Cpu,
            )?)?);
            names.push(name);
        }
        Ok(Weights {
            config,
            names,
            vars,
        })
    }

    /// Weights from named tensors (a loaded checkpoint); every name and shape must match.
    pub fn from_tensors(config: Config, mut map: HashMap<String, Tensor>) -> Result<Weights> {
        let mut names = Vec::new();
        let mut vars = Vec::new();
        for (name, (r, c), _) in config.params() {
            let t = map
                .remove(&name)
                .ok_or_else(|| candle_core::Error::Msg(format!("checkpoint lacks {name}")))?;
            let want: Vec<usize> = if r == 1 { vec![c] } else { vec![r, c] };
            if t.dims() != want.as_slice() || t.dtype() != DType::F32 {
                candle_core::bail!(
                    "checkpoint tensor {name} is {:?} {:?}, expected {want:?} f32",
                    t.dims(),
                    t.dtype()
                );
            }
            vars.push(Var::from_tensor(&t)?);
            names.push(name);
        }
        if let Some(extra) = map.keys().next() {
            candle_core::bail!("checkpoint has an unexpected tensor {extra}");
        }
        Ok(Weights {
            config,
            names,
            vars,
        })
    }

    /// Named copies of the current values (to save, or to start a fine-tune from).
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        self.names
            .iter()
            .zip(&self.vars)
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect()
    }

    /// The variables, for the optimizer.
    pub fn vars(&self) -> Vec<Var> {
        self.vars.clone()
    }

    /// Parameters in all.
    pub fn count(&self) -> usize {
        self.vars.iter().map(|v| v.elem_count()).sum()
    }

    fn get(&self, i: usize) -> &Tensor {
        self.vars[i].as_tensor()
    }
}

/// What differs between training and inference in one forward pass.
trait Ops {
    fn config(&self) -> Config;
    /// Token plus position embeddings of `ids (B, T)` starting at position `start`: `(B, T, d)`.
    fn embed(&self, ids: &Tensor, start: usize) -> Result<Tensor>;
    /// `x (rows, in)` through linear parameter `i`.
    fn linear(&self, i: usize, x: &Tensor) -> Result<Tensor>;
    /// RMSNorm with weight parameter `i`.
    fn norm(&self, i: usize, x: &Tensor) -> Result<Tensor>;
    fn softmax(&self, x: &Tensor) -> Result<Tensor>;
}

/// Fake-quantized training pass over [`Weights`].
struct Train<'a> {
    w: &'a Weights,
    format: Format,
}

impl Ops for Train<'_> {
    fn config(&self) -> Config {
        self.w.config
    }

    fn embed(&self, ids: &Tensor, start: usize) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let tok = self.w.get(0).index_select(&ids.flatten_all()?, 0)?;
        let pos = self.w.get(1).narrow(0, start, t)?;
        tok.reshape((b, t, ()))?.broadcast_add(&pos)
    }

    fn linear(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        let w = fake_quant_weight(self.w.get(i), self.format)?;
        let x = fake_quant_activation(x, self.format)?;
        x.matmul(&w.t()?)
    }

    fn norm(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm_slow(x, self.w.get(i), EPS)
    }

    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

/// Per-layer keys and values of the sequence so far, for decoding.
pub struct KvCache {
    kv: Vec<Option<(Tensor, Tensor)>>,
    /// Positions already in the cache.
    pub len: usize,
}

impl KvCache {
    /// An empty cache for a model of `config`.
    pub fn new(config: Config) -> KvCache {
        KvCache {
            kv: vec![None; config.layers],
            len: 0,
        }
    }
}

/// The forward pass: logits `(B·T, VOCAB)` for `ids (B, T)`. With a cache, `ids` continue the
/// cached sequence and their keys/values are appended to it.
fn forward(ops: &dyn Ops, ids: &Tensor, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
    let cfg = ops.config();
    let (b, t) = ids.dims2()?;
    let start = cache.as_ref().map_or(0, |c| c.len);
    if start + t > cfg.seq_len {
        candle_core::bail!(
            "sequence of {} exceeds the context of {}",
            start + t,
            cfg.seq_len
        );
    }
    let (d, h) = (cfg.d_model, cfg.heads);
    let hd = d / h;
    // Causal mask over (new positions) × (all positions); not needed for one new token.
    let mask = if t > 1 {
        let total = start + t;
        let m: Vec<f32> = (0..t)
            .flat_map(|i| {
                (0..total).map(move |j| {
                    if j <= start + i {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        Some(Tensor::from_vec(m, (t, total), ids.device())?)
    } else {
        None
    };
    let mut x = ops.embed(ids, start)?.reshape((b * t, d))?;
    for layer in 0..cfg.layers {
        let hdn = ops.norm(cfg.block(layer, 0), &x)?;
        let qkv = ops
            .linear(cfg.block(layer, 1), &hdn)?
            .reshape((b, t, 3 * h, hd))?
            .transpose(1, 2)?;
        let q = qkv.narrow(1, 0, h)?.contiguous()?;
        let mut k = qkv.narrow(1, h, h)?.contiguous()?;
        let mut v = qkv.narrow(1, 2 * h, h)?.contiguous()?;
        if let Some(c) = cache.as_deref_mut() {
            if let Some((pk, pv)) = &c.kv[layer] {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            c.kv[layer] = Some((k.clone(), v.clone()));
        }
        let mut att = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
        if let Some(m) = &mask {
            att = att.broadcast_add(m)?;
        }
        let y = ops
            .softmax(&att)?
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b * t, d))?;
        x = (x + ops.linear(cfg.block(layer, 2), &y)?)?;
        let hdn = ops.norm(cfg.block(layer, 3), &x)?;
        let up = ops.linear(cfg.block(layer, 4), &hdn)?.relu()?;
        x = (x + ops.linear(cfg.block(layer, 5), &up)?)?;
    }
    if let Some(c) = cache {
        c.len += t;
    }
    let x = ops.norm(cfg.norm_f(), &x)?;
    ops.linear(cfg.head(), &x)
}

/// Training logits of `ids (B, T)` with the weights fake-quantized as `format`.
pub fn train_logits(w: &Weights, format: Format, ids: &Tensor) -> Result<Tensor> {
    forward(&Train { w, format }, ids, None)
}

/// A model with its linear layers in a real storage format, for evaluation and benchmarks.
pub struct Quantized {
    config: Config,
    format: Format,
    /// Linear layers by parameter index (`None` where the parameter is not a linear layer).
    linears: Vec<Option<QLinear>>,
    /// Embeddings and norm weights, by parameter index (values rounded to the format's dense
    /// dtype, kept in f32 for compute).
    dense: Vec<Option<Tensor>>,
}

impl Quantized {
    /// Converts trained weights to `format`.
    pub fn new(w: &Weights, format: Format) -> Result<Quantized> {
        let cfg = w.config;
        let mut linears = Vec::new();
        let mut dense = Vec::new();
        for i in 0..w.vars.len() {
            let t = w.get(i);
            if t.rank() == 2 && i >= 2 {
                linears.push(Some(QLinear::new(t, format)?));
                dense.push(None);
            } else {
                linears.push(None);
                dense.push(Some(
                    t.to_dtype(format.dense_dtype())?.to_dtype(DType::F32)?,
                ));
            }
        }
        Ok(Quantized {
            config: cfg,
            format,
            linears,
            dense,
        })
    }

    /// The model's shape.
    pub fn model_config(&self) -> Config {
        self.config
    }

    /// Logits `(B·T, VOCAB)`; with a cache, `ids` continue the cached sequence.
    pub fn logits(&self, ids: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        forward(self, ids, cache)
    }

    /// Bytes of all stored weights: linear layers in their format, the rest in the format's
    /// dense dtype (f32 for int8/int4, like llama.cpp's token embeddings and norms here).
    pub fn weight_bytes(&self) -> usize {
        let lin: usize = self.linears.iter().flatten().map(QLinear::bytes).sum();
        let dense: usize = self
            .dense
            .iter()
            .flatten()
            .map(|t| t.elem_count() * self.format.dense_dtype().size_in_bytes())
            .sum();
        lin + dense
    }

    fn dense(&self, i: usize) -> &Tensor {
        self.dense[i].as_ref().expect("a dense parameter")
    }
}

impl Ops for Quantized {
    fn config(&self) -> Config {
        self.config
    }

    fn embed(&self, ids: &Tensor, start: usize) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let tok = self.dense(0).index_select(&ids.flatten_all()?, 0)?;
        let pos = self.dense(1).narrow(0, start, t)?;
        tok.reshape((b, t, ()))?.broadcast_add(&pos)
    }

    fn linear(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        self.linears[i].as_ref().expect("a linear layer").forward(x)
    }

    fn norm(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, self.dense(i), EPS)
    }

    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// Inputs `(B, T)` and next-byte targets `(B·T)` of the windows of `text` starting at `starts`.
pub fn batch(text: &[u8], starts: &[usize], seq_len: usize) -> Result<(Tensor, Tensor)> {
    let mut x = Vec::with_capacity(starts.len() * seq_len);
    let mut y = Vec::with_capacity(starts.len() * seq_len);
    for &s in starts {
        x.extend(text[s..s + seq_len].iter().map(|&b| u32::from(b)));
        y.extend(text[s + 1..s + seq_len + 1].iter().map(|&b| u32::from(b)));
    }
    let b = starts.len();
    Ok((
        Tensor::from_vec(x, (b, seq_len), &Device::Cpu)?,
        Tensor::from_vec(y, b * seq_len, &Device::Cpu)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Config {
        Config {
            d_model: 256,
            layers: 1,
            heads: 4,
            seq_len: 16,
        }
    }

    #[test]
    fn cached_decoding_matches_the_full_pass() {
        let w = Weights::init(tiny(), 1).unwrap();
        let q = Quantized::new(&w, Format::F32).unwrap();
        let text = b"It is a truth universally acknowledged";
        let (ids, _) = batch(text, &[0, 5], 12).unwrap();
        let full = q
            .logits(&ids, None)
            .unwrap()
            .reshape((2, 12, VOCAB))
            .unwrap();
        let mut cache = KvCache::new(tiny());
        let mut last = None;
        // A 4-token prefill, then one token at a time.
        q.logits(&ids.narrow(1, 0, 4).unwrap(), Some(&mut cache))
            .unwrap();
        for i in 4..12 {
            last = Some(
                q.logits(&ids.narrow(1, i, 1).unwrap(), Some(&mut cache))
                    .unwrap(),
            );
        }
        let want = full.narrow(1, 11, 1).unwrap().reshape((2, VOCAB)).unwrap();
        let diff = (last.unwrap() - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn training_pass_equals_inference_pass_in_f32() {
        let w = Weights::init(tiny(), 2).unwrap();
        let (ids, _) = batch(b"Persuasion, by Jane Austen (1818)", &[0, 3], 16).unwrap();
        let a = train_logits(&w, Format::F32, &ids).unwrap();
        let b = Quantized::new(&w, Format::F32)
            .unwrap()
            .logits(&ids, None)
            .unwrap();
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "{diff}");
    }

    #[test]
    fn init_is_deterministic() {
        let a = Weights::init(tiny(), 5).unwrap().tensors().unwrap();
        let b = Weights::init(tiny(), 5).unwrap().tensors().unwrap();
        for (k, t) in &a {
            let d = (t - &b[k]).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{k}");
        }
    }
}
