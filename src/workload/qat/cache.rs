//! The base model, trained once and cached in the state directory
//! (`STATE/cache/qat-bench/base-KEY.safetensors` + `base-KEY.json`). The key covers everything
//! the weights depend on (shape, step budget, recipe, corpus); the JSON holds the file's
//! SHA-256, checked on every load: a missing, truncated or corrupt checkpoint is rebuilt, never
//! used. Trials that start together wait on a file lock while the first one trains it.

use super::corpus;
use super::model::{Config, Weights};
use super::quant::Format;
use super::settings::QatSettings;
use super::train::{train, Schedule, Stop};
use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bumped whenever the base recipe changes, so old checkpoints are not reused.
const RECIPE: u32 = 1;
/// The base model's init and batch-order seed (the same for every study).
const BASE_SEED: u64 = 0x5eed;
/// Base training batch size and peak learning rate.
const BASE_BATCH: usize = 16;
const BASE_LR: f64 = 2e-3;

/// What the JSON beside a checkpoint says.
#[derive(Serialize, Deserialize)]
struct Meta {
    recipe: u32,
    sha256: String,
    d_model: usize,
    layers: usize,
    heads: usize,
    seq_len: usize,
    base_steps: usize,
    corpus_sha256: String,
    final_train_loss: f64,
    train_seconds: f64,
}

/// A loaded (or freshly trained) base model.
pub struct Base {
    /// Its weights.
    pub weights: Weights,
    /// The checkpoint file.
    pub path: PathBuf,
    /// Whether this call trained it (else it came from the cache).
    pub trained: bool,
}

/// The cache key of the base model `s` asks for.
fn key(s: &QatSettings) -> String {
    let mut h = Sha256::new();
    h.update(
        format!(
            "recipe={RECIPE} d={} l={} h={} t={} steps={} corpus={}",
            s.d_model,
            s.layers,
            s.heads,
            s.seq_len,
            s.base_steps,
            corpus::digest()
        )
        .as_bytes(),
    );
    corpus::hex(&h.finalize()[..8])
}

/// The checkpoint and checksum files of the base model `s` asks for, and its lock file.
fn paths(dir: &Path, s: &QatSettings) -> (PathBuf, PathBuf, PathBuf) {
    let k = key(s);
    (
        dir.join(format!("base-{k}.safetensors")),
        dir.join(format!("base-{k}.json")),
        dir.join(format!("base-{k}.lock")),
    )
}

/// Takes the cache entry's lock (blocking): one trial trains, the others wait and then load.
fn lock(dir: &Path, lock_path: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the cache directory {}", dir.display()))?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow!("cannot lock {}: {e}", lock_path.display()))
}

/// Whether a valid (checksum-verified) base model for `s` is in `dir`.
pub fn is_cached(dir: &Path, s: &QatSettings) -> bool {
    let (ckpt, meta, lock_path) = paths(dir, s);
    let Ok(_lock) = lock(dir, &lock_path) else {
        return false;
    };
    load(&ckpt, &meta, Config::from_settings(s)).is_ok()
}

/// Loads the base model from `dir`, or trains and stores it when it is missing or corrupt.
/// `log` receives progress lines (the trial's stderr).
pub fn load_or_train(dir: &Path, s: &QatSettings, log: &mut dyn FnMut(String)) -> Result<Base> {
    let (ckpt, meta, lock_path) = paths(dir, s);
    // Held until this function returns.
    let _lock = lock(dir, &lock_path)?;
    let config = Config::from_settings(s);
    match load(&ckpt, &meta, config) {
        Ok(weights) => {
            return Ok(Base {
                weights,
                path: ckpt,
                trained: false,
            })
        }
        Err(why) => log(format!(
            "base model: {why}; training it ({} steps)",
            s.base_steps
        )),
    }
    let started = std::time::Instant::now();
    let weights = Weights::init(config, BASE_SEED)?;
    let sched = Schedule {
        steps: s.base_steps,
        batch_size: BASE_BATCH,
        lr: BASE_LR,
        warmup: (s.base_steps / 20).clamp(1, 100),
        final_frac: 0.1,
        weight_decay: 0.01,
        seed: BASE_SEED,
    };
    let mut last = f64::NAN;
    let every = (s.base_steps / 10).max(1);
    let result = train(&weights, Format::F32, corpus::BASE, &sched, |step, loss| {
        last = loss;
        if step % every == 0 || step == s.base_steps {
            log(format!(
                "base model: step {step}/{}: train loss {loss:.4}",
                s.base_steps
            ));
        }
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(Stop::Diverged(step)) => {
            return Err(anyhow!("base model training diverged at step {step}"))
        }
        Err(Stop::Error(e)) => return Err(e.into()),
    }
    let train_seconds = started.elapsed().as_secs_f64();
    save(&weights, &ckpt, &meta, s, last, train_seconds)?;
    log(format!(
        "base model: trained in {train_seconds:.1} s, cached at {}",
        ckpt.display()
    ));
    Ok(Base {
        weights,
        path: ckpt,
        trained: true,
    })
}

fn load(ckpt: &Path, meta: &Path, config: Config) -> std::result::Result<Weights, String> {
    let m = match std::fs::read(meta) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("not cached yet".into()),
        Err(e) => return Err(format!("cannot read {}: {e}", meta.display())),
    };
    let m: Meta = serde_json::from_slice(&m)
        .map_err(|e| format!("{} is unreadable ({e})", meta.display()))?;
    let bytes = std::fs::read(ckpt).map_err(|e| format!("cannot read {}: {e}", ckpt.display()))?;
    let sum = corpus::hex(&Sha256::digest(&bytes));
    if sum != m.sha256 {
        return Err(format!(
            "{} is corrupt (sha256 {sum}, expected {})",
            ckpt.display(),
            m.sha256
        ));
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu)
        .map_err(|e| format!("{} does not load ({e})", ckpt.display()))?;
    Weights::from_tensors(config, tensors)
        .map_err(|e| format!("{} does not fit the model ({e})", ckpt.display()))
}

/// Writes `path` through a temporary file and a rename, synced: never a half-written file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    Ok(())
}

fn save(
    w: &Weights,
    ckpt: &Path,
    meta: &Path,
    s: &QatSettings,
    final_train_loss: f64,
    train_seconds: f64,
) -> Result<()> {
    let tmp = ckpt.with_extension(format!("st{}", std::process::id()));
    candle_core::safetensors::save(&w.tensors()?, &tmp)?;
    let bytes = std::fs::read(&tmp)?;
    let _ = std::fs::remove_file(&tmp);
    let m = Meta {
        recipe: RECIPE,
        sha256: corpus::hex(&Sha256::digest(&bytes)),
        d_model: s.d_model,
        layers: s.layers,
        heads: s.heads,
        seq_len: s.seq_len,
        base_steps: s.base_steps,
        corpus_sha256: corpus::digest(),
        final_train_loss,
        train_seconds,
    };
    // Checkpoint first, then the checksum that vouches for it.
    write_atomic(ckpt, &bytes)?;
    write_atomic(meta, serde_json::to_string_pretty(&m)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> QatSettings {
        let raw: super::super::settings::RawQatSettings =
            toml::from_str("layers = 1\nseq_len = 16\nbase_steps = 2\neval_tokens = 64").unwrap();
        super::super::settings::validate(Some(raw), 1).unwrap()
    }

    #[test]
    fn cached_then_loaded_then_rebuilt_when_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let s = tiny();
        let mut lines = Vec::new();
        let a = load_or_train(dir.path(), &s, &mut |l| lines.push(l)).unwrap();
        assert!(a.trained);
        let b = load_or_train(dir.path(), &s, &mut |l| lines.push(l)).unwrap();
        assert!(!b.trained, "second call loads the cache");
        // Flip one byte in the middle of the checkpoint: detected, rebuilt.
        let mut bytes = std::fs::read(&a.path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&a.path, &bytes).unwrap();
        lines.clear();
        let c = load_or_train(dir.path(), &s, &mut |l| lines.push(l)).unwrap();
        assert!(c.trained);
        assert!(lines[0].contains("corrupt"), "{lines:?}");
        // Rebuilt deterministically: same bytes as the first time.
        let first = a.weights.tensors().unwrap();
        for (k, t) in c.weights.tensors().unwrap() {
            let d = (t - &first[&k]).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{k}");
        }
        // A missing checkpoint with its JSON left behind is rebuilt too.
        std::fs::remove_file(&a.path).unwrap();
        assert!(load_or_train(dir.path(), &s, &mut |_| {}).unwrap().trained);
    }
}
