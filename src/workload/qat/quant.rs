//! Quantization formats: the fake quantization used while fine-tuning (straight-through
//! estimator) and the real storage the benchmark runs on (candle `QTensor` / half tensors).
//!
//! Fake and real are kept close so that what QAT learns to tolerate is what inference does:
//! - `int8` is stored as Q8_0 (blocks of 32 weights, one scale, symmetric, ±127). The CPU
//!   kernel quantizes activations to Q8_0 blocks as well, so training fake-quantizes both.
//! - `int4` is stored as Q4K (super-blocks of 256, sub-blocks of 32 with their own scale and
//!   minimum, 4-bit codes 0..15). Training fake-quantizes weights per 32-block asymmetrically
//!   (scale and minimum kept in full precision: Q4K's 6-bit scale codes are not simulated) and
//!   activations as the kernel does (8-bit blocks of 256, Q8K).
//! - `f16` / `bf16` round weights and activations to the half type; `f32` is the identity.
//!
//! Q4K rather than Q4_0: on x86 candle's Q4_0 kernel is slow for more than one row
//! (shared/notes/crate-facts.md), which would make the batch benchmark meaningless.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Result, Tensor, D};

/// A quantization format of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// No quantization.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit, Q8_0.
    Int8,
    /// 4-bit, Q4K.
    Int4,
}

impl Format {
    /// Parses a `space.quantization` choice.
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "f32" => Format::F32,
            "f16" => Format::F16,
            "bf16" => Format::Bf16,
            "int8" => Format::Int8,
            "int4" => Format::Int4,
            _ => return None,
        })
    }

    /// The name as a study writes it.
    pub fn name(self) -> &'static str {
        match self {
            Format::F32 => "f32",
            Format::F16 => "f16",
            Format::Bf16 => "bf16",
            Format::Int8 => "int8",
            Format::Int4 => "int4",
        }
    }

    /// What the weights of the linear layers are stored as, for the trial's info line.
    pub fn storage(self) -> &'static str {
        match self {
            Format::F32 => "f32",
            Format::F16 => "f16",
            Format::Bf16 => "bf16",
            Format::Int8 => "Q8_0",
            Format::Int4 => "Q4K",
        }
    }

    /// The dtype of the weights that are not linear layers (embeddings, norms).
    pub fn dense_dtype(self) -> DType {
        match self {
            Format::F16 => DType::F16,
            Format::Bf16 => DType::BF16,
            _ => DType::F32,
        }
    }
}

/// `x + (q(x) - x).detach()`: the value of `q(x)`, the gradient of the identity (`round` has a
/// zero gradient, so without this nothing upstream of a quantizer would learn).
fn ste(x: &Tensor, q: Tensor) -> Result<Tensor> {
    x + (q - x)?.detach()
}

/// Symmetric round-to-nearest per block of `block` along the last dimension, codes in
/// `-max_code..=max_code`.
fn symmetric_blocks(x: &Tensor, block: usize, max_code: f64) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let n = *dims.last().expect("at least one dim");
    let b = x.reshape(((), n / block, block))?;
    let amax = b.abs()?.max_keepdim(D::Minus1)?;
    let scale = (amax / max_code)?.clamp(1e-12f32, f32::MAX)?;
    let q = b
        .broadcast_div(&scale)?
        .round()?
        .clamp(-max_code, max_code)?
        .broadcast_mul(&scale)?;
    q.reshape(dims)
}

/// Asymmetric per-block quantization (scale and minimum), codes `0..=levels`.
fn asymmetric_blocks(x: &Tensor, block: usize, levels: f64) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let n = *dims.last().expect("at least one dim");
    let b = x.reshape(((), n / block, block))?;
    let lo = b.min_keepdim(D::Minus1)?;
    let hi = b.max_keepdim(D::Minus1)?;
    let scale = ((hi - &lo)? / levels)?.clamp(1e-12f32, f32::MAX)?;
    let q = b
        .broadcast_sub(&lo)?
        .broadcast_div(&scale)?
        .round()?
        .clamp(0.0, levels)?
        .broadcast_mul(&scale)?
        .broadcast_add(&lo)?;
    q.reshape(dims)
}

fn round_to(x: &Tensor, dtype: DType) -> Result<Tensor> {
    x.to_dtype(dtype)?.to_dtype(DType::F32)
}

/// Fake-quantizes a weight matrix `(out, in)` as `format` stores it, with a straight-through
/// gradient.
pub fn fake_quant_weight(w: &Tensor, format: Format) -> Result<Tensor> {
    let q = match format {
        Format::F32 => return Ok(w.clone()),
        Format::F16 => round_to(w, DType::F16)?,
        Format::Bf16 => round_to(w, DType::BF16)?,
        Format::Int8 => symmetric_blocks(w, 32, 127.0)?,
        Format::Int4 => asymmetric_blocks(w, 32, 15.0)?,
    };
    ste(w, q)
}

/// Fake-quantizes the input rows of a linear layer as the format's kernel does.
pub fn fake_quant_activation(x: &Tensor, format: Format) -> Result<Tensor> {
    let q = match format {
        Format::F32 => return Ok(x.clone()),
        Format::F16 => round_to(x, DType::F16)?,
        Format::Bf16 => round_to(x, DType::BF16)?,
        Format::Int8 => symmetric_blocks(x, 32, 127.0)?,
        Format::Int4 => symmetric_blocks(x, 256, 127.0)?,
    };
    ste(x, q)
}

/// A linear layer (no bias) with its weight in a real storage format, for inference.
pub enum QLinear {
    /// f32 weight, f32 matmul.
    Dense(Tensor),
    /// Half-precision weight (f16 or bf16): inputs are cast to it and the matmul runs in it.
    Half(Tensor),
    /// A quantized weight run through candle's quantized matmul kernels.
    Quantized(QMatMul),
}

impl QLinear {
    /// Converts an f32 weight `(out, in)` to `format`.
    pub fn new(w: &Tensor, format: Format) -> Result<QLinear> {
        Ok(match format {
            Format::F32 => QLinear::Dense(w.contiguous()?),
            Format::F16 => QLinear::Half(w.to_dtype(DType::F16)?),
            Format::Bf16 => QLinear::Half(w.to_dtype(DType::BF16)?),
            Format::Int8 => QLinear::Quantized(QMatMul::from_qtensor(QTensor::quantize(
                w,
                GgmlDType::Q8_0,
            )?)?),
            Format::Int4 => QLinear::Quantized(QMatMul::from_qtensor(QTensor::quantize(
                w,
                GgmlDType::Q4K,
            )?)?),
        })
    }

    /// `x @ w.T` for `x` of shape `(rows, in)` (f32 in, f32 out).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            QLinear::Dense(w) => x.matmul(&w.t()?),
            QLinear::Half(w) => x.to_dtype(w.dtype())?.matmul(&w.t()?)?.to_dtype(DType::F32),
            QLinear::Quantized(q) => q.forward(x),
        }
    }

    /// Bytes the stored weight takes.
    pub fn bytes(&self) -> usize {
        match self {
            QLinear::Dense(w) | QLinear::Half(w) => w.elem_count() * w.dtype().size_in_bytes(),
            QLinear::Quantized(QMatMul::QTensor(q)) => q.storage_size_in_bytes(),
            QLinear::Quantized(QMatMul::Tensor(w) | QMatMul::TensorF16(w)) => {
                w.elem_count() * w.dtype().size_in_bytes()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn weight(rows: usize, cols: usize) -> Tensor {
        // A deterministic, sign-varying, non-uniform pattern.
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| ((i as f32 * 0.7311).sin() * 0.05) * (1.0 + (i % 7) as f32 / 3.0))
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().sqr().unwrap().sum_all().unwrap();
        let n = b.sqr().unwrap().sum_all().unwrap();
        (d.to_scalar::<f32>().unwrap() / n.to_scalar::<f32>().unwrap()).sqrt()
    }

    #[test]
    fn gradient_flows_through_fake_quant() {
        for format in [Format::F16, Format::Bf16, Format::Int8, Format::Int4] {
            let w = Var::from_tensor(&weight(8, 256)).unwrap();
            let x = Tensor::ones((3, 256), DType::F32, &Device::Cpu).unwrap();
            let wq = fake_quant_weight(w.as_tensor(), format).unwrap();
            let xq = fake_quant_activation(&x, format).unwrap();
            let loss = xq.matmul(&wq.t().unwrap()).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let g = grads.get(w.as_tensor()).expect("weight has a gradient");
            // d(sum(x @ w.T))/dw = column sums of x = 3 everywhere (straight-through).
            let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
            assert!(
                g.iter().all(|v| (v - 3.0).abs() < 1e-2),
                "{format:?}: {g:?}"
            );
            // And the forward value is the quantized one, not the original.
            if matches!(format, Format::Int8 | Format::Int4) {
                assert!(rel_err(&wq, w.as_tensor()) > 1e-4, "{format:?}");
            }
        }
    }

    #[test]
    fn int8_round_trips_within_tolerance() {
        let w = weight(64, 512);
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let back = q.dequantize(&Device::Cpu).unwrap();
        let e = rel_err(&back, &w);
        assert!(e < 0.01, "Q8_0 relative error {e}");
        // The fake quantizer trained against is the same rounding (up to Q8_0's f16 scale).
        let fake = symmetric_blocks(&w, 32, 127.0).unwrap();
        assert!(rel_err(&back, &fake) < 2e-3, "{}", rel_err(&back, &fake));
        // 34 bytes per block of 32 weights.
        assert_eq!(q.storage_size_in_bytes(), 64 * 512 / 32 * 34);
    }

    #[test]
    fn int4_matches_its_fake_quant_roughly() {
        let w = weight(16, 512);
        let back = QTensor::quantize(&w, GgmlDType::Q4K)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let fake = asymmetric_blocks(&w, 32, 15.0).unwrap();
        assert!(rel_err(&back, &w) < 0.15, "{}", rel_err(&back, &w));
        assert!(rel_err(&fake, &w) < 0.15, "{}", rel_err(&fake, &w));
        assert!(rel_err(&back, &fake) < 0.1, "{}", rel_err(&back, &fake));
    }

    #[test]
    fn quantized_linear_agrees_with_dense() {
        let w = weight(32, 256);
        let x = weight(4, 256);
        let dense = QLinear::new(&w, Format::F32).unwrap().forward(&x).unwrap();
        for (format, tol) in [
            (Format::F16, 1e-3),
            (Format::Bf16, 1e-2),
            (Format::Int8, 0.02),
            (Format::Int4, 0.15),
        ] {
            let l = QLinear::new(&w, format).unwrap();
            let y = l.forward(&x).unwrap();
            let e = rel_err(&y, &dense);
            assert!(e < tol, "{format:?}: relative error {e}");
            assert!(l.bytes() < 32 * 256 * 4, "{format:?}");
        }
    }
}
