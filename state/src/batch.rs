//! Group commit for the scheduler: everything one turn of its loop changed — new and updated
//! studies, trials, intermediate reports — written in one transaction and made durable by one
//! flush, so that a burst of events or API calls costs one fsync, not one each.

use crate::purge::purge_key;
use crate::records::{Event, Report, StudyRecord, TrialRecord};
use crate::store::{
    check_name, check_report, check_study, check_trial, decode, decode_tx, decode_u64, encode_now,
    report_key, study_prefix, study_seq_key, trial_key, valid_name, Store, StoreError, Tx,
    TxResult, UNFINISHED_KEY,
};
use sled::transaction::abort;
use sled::IVec;
use std::sync::MutexGuard;

/// The writes of one turn. Applied in field order (new studies first, so their trials may
/// follow in the same batch); all of them land, or none.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// Studies to create (`StudyExists` if a name is taken).
    pub new_studies: Vec<StudyRecord>,
    /// Study records to replace (`NoStudy` if missing); an event when the state changed.
    pub studies: Vec<StudyRecord>,
    /// Trials to insert or replace; an event when the state or attempt changed.
    pub trials: Vec<TrialRecord>,
    /// Intermediate reports: (study, trial, report), replacing one at the same step.
    pub reports: Vec<(String, u64, Report)>,
    /// Studies to delete, applied last: each record goes and a purge marker comes, in this
    /// transaction; [`Store::purge`] removes the rest (see [`crate::purge`]). A name that is
    /// not stored is skipped.
    pub deleted: Vec<String>,
}

/// Records written in one transaction at most (see [`Store::commit`]).
pub const ONE_TRANSACTION: usize = 2000;

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.new_studies.is_empty()
            && self.studies.is_empty()
            && self.trials.is_empty()
            && self.reports.is_empty()
            && self.deleted.is_empty()
    }

    /// How many records the batch writes.
    pub fn len(&self) -> usize {
        self.new_studies.len()
            + self.studies.len()
            + self.trials.len()
            + self.reports.len()
            + self.deleted.len()
    }
}

impl Store {
    /// Every intermediate report of a study's trials, as (trial, report) by trial and step:
    /// one scan, for loading a study with many trials quickly.
    pub fn study_reports(&self, study: &str) -> Result<Vec<(u64, Report)>, StoreError> {
        if !valid_name(study) {
            return Ok(Vec::new());
        }
        let prefix = study_prefix(study);
        self.reports
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, v) = kv?;
                let n = k
                    .get(prefix.len()..prefix.len() + 8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| StoreError::Corrupt {
                        tree: "reports",
                        detail: format!("key of {} bytes is too short", k.len()),
                    })?;
                Ok((n, decode("reports", &v)?))
            })
            .collect()
    }

    /// Writes `batch` and flushes once. Durable when it returns `Ok`; all or nothing, also
    /// across a crash. A batch of more than [`ONE_TRANSACTION`] records (a big import) is
    /// written as [`Store::commit_pieces`] writes it, in pieces of that many records, so that
    /// neither the caller nor sled holds one transaction of all of it.
    pub fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.len() <= ONE_TRANSACTION {
            if batch.is_empty() {
                return Ok(());
            }
            self.commit_piece(&mut self.lock_writer(), batch, Piece::Only)?;
            return self.sync();
        }
        let head = Batch {
            new_studies: batch.new_studies.clone(),
            studies: batch.studies.clone(),
            ..Batch::default()
        };
        let trials = batch.trials.chunks(ONE_TRANSACTION).map(|c| Batch {
            trials: c.to_vec(),
            ..Batch::default()
        });
        let reports = batch.reports.chunks(ONE_TRANSACTION).map(|c| Batch {
            reports: c.to_vec(),
            ..Batch::default()
        });
        let tail = Batch {
            deleted: batch.deleted.clone(),
            ..Batch::default()
        };
        self.commit_pieces(
            std::iter::once(head)
                .chain(trials)
                .chain(reports)
                .chain(std::iter::once(tail)),
        )
    }

    /// Writes `pieces`, in order, as one commit: all of them or none, even if the process is
    /// killed half-way (see the `undo` tree in [`crate::store`]). A single piece is one
    /// transaction; several are one transaction each (taken from the iterator only as they are
    /// written, so the caller can build them lazily) and each is flushed, so that sled does
    /// not hold all of them in memory. Durable when it returns `Ok`; on an error, what the
    /// pieces wrote so far is undone (or, should that fail too, at the next [`Store::open`]).
    pub fn commit_pieces(&self, pieces: impl IntoIterator<Item = Batch>) -> Result<(), StoreError> {
        let mut pieces = pieces.into_iter().filter(|b| !b.is_empty()).peekable();
        let Some(first) = pieces.next() else {
            return Ok(());
        };
        let mut next = self.lock_writer();
        if pieces.peek().is_none() {
            self.commit_piece(&mut next, &first, Piece::Only)?;
            drop(next);
            return self.sync();
        }
        let begin = *next;
        if !self.undo.is_empty() {
            self.undo.clear()?;
        }
        let mut written = self
            .commit_piece(&mut next, &first, Piece::First(begin))
            .and_then(|()| self.sync());
        while written.is_ok() {
            let Some(piece) = pieces.next() else { break };
            let at = if pieces.peek().is_none() {
                Piece::Last
            } else {
                Piece::Middle
            };
            written = self
                .commit_piece(&mut next, &piece, at)
                .and_then(|()| self.sync());
        }
        if let Err(e) = written {
            // Best effort: if this fails too, the marker is still set and the next open
            // finishes the job.
            let _ = self.roll_back(&mut next, begin);
            return Err(e);
        }
        drop(next);
        // The commit is durable. What is left in `undo` (should this fail, or the process
        // stop now) is harmless without the marker: the next commit in pieces or open
        // clears it.
        let _ = self.undo.clear();
        Ok(())
    }

    /// At open: undoes a commit in several pieces that did not finish (the marker is set), or
    /// clears the undo records of one that did. Returns how many records were put back.
    pub(crate) fn finish_unfinished(&self) -> Result<Option<usize>, StoreError> {
        let Some(marker) = self.meta.get(UNFINISHED_KEY)? else {
            if !self.undo.is_empty() {
                self.undo.clear()?;
                self.sync()?;
            }
            return Ok(None);
        };
        let begin = decode_u64(&marker).ok_or_else(|| StoreError::Corrupt {
            tree: "meta",
            detail: format!("unfinished_commit is {} bytes, not 8", marker.len()),
        })?;
        let mut next = self.lock_writer();
        self.roll_back(&mut next, begin).map(Some)
    }

    /// Puts every record an unfinished commit wrote back as its `undo` entry says, removes
    /// the events from sequence number `begin` on, then the marker; flushes. Each step is its
    /// own transaction of at most [`ONE_TRANSACTION`] records that also removes what it has
    /// undone, so a crash during this just leaves less to undo at the next open.
    fn roll_back(&self, next: &mut MutexGuard<'_, u64>, begin: u64) -> Result<usize, StoreError> {
        let mut undone = 0;
        loop {
            let entries = self
                .undo
                .iter()
                .take(ONE_TRANSACTION)
                .collect::<Result<Vec<_>, _>>()?;
            if entries.is_empty() {
                break;
            }
            self.transact(next, |tx, _| {
                for (k, v) in &entries {
                    let tree = match k.first() {
                        Some(b's') => tx.studies,
                        Some(b't') => tx.trials,
                        Some(b'r') => tx.reports,
                        Some(b'm') => tx.meta,
                        _ => {
                            return abort(StoreError::Corrupt {
                                tree: "undo",
                                detail: format!("key with an unknown tree tag: {:?}", k.first()),
                            })
                        }
                    };
                    match v.split_first() {
                        Some((1, old)) => tree.insert(&k[1..], old)?,
                        _ => tree.remove(&k[1..])?,
                    };
                    tx.undo.remove(k)?;
                }
                Ok(())
            })?;
            undone += entries.len();
        }
        loop {
            let events = self
                .events
                .range(begin.to_be_bytes()..)
                .take(ONE_TRANSACTION)
                .collect::<Result<Vec<_>, _>>()?;
            if events.is_empty() {
                break;
            }
            let decoded = events
                .iter()
                .map(|(_, v)| decode::<Event>("events", v))
                .collect::<Result<Vec<_>, _>>()?;
            self.transact(next, |tx, _| {
                for ((k, _), e) in events.iter().zip(&decoded) {
                    tx.events.remove(k)?;
                    tx.study_events.remove(study_seq_key(&e.study, e.seq))?;
                }
                Ok(())
            })?;
        }
        self.transact(next, |tx, _| {
            tx.meta.remove(UNFINISHED_KEY)?;
            Ok(())
        })?;
        self.sync()?;
        Ok(undone)
    }

    /// One transaction for `batch`, without the flush; `piece` says where it stands in its
    /// commit (what to keep for undoing it, when to set and clear the marker).
    fn commit_piece(
        &self,
        next: &mut MutexGuard<'_, u64>,
        batch: &Batch,
        piece: Piece,
    ) -> Result<(), StoreError> {
        let mut new_studies = Vec::with_capacity(batch.new_studies.len());
        for s in &batch.new_studies {
            check_name(&s.name)?;
            check_study(s)?;
            new_studies.push(encode_now(s)?);
        }
        let mut studies = Vec::with_capacity(batch.studies.len());
        for s in &batch.studies {
            check_name(&s.name)?;
            check_study(s)?;
            studies.push(encode_now(s)?);
        }
        let mut trials = Vec::with_capacity(batch.trials.len());
        for t in &batch.trials {
            check_name(&t.study)?;
            check_trial(t)?;
            trials.push((trial_key(&t.study, t.number), encode_now(t)?));
        }
        let mut reports = Vec::with_capacity(batch.reports.len());
        for (study, trial, r) in &batch.reports {
            check_name(study)?;
            check_report(study, *trial, r)?;
            reports.push((report_key(study, *trial, r.step), encode_now(r)?));
        }
        let undo = !matches!(piece, Piece::Only);
        self.transact(next, |tx, log| {
            match piece {
                Piece::First(begin) => {
                    tx.meta.insert(UNFINISHED_KEY, &begin.to_be_bytes())?;
                }
                Piece::Last => {
                    tx.meta.remove(UNFINISHED_KEY)?;
                }
                Piece::Only | Piece::Middle => {}
            }
            let keep = |tag: u8, key: &[u8], old: Option<&IVec>| -> TxResult<()> {
                if undo {
                    remember(tx, tag, key, old)?;
                }
                Ok(())
            };
            for (s, value) in batch.new_studies.iter().zip(&new_studies) {
                if tx.studies.get(s.name.as_bytes())?.is_some() {
                    return abort(StoreError::StudyExists(s.name.clone()));
                }
                if tx.meta.get(purge_key(&s.name))?.is_some() {
                    return abort(StoreError::BeingDeleted(s.name.clone()));
                }
                tx.studies.insert(s.name.as_bytes(), value.as_slice())?;
                keep(b's', s.name.as_bytes(), None)?;
                log.append(tx, &s.name, None, "study created".to_string())?;
            }
            for (s, value) in batch.studies.iter().zip(&studies) {
                let Some(old) = tx.studies.get(s.name.as_bytes())? else {
                    return abort(StoreError::NoStudy(s.name.clone()));
                };
                keep(b's', s.name.as_bytes(), Some(&old))?;
                let old: StudyRecord = decode_tx("studies", &old)?;
                tx.studies.insert(s.name.as_bytes(), value.as_slice())?;
                if old.state != s.state {
                    log.append(tx, &s.name, None, format!("study {}", s.state.as_str()))?;
                }
            }
            for (t, (key, value)) in batch.trials.iter().zip(&trials) {
                if tx.studies.get(t.study.as_bytes())?.is_none() {
                    return abort(StoreError::NoStudy(t.study.clone()));
                }
                let old = tx.trials.insert(key.as_slice(), value.as_slice())?;
                keep(b't', key, old.as_ref())?;
                let changed = match old {
                    Some(old) => {
                        let old: TrialRecord = decode_tx("trials", &old)?;
                        old.state != t.state || old.attempt != t.attempt
                    }
                    None => true,
                };
                if changed {
                    log.append(
                        tx,
                        &t.study,
                        Some(t.number),
                        format!("trial {} (attempt {})", t.state.as_str(), t.attempt),
                    )?;
                }
            }
            for ((study, trial, _), (key, value)) in batch.reports.iter().zip(&reports) {
                if tx.trials.get(trial_key(study, *trial))?.is_none() {
                    return abort(StoreError::NoTrial {
                        study: study.clone(),
                        number: *trial,
                    });
                }
                let old = tx.reports.insert(key.as_slice(), value.as_slice())?;
                keep(b'r', key, old.as_ref())?;
            }
            for name in &batch.deleted {
                if let Some(old) = tx.studies.remove(name.as_bytes())? {
                    keep(b's', name.as_bytes(), Some(&old))?;
                    let marker = purge_key(name);
                    let before = tx.meta.insert(marker.as_slice(), &[] as &[u8])?;
                    keep(b'm', &marker, before.as_ref())?;
                }
            }
            Ok(())
        })
    }
}

/// Where a transaction stands in its commit.
#[derive(Clone, Copy)]
enum Piece {
    /// The whole commit: nothing to keep for undoing it.
    Only,
    /// The first of several: sets the marker (to the first event's number).
    First(u64),
    /// Neither first nor last.
    Middle,
    /// The last of several: clears the marker.
    Last,
}

/// Keeps in `undo` what `key` of the tree tagged `tag` held before an unfinished commit
/// (`None`: nothing), unless an earlier piece of the same commit already did.
fn remember(tx: &Tx<'_>, tag: u8, key: &[u8], old: Option<&IVec>) -> TxResult<()> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(tag);
    k.extend_from_slice(key);
    if tx.undo.get(&k)?.is_some() {
        return Ok(());
    }
    let mut v = Vec::with_capacity(old.map_or(1, |o| o.len() + 1));
    match old {
        None => v.push(0),
        Some(o) => {
            v.push(1);
            v.extend_from_slice(o);
        }
    }
    tx.undo.insert(k, v)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{report, study, trial};
    use std::sync::Arc;

    #[test]
    fn a_batch_lands_whole_and_a_bad_one_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = Batch::default();
        b.new_studies.push(study("s"));
        b.trials.push(trial("s", 0));
        b.trials.push(trial("s", 1));
        b.reports.push(("s".into(), 1, report(3, 0.5)));
        store.commit(&b).unwrap();
        assert_eq!(store.trials("s").unwrap().len(), 2);
        assert_eq!(store.reports("s", 1).unwrap().len(), 1);
        // A report of a trial that does not exist aborts the whole batch.
        let mut bad = Batch::default();
        bad.trials.push(trial("s", 2));
        bad.reports.push(("s".into(), 9, report(1, 0.1)));
        assert!(store.commit(&bad).is_err());
        assert_eq!(store.trials("s").unwrap().len(), 2);
        // A second create of the same study is refused.
        let mut again = Batch::default();
        again.new_studies.push(study("s"));
        assert!(matches!(
            store.commit(&again),
            Err(StoreError::StudyExists(_))
        ));
    }

    /// Trials `from..to` of study `s`, as one piece.
    fn piece(from: u64, to: u64) -> Batch {
        Batch {
            trials: (from..to).map(|n| trial("s", n)).collect(),
            ..Batch::default()
        }
    }

    #[test]
    fn a_commit_in_pieces_cut_short_by_a_crash_is_undone_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let before_events;
        {
            let store = Store::open(dir.path()).unwrap();
            let mut b = piece(0, 3);
            b.new_studies.push(study("s"));
            store.commit(&b).unwrap();
            before_events = store.events(None, 1000).unwrap();
            // Piece 1 changes trial 0 and adds 3..2002; piece 2 adds 2002..4000; then the
            // process "dies" (the iterator panics while piece 3 waits to be written, the store
            // looking one piece ahead: nothing after it runs, as after a kill -9).
            let mut changed = trial("s", 0);
            changed.state = crate::records::TrialState::Running;
            let mut first = piece(3, 3 + ONE_TRANSACTION as u64 - 1);
            first.trials.insert(0, changed);
            let pieces = [first, piece(2002, 4000), piece(4000, 4001)]
                .into_iter()
                .chain(std::iter::from_fn(|| -> Option<Batch> {
                    panic!("killed in the middle of the commit")
                }));
            let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store.commit_pieces(pieces)
            }));
            assert!(died.is_err());
            // Written so far (the process would have seen it, nobody else did).
            assert_eq!(store.trials("s").unwrap().len(), 4000);
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.rolled_back(), Some(4000 - 3 + 1));
        let trials = store.trials("s").unwrap();
        assert_eq!(
            trials.len(),
            3,
            "the unfinished commit's new trials are gone"
        );
        assert_eq!(
            trials[0],
            trial("s", 0),
            "and the trial it changed is as it was"
        );
        assert_eq!(store.events(None, 1000).unwrap(), before_events);
        assert!(store.undo.is_empty());
        // The store works on: a commit in pieces lands whole, and its undo records go.
        store
            .commit_pieces([piece(3, 2003), piece(2003, 2500)])
            .unwrap();
        assert_eq!(store.trials("s").unwrap().len(), 2500);
        assert!(store.undo.is_empty());
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.rolled_back(), None);
        assert_eq!(store.trials("s").unwrap().len(), 2500);
    }

    #[test]
    fn a_piece_that_fails_undoes_the_pieces_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = piece(0, 1);
        b.new_studies.push(study("s"));
        store.commit(&b).unwrap();
        let mut bad = piece(2001, 2002);
        Arc::make_mut(&mut bad.trials[0].metrics).insert("loss".into(), f64::NAN);
        let err = store.commit_pieces([piece(1, 2001), bad]).unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert_eq!(store.trials("s").unwrap().len(), 1);
        assert_eq!(store.events(Some("s"), 100).unwrap().len(), 2);
        drop(store);
        assert_eq!(Store::open(dir.path()).unwrap().rolled_back(), None);
    }
}
