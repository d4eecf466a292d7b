//! Group commit for the scheduler: everything one turn of its loop changed — new and updated
//! studies, trials, intermediate reports — written in one transaction and made durable by one
//! flush, so that a burst of events or API calls costs one fsync, not one each.

use crate::purge::purge_key;
use crate::records::{Report, StudyRecord, TrialRecord};
use crate::store::{
    check_name, check_report, check_study, check_trial, decode, decode_tx, encode_now, report_key,
    study_prefix, trial_key, valid_name, Store, StoreError,
};
use sled::transaction::abort;

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

    /// Writes `batch` and flushes once. Durable when it returns `Ok`. A batch of at most
    /// [`ONE_TRANSACTION`] records is one transaction (all or nothing); a larger one (a big
    /// import) goes in transactions of that many records, in order, so that memory stays
    /// bounded: after a crash a prefix of it may be durable.
    pub fn commit(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        if batch.len() <= ONE_TRANSACTION {
            self.commit_pending(batch)?;
            return self.sync();
        }
        let head = Batch {
            new_studies: batch.new_studies.clone(),
            studies: batch.studies.clone(),
            ..Batch::default()
        };
        let tail = Batch {
            deleted: batch.deleted.clone(),
            ..Batch::default()
        };
        self.commit_pending(&head)?;
        for chunk in batch.trials.chunks(ONE_TRANSACTION) {
            self.commit_pending(&Batch {
                trials: chunk.to_vec(),
                ..Batch::default()
            })?;
        }
        for chunk in batch.reports.chunks(ONE_TRANSACTION) {
            self.commit_pending(&Batch {
                reports: chunk.to_vec(),
                ..Batch::default()
            })?;
        }
        self.commit_pending(&tail)?;
        self.sync()
    }

    /// Makes everything written so far durable (shared with concurrent callers).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.sync()
    }

    /// Writes `batch` in one transaction without flushing: durable only after
    /// [`Store::flush`]. For callers that build a large write in bounded pieces.
    pub fn stage(&self, batch: &Batch) -> Result<(), StoreError> {
        self.commit_pending(batch)
    }

    /// One transaction for `batch`, without the flush.
    fn commit_pending(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
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
        self.write_pending(|tx, log| {
            for (s, value) in batch.new_studies.iter().zip(&new_studies) {
                if tx.studies.get(s.name.as_bytes())?.is_some() {
                    return abort(StoreError::StudyExists(s.name.clone()));
                }
                if tx.meta.get(purge_key(&s.name))?.is_some() {
                    return abort(StoreError::BeingDeleted(s.name.clone()));
                }
                tx.studies.insert(s.name.as_bytes(), value.as_slice())?;
                log.append(tx, &s.name, None, "study created".to_string())?;
            }
            for (s, value) in batch.studies.iter().zip(&studies) {
                let Some(old) = tx.studies.get(s.name.as_bytes())? else {
                    return abort(StoreError::NoStudy(s.name.clone()));
                };
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
                let changed = match tx.trials.insert(key.as_slice(), value.as_slice())? {
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
                tx.reports.insert(key.as_slice(), value.as_slice())?;
            }
            for name in &batch.deleted {
                if tx.studies.remove(name.as_bytes())?.is_some() {
                    tx.meta.insert(purge_key(name), &[] as &[u8])?;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{report, study, trial};

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
}
