//! The text the workload learns from, compiled into the binary so a trial runs from any working
//! directory: two public-domain Jane Austen novels (source and license in
//! `data/qat-bench/README.md`). The model reads bytes (vocabulary 256).

/// Base-model training text: *Pride and Prejudice*.
pub const BASE: &[u8] = include_bytes!("../../../data/qat-bench/pride-and-prejudice.txt");

/// The fine-tuning domain: *Persuasion*, which the base model never sees.
pub const DOMAIN: &[u8] = include_bytes!("../../../data/qat-bench/persuasion.txt");

/// The share of [`DOMAIN`] used for fine-tuning; the rest is the held-out eval text.
const TRAIN_SHARE: f64 = 0.9;

/// Upper bound of `trial.qat.eval_tokens` (the held-out text's length, rounded down).
pub const EVAL_BYTES_MAX: usize = 46_000;

/// The fine-tuning split of the domain.
pub fn domain_train() -> &'static [u8] {
    &DOMAIN[..split()]
}

/// The held-out eval split of the domain (never trained on, by the base model or a trial).
pub fn domain_eval() -> &'static [u8] {
    &DOMAIN[split()..]
}

fn split() -> usize {
    (DOMAIN.len() as f64 * TRAIN_SHARE) as usize
}

/// A SHA-256 of everything the base model depends on from here, for its cache key.
pub fn digest() -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(BASE);
    h.update(DOMAIN);
    hex(&h.finalize())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_are_disjoint_and_sized() {
        let (t, e) = (super::domain_train(), super::domain_eval());
        assert_eq!(t.len() + e.len(), super::DOMAIN.len());
        assert!(e.len() >= super::EVAL_BYTES_MAX, "{}", e.len());
        assert!(super::BASE.len() + super::DOMAIN.len() <= 2 << 20);
    }
}
