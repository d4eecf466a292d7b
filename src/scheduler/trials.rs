//! A study's trials in copy-on-write chunks: the scheduler mutates them in place, and a
//! published snapshot is a clone of the chunk list (a few hundred pointers for 100,000
//! trials). Each record sits behind its own `Arc`, so the first change to a chunk after a
//! snapshot copies that chunk's pointers and the one record changed — not every record of
//! the chunk with its strings (which was most of the loop's allocations per finished trial).

use quantune_state::TrialRecord;
use std::sync::Arc;

/// Trials per chunk: small enough that copying one on write is cheap, large enough that the
/// chunk list of a big study stays short.
const CHUNK: usize = 256;

/// Trials indexed by number (trial `n` at position `n`; the loader refuses gaps).
#[derive(Clone, Debug, Default)]
pub struct Trials {
    chunks: Vec<Arc<Vec<Arc<TrialRecord>>>>,
    len: usize,
}

impl Trials {
    /// From trials numbered 0, 1, 2, … in order.
    pub fn from_vec(trials: Vec<TrialRecord>) -> Self {
        let mut t = Trials::default();
        for tr in trials {
            t.push(tr);
        }
        t
    }

    /// How many trials.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Trial `n`.
    pub fn get(&self, n: u64) -> Option<&TrialRecord> {
        let n = usize::try_from(n).ok()?;
        self.chunks.get(n / CHUNK)?.get(n % CHUNK).map(|t| &**t)
    }

    /// Trial `n`, to change (copies its chunk if a snapshot shares it).
    pub fn get_mut(&mut self, n: u64) -> Option<&mut TrialRecord> {
        let n = usize::try_from(n).ok()?;
        Arc::make_mut(self.chunks.get_mut(n / CHUNK)?)
            .get_mut(n % CHUNK)
            .map(Arc::make_mut)
    }

    /// Appends the next trial (its number must be `len()`).
    pub fn push(&mut self, t: TrialRecord) {
        debug_assert_eq!(t.number as usize, self.len);
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => Arc::make_mut(c).push(Arc::new(t)),
            _ => {
                let mut c = Vec::with_capacity(CHUNK);
                c.push(Arc::new(t));
                self.chunks.push(Arc::new(c));
            }
        }
        self.len += 1;
    }

    /// Every trial by number.
    pub fn iter(&self) -> impl Iterator<Item = &TrialRecord> + Clone {
        self.chunks.iter().flat_map(|c| c.iter().map(|t| &**t))
    }

    /// A copy of every trial, by number.
    pub fn to_vec(&self) -> Vec<TrialRecord> {
        self.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantune_strategies::Params;

    #[test]
    fn a_snapshot_keeps_what_it_saw() {
        let mut t = Trials::default();
        for n in 0..600 {
            t.push(TrialRecord::new("s", n, Params::new(), 0.0));
        }
        assert_eq!(t.len(), 600);
        let snap = t.clone();
        t.get_mut(599).unwrap().reason = Some("changed".into());
        assert_eq!(snap.get(599).unwrap().reason, None);
        assert_eq!(t.get(599).unwrap().reason.as_deref(), Some("changed"));
        // Chunks the change did not touch are still shared, and so are the records of the
        // changed chunk that did not change.
        assert!(Arc::ptr_eq(&snap.chunks[0], &t.chunks[0]));
        assert!(!Arc::ptr_eq(&snap.chunks[2], &t.chunks[2]));
        assert!(Arc::ptr_eq(&snap.chunks[2][0], &t.chunks[2][0]));
        assert!(!Arc::ptr_eq(
            &snap.chunks[2][599 % CHUNK],
            &t.chunks[2][599 % CHUNK]
        ));
        assert_eq!(
            t.iter().map(|r| r.number).collect::<Vec<_>>(),
            (0..600).collect::<Vec<_>>()
        );
        assert!(t.get(600).is_none());
    }
}
