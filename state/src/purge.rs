//! Deleting a study durably and in bounded pieces.
//!
//! A delete is two steps. First, in one transaction (a [`crate::Batch`] with the study in
//! `deleted`, or [`Store::delete_study`]), the study record goes and a *purge marker*
//! (`meta`: `"purge"`, `0x00`, name) comes: from then on the study is gone for every reader,
//! and no study of that name can be created or imported ([`StoreError::BeingDeleted`]).
//! Second, [`Store::purge`] removes its trials, reports and events [`ONE_TRANSACTION`] keys at
//! a time, each piece flushed, and last the marker. A process killed in between leaves the
//! marker; [`Store::open`] finishes every marked purge before it returns, so a half-deleted
//! study is never loaded and never leaks into a new study of the same name.

use crate::batch::ONE_TRANSACTION;
use crate::store::{study_prefix, valid_name, Store, StoreError};
use sled::Tree;

/// The `meta` key of a study's purge marker.
pub(crate) fn purge_key(name: &str) -> Vec<u8> {
    let mut k = b"purge\0".to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

impl Store {
    /// Whether a study of this name was deleted and its records are still being removed.
    pub fn purging(&self, name: &str) -> Result<bool, StoreError> {
        Ok(valid_name(name) && self.meta.get(purge_key(name))?.is_some())
    }

    /// Deleted studies whose records are still being removed (a purge that a killed process
    /// left unfinished, or one in progress).
    pub fn pending_purges(&self) -> Result<Vec<String>, StoreError> {
        self.meta
            .scan_prefix(b"purge\0")
            .keys()
            .map(|k| {
                let k = k?;
                String::from_utf8(k[6..].to_vec()).map_err(|_| StoreError::Corrupt {
                    tree: "meta",
                    detail: "a purge marker whose study name is not UTF-8".into(),
                })
            })
            .collect()
    }

    /// Removes every trial, report and event of a deleted study, in transactions of at most
    /// [`ONE_TRANSACTION`] keys, each flushed; then its purge marker. Returns the keys removed.
    /// Idempotent: a purge cut short is finished by the next call (or the next open). Call it
    /// only for a study whose record is gone (see the [module docs](self)).
    pub fn purge(&self, name: &str) -> Result<u64, StoreError> {
        if !valid_name(name) {
            return Ok(0);
        }
        let prefix = study_prefix(name);
        let first_keys = |tree: &Tree| -> Result<Vec<sled::IVec>, StoreError> {
            tree.scan_prefix(&prefix)
                .keys()
                .take(ONE_TRANSACTION)
                .collect::<Result<_, _>>()
                .map_err(StoreError::from)
        };
        let mut removed = 0u64;
        // Reports before their trials, events with their index entries.
        loop {
            let reports = first_keys(&self.reports)?;
            let trials = if reports.is_empty() {
                first_keys(&self.trials)?
            } else {
                Vec::new()
            };
            let index = if reports.is_empty() && trials.is_empty() {
                first_keys(&self.study_events)?
            } else {
                Vec::new()
            };
            if reports.is_empty() && trials.is_empty() && index.is_empty() {
                break;
            }
            let events: Vec<&[u8]> = index.iter().map(|k| &k[prefix.len()..]).collect();
            self.write(|tx, _| {
                for k in &reports {
                    tx.reports.remove(k)?;
                }
                for k in &trials {
                    tx.trials.remove(k)?;
                }
                for k in &index {
                    tx.study_events.remove(k)?;
                }
                for k in &events {
                    tx.events.remove(*k)?;
                }
                Ok(())
            })?;
            removed += (reports.len() + trials.len() + index.len()) as u64;
        }
        let key = purge_key(name);
        self.write(|tx, _| {
            tx.meta.remove(key.as_slice())?;
            Ok(())
        })?;
        Ok(removed)
    }

    /// Finishes every purge a previous process left unfinished (at open); returns the
    /// studies it finished deleting.
    pub(crate) fn finish_purges(&self) -> Result<Vec<String>, StoreError> {
        let names = self.pending_purges()?;
        for name in &names {
            self.purge(name)?;
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{report, study, trial};
    use crate::Batch;

    #[test]
    fn a_deleted_study_is_gone_at_once_and_purged_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_study(&study("big")).unwrap();
        store.create_study(&study("big-kept")).unwrap();
        let n = ONE_TRANSACTION as u64 + 10;
        let trials: Vec<_> = (0..n).map(|i| trial("big", i)).collect();
        store.put_trials(&trials).unwrap();
        store.put_trial(&trial("big-kept", 0)).unwrap();
        store.add_report("big", 3, &report(1, 1.0)).unwrap();
        store.add_report("big-kept", 0, &report(1, 1.0)).unwrap();

        let mut b = Batch::default();
        b.deleted.push("big".into());
        store.commit(&b).unwrap();
        assert_eq!(store.study("big").unwrap(), None);
        assert!(store.purging("big").unwrap());
        assert_eq!(store.pending_purges().unwrap(), ["big"]);
        // No study of the name while its records are still there.
        assert!(matches!(
            store.create_study(&study("big")),
            Err(StoreError::BeingDeleted(_))
        ));
        let mut again = Batch::default();
        again.new_studies.push(study("big"));
        assert!(matches!(
            store.commit(&again),
            Err(StoreError::BeingDeleted(_))
        ));
        // Killed before the purge: the next open finishes it.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.purged_at_open(), ["big"]);
        assert!(!store.purging("big").unwrap());
        assert!(store.trials("big").unwrap().is_empty());
        assert!(store.reports("big", 3).unwrap().is_empty());
        assert!(store.events(Some("big"), 10).unwrap().is_empty());
        assert_eq!(store.trials("big-kept").unwrap().len(), 1);
        assert_eq!(store.reports("big-kept", 0).unwrap().len(), 1);
        store.create_study(&study("big")).unwrap();
        assert!(store.trials("big").unwrap().is_empty());
        // A purge with nothing left is a no-op.
        assert_eq!(store.purge("nothing").unwrap(), 0);
    }
}
