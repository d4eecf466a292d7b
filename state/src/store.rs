//! The sled-backed store: one tree per record kind plus a metadata tree holding the schema
//! version. Every mutating method writes its record and an event atomically, then flushes.
//!
//! # Layout
//!
//! | tree            | key                                              | value              |
//! |-----------------|--------------------------------------------------|--------------------|
//! | `meta`          | `"schema_version"`                               | `u32` big-endian   |
//! | `meta`          | `"next_event_seq"`                               | `u64` big-endian   |
//! | `studies`       | study name                                       | JSON `StudyRecord` |
//! | `trials`        | study name, `0x00`, trial number (`u64` BE)      | JSON `TrialRecord` |
//! | `reports`       | study name, `0x00`, trial (`u64` BE), step (`u64` BE) | JSON `Report` |
//! | `events`        | sequence number (`u64` BE)                       | JSON `Event`       |
//! | `study_events`  | study name, `0x00`, sequence number (`u64` BE)   | empty (an index)   |
//! | `undo`          | tree tag (`s`, `t`, `r`, `m`: meta), the record's key       | `0` (it was absent) or `1` + its old value |
//! | `meta`          | `"unfinished_commit"`                            | first event (`u64` BE) |
//!
//! The last two exist only while a commit too large for one transaction is being written
//! (see [`Store::commit`]): its first piece sets `unfinished_commit`, every piece keeps in
//! `undo` what each record it writes held before, and the last piece removes the marker. A
//! store opened with the marker set was stopped in the middle of such a commit, which was
//! never acknowledged: [`Store::open`] puts every record back as `undo` has it and removes
//! the commit's events, so the commit is all or nothing across a crash too.
//!
//! Study names never contain a NUL byte (the store refuses them), so the `0x00` separator keeps
//! the keys of study `a` apart from those of study `a-b`, and big-endian numbers sort
//! numerically.
//!
//! # Concurrency and durability
//!
//! Writes go through sled multi-tree transactions, so a record and its event land together or
//! not at all, and are then made durable before the method returns: `Db::flush` and then an
//! `fdatasync` of sled's data file. (On Linux sled's flush alone only calls `sync_file_range`,
//! which survives a process crash but not a power loss: it neither flushes the disk's write
//! cache nor the file's size; sled's own full `fsync` comes from its background flusher, every
//! 500 ms.) Writers that append
//! events are serialized by a small in-process lock held only while the transaction commits
//! (not during the flush), so event sequence numbers follow commit order and concurrent
//! callers still share fsyncs. The next sequence number is persisted with each event, so
//! numbers are never reused, even after events are deleted.

use crate::purge::purge_key;
use crate::records::{Event, Report, StudyRecord, TrialRecord};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{abort, ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Tree;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// The schema version this build writes. Opening a store with a newer one is refused.
pub const SCHEMA_VERSION: u32 = 1;

const SCHEMA_KEY: &[u8] = b"schema_version";
const NEXT_SEQ_KEY: &[u8] = b"next_event_seq";
/// Set (to the first event's sequence number) while a commit in several pieces is written.
pub(crate) const UNFINISHED_KEY: &[u8] = b"unfinished_commit";
/// Upper bound on sled's page cache; the store is small, the default (1 GiB) is far too much.
const CACHE_CAPACITY: u64 = 64 * 1024 * 1024;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened (held by another process, unreadable, …).
    #[error("cannot open the state store at {path}: {source}")]
    Open {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: sled::Error,
    },
    /// The store was written by a newer quantune.
    #[error("the state store at {path} has schema version {found}, newer than this quantune understands ({supported}); upgrade quantune or point it at another state directory")]
    NewerSchema {
        /// The directory.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version supported.
        supported: u32,
    },
    /// `create_study` for a name that exists.
    #[error("a study named '{0}' already exists")]
    StudyExists(String),
    /// A study of this name was deleted and its records are still being removed.
    #[error("the study '{0}' was just deleted and is still being removed; try again in a moment")]
    BeingDeleted(String),
    /// The named study does not exist.
    #[error("no study named '{0}'")]
    NoStudy(String),
    /// The named trial does not exist (`add_report` for a trial never stored).
    #[error("study '{study}' has no trial {number}")]
    NoTrial {
        /// The study.
        study: String,
        /// The trial number.
        number: u64,
    },
    /// A record that cannot be stored faithfully: a non-finite number (JSON has no NaN or
    /// infinity), an empty study name or one containing a NUL byte.
    #[error("invalid record: {0}")]
    Invalid(String),
    /// A stored record could not be decoded (corruption or a bug).
    #[error("corrupt record in tree '{tree}': {detail}")]
    Corrupt {
        /// The tree.
        tree: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The store's files are damaged (truncated, overwritten): found at open (see
    /// [`crate::damage`]).
    #[error("the state store file {path} is damaged: {detail}. quantune will not run on it. The way back: move the store aside (mv {dir} {dir}.damaged), start quantune again (it starts with an empty store) and load your latest backup with `quantune restore BACKUP_DIR` (made by `quantune backup`; exports load with `quantune import`).", dir = path.parent().unwrap_or(path).display(), path = path.display())]
    Damaged {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it, in a line.
        detail: String,
    },
    /// An I/O error from sled (disk full, …).
    #[error("state store I/O error: {0}")]
    Io(#[from] sled::Error),
    /// Import input that is not valid.
    #[error("import line {line}: {detail}")]
    Import {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// Writing an export failed (closed pipe, full disk, …).
    #[error("cannot write the export: {0}")]
    Write(#[source] std::io::Error),
}

/// The store. Cheap to share behind an `Arc`; all methods take `&self` and are thread-safe.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    /// sled's data file (`<dir>/db`), opened again to `fdatasync` it: on Linux `Db::flush` only
    /// calls `sync_file_range`, which neither flushes the disk's write cache nor file metadata.
    file: std::fs::File,
    pub(crate) meta: Tree,
    pub(crate) studies: Tree,
    pub(crate) trials: Tree,
    pub(crate) reports: Tree,
    pub(crate) events: Tree,
    pub(crate) study_events: Tree,
    /// What the records of an unfinished commit in several pieces held before it.
    pub(crate) undo: Tree,
    /// How many records [`Store::open`] put back from an unfinished commit, if it found one.
    rolled_back: Option<usize>,
    /// Serializes event-appending writers; holds the next event sequence number.
    pub(crate) writer: Mutex<u64>,
    /// Group commit: concurrent [`Store::sync`] callers share one flush.
    syncs: Mutex<SyncState>,
    /// Signalled when a flush ends.
    synced: Condvar,
    /// Set when the store must not seal itself on drop (it was refused as damaged).
    sealed: std::sync::atomic::AtomicBool,
    /// Deleted studies whose purge a previous process left unfinished and this open finished.
    purged_at_open: std::sync::OnceLock<Vec<String>>,
    /// Writes the seal once everything of sled above is dropped (the last field: fields drop
    /// in order, after [`Store`]'s own `drop`).
    sealer: Sealer,
}

impl Drop for Store {
    /// Flushes and hands the next event number to the [`Sealer`], which seals the store (see
    /// [`crate::damage`]) once sled has let go of it.
    fn drop(&mut self) {
        if self.sealed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let _ = self.db.flush();
        let next = *self.lock_writer();
        self.sealer.next = Some(next);
    }
}

/// Seals a dropped store: its `db` length and next event number, so that the next open can
/// tell whether it was cut short or rolled back meanwhile. It waits (up to [`LOCK_WAIT`]) for
/// sled's lock on the file to go first: sled's background threads outlive its handles and may
/// still shorten the file (freeing trailing segments), which sealed too early read as a cut.
struct Sealer {
    path: PathBuf,
    next: Option<u64>,
}

impl Drop for Sealer {
    fn drop(&mut self) {
        let Some(next) = self.next else { return };
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        if let Ok(f) = std::fs::File::open(crate::damage::db_file(&self.path)) {
            while fs2::FileExt::try_lock_exclusive(&f).is_err()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        crate::damage::write_seal(&self.path, Some(next));
    }
}

/// Where the shared flush stands. Sync requests are numbered; a flush that starts after request
/// `n` was made covers every write made before it.
#[derive(Default)]
struct SyncState {
    /// Requests made so far.
    requested: u64,
    /// Every request up to this one is durable.
    done: u64,
    /// A flush is running.
    running: bool,
    /// The last failed flush: requests up to `.0` get its error `.1`.
    failed: Option<(u64, String)>,
}

/// Writes applied to the store but not yet durable. [`Pending::commit`] makes them durable
/// (sharing one flush with concurrent committers); call it — after releasing any lock that
/// other writers wait for — before acknowledging the write.
#[must_use = "a write is durable only after Pending::commit"]
pub struct Pending<'a> {
    store: &'a Store,
}

impl Pending<'_> {
    /// Flushes (or waits for a flush that started after these writes); an error means they
    /// may not be durable.
    pub fn commit(self) -> Result<(), StoreError> {
        self.store.sync()
    }
}

/// The trees of one write transaction, in a fixed order.
pub(crate) struct Tx<'a> {
    pub(crate) meta: &'a TransactionalTree,
    pub(crate) studies: &'a TransactionalTree,
    pub(crate) trials: &'a TransactionalTree,
    pub(crate) reports: &'a TransactionalTree,
    pub(crate) events: &'a TransactionalTree,
    pub(crate) study_events: &'a TransactionalTree,
    pub(crate) undo: &'a TransactionalTree,
}

/// The result type of a transaction body.
pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// Event appender for one transaction attempt: hands out sequence numbers from `next`.
pub(crate) struct EventLog {
    next: u64,
    at: f64,
}

impl EventLog {
    /// Appends an event (and its per-study index entry) inside the transaction.
    pub(crate) fn append(
        &mut self,
        tx: &Tx<'_>,
        study: &str,
        trial: Option<u64>,
        what: String,
    ) -> TxResult<()> {
        let seq = self.next;
        self.next += 1;
        let event = Event {
            seq,
            at: self.at,
            study: study.to_string(),
            trial,
            what,
        };
        tx.events.insert(&seq.to_be_bytes(), encode(&event)?)?;
        tx.study_events
            .insert(study_seq_key(study, seq), &[] as &[u8])?;
        Ok(())
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`; checks and writes the schema version.
    ///
    /// sled locks the store's files, so a second open of the same directory, from another
    /// process or from this one while the first `Store` is alive, fails with
    /// [`StoreError::Open`] whose message asks whether another quantune is using it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let seal = crate::damage::check_seal(dir)?;
        let store = crate::damage::catch_panics(dir, || Store::open_unguarded(dir))??;
        let next_event = *store.lock_writer();
        // Refused, the store is closed again without a new seal: the next start says the same.
        if let Err(e) = crate::damage::check_events(dir, seal, next_event) {
            store
                .sealed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(e);
        }
        crate::damage::unseal(dir);
        let purged = store.finish_purges()?;
        let _ = store.purged_at_open.set(purged);
        Ok(store)
    }

    /// [`Store::open`] without the damage checks.
    fn open_unguarded(dir: &Path) -> Result<Store, StoreError> {
        let open_err = |source: sled::Error| StoreError::Open {
            path: dir.to_path_buf(),
            source: explain_open_error(source),
        };
        let db = open_db(dir).map_err(open_err)?;
        let meta = db.open_tree("meta").map_err(open_err)?;
        let found = match meta.get(SCHEMA_KEY).map_err(open_err)? {
            Some(bytes) => Some(decode_u32(&bytes).ok_or_else(|| StoreError::Corrupt {
                tree: "meta",
                detail: format!("schema_version is {} bytes, not 4", bytes.len()),
            })?),
            None => None,
        };
        if let Some(found) = found {
            if found > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema {
                    path: dir.to_path_buf(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
        }
        let tree = |name: &str| db.open_tree(name).map_err(open_err);
        let file = std::fs::File::open(dir.join("db")).map_err(|e| open_err(sled::Error::Io(e)))?;
        let store = Store {
            file,
            path: dir.to_path_buf(),
            studies: tree("studies")?,
            trials: tree("trials")?,
            reports: tree("reports")?,
            events: tree("events")?,
            study_events: tree("study_events")?,
            undo: tree("undo")?,
            rolled_back: None,
            meta,
            writer: Mutex::new(0),
            syncs: Mutex::default(),
            synced: Condvar::new(),
            sealed: std::sync::atomic::AtomicBool::new(false),
            purged_at_open: std::sync::OnceLock::new(),
            db,
            sealer: Sealer {
                path: dir.to_path_buf(),
                next: None,
            },
        };
        if found.is_none() {
            // A fresh store gets the current version; one with data but no version (written
            // before versions were kept, which no release did) is version 1.
            let empty = [&store.studies, &store.trials, &store.reports, &store.events]
                .iter()
                .all(|t| t.is_empty());
            let version = if empty { SCHEMA_VERSION } else { 1 };
            store.meta.insert(SCHEMA_KEY, &version.to_be_bytes())?;
            store.sync()?;
        }
        let persisted = match store.meta.get(NEXT_SEQ_KEY)? {
            Some(bytes) => decode_u64(&bytes).ok_or_else(|| StoreError::Corrupt {
                tree: "meta",
                detail: format!("next_event_seq is {} bytes, not 8", bytes.len()),
            })?,
            None => 1,
        };
        let after_last = match store.events.last()? {
            Some((key, _)) => {
                decode_u64(&key).ok_or_else(|| StoreError::Corrupt {
                    tree: "events",
                    detail: format!("key of {} bytes, not 8", key.len()),
                })? + 1
            }
            None => 1,
        };
        *store.lock_writer() = persisted.max(after_last);
        let mut store = store;
        store.rolled_back = store.finish_unfinished()?;
        Ok(store)
    }

    /// How many records [`Store::open`] put back as they were before a commit that a crash
    /// (or a failed write) left unfinished; `None` when there was none. For the daemon's log.
    pub fn rolled_back(&self) -> Option<usize> {
        self.rolled_back
    }

    /// Deleted studies whose removal a previous process left unfinished (it was killed during
    /// a delete) and [`Store::open`] finished.
    pub fn purged_at_open(&self) -> &[String] {
        self.purged_at_open.get().map_or(&[], Vec::as_slice)
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a study; fails with `StudyExists` if the name is taken. Appends the event
    /// "study created". Durable on return.
    pub fn create_study(&self, study: &StudyRecord) -> Result<(), StoreError> {
        check_name(&study.name)?;
        check_study(study)?;
        let value = encode_now(study)?;
        self.write(|tx, log| {
            if tx.studies.get(study.name.as_bytes())?.is_some() {
                return abort(StoreError::StudyExists(study.name.clone()));
            }
            if tx.meta.get(purge_key(&study.name))?.is_some() {
                return abort(StoreError::BeingDeleted(study.name.clone()));
            }
            tx.studies.insert(study.name.as_bytes(), value.as_slice())?;
            log.append(tx, &study.name, None, "study created".to_string())
        })
    }

    /// Replaces a study record (state changes); appends an event `"study <state>"` when the state
    /// differs from the stored one. Fails with `NoStudy` if the study does not exist. Durable.
    pub fn update_study(&self, study: &StudyRecord) -> Result<(), StoreError> {
        check_name(&study.name)?;
        check_study(study)?;
        let value = encode_now(study)?;
        self.write(|tx, log| {
            let Some(old) = tx.studies.get(study.name.as_bytes())? else {
                return abort(StoreError::NoStudy(study.name.clone()));
            };
            let old: StudyRecord = decode_tx("studies", &old)?;
            tx.studies.insert(study.name.as_bytes(), value.as_slice())?;
            if old.state != study.state {
                log.append(
                    tx,
                    &study.name,
                    None,
                    format!("study {}", study.state.as_str()),
                )?;
            }
            Ok(())
        })
    }

    /// One study.
    pub fn study(&self, name: &str) -> Result<Option<StudyRecord>, StoreError> {
        if !valid_name(name) {
            return Ok(None);
        }
        match self.studies.get(name.as_bytes())? {
            Some(v) => Ok(Some(decode("studies", &v)?)),
            None => Ok(None),
        }
    }

    /// Every study, sorted by name.
    pub fn studies(&self) -> Result<Vec<StudyRecord>, StoreError> {
        self.studies
            .iter()
            .map(|kv| {
                let (_, v) = kv?;
                decode("studies", &v)
            })
            .collect()
    }

    /// Inserts or replaces a trial (keyed by study and number) and appends an event describing
    /// the new state ("trial running (attempt 1)"), in one atomic batch, then flushes. The
    /// event is appended only when the state or attempt differs from the stored trial's (or
    /// the trial is new), so updates of other fields (slot, last-seen time) do not flood the
    /// log. The study must exist (`NoStudy`).
    pub fn put_trial(&self, trial: &TrialRecord) -> Result<(), StoreError> {
        self.put_trials(std::slice::from_ref(trial))
    }

    /// Like `put_trial` for several trials at once, with a single flush (group commit). All or
    /// none of them are stored.
    pub fn put_trials(&self, trials: &[TrialRecord]) -> Result<(), StoreError> {
        self.put_trials_pending(trials)?.commit()
    }

    /// [`Store::put_trials`] without waiting for the flush: the caller commits the returned
    /// [`Pending`] once it has released its own locks, so that concurrent writers share one
    /// flush instead of queueing behind each other's.
    pub fn put_trials_pending(&self, trials: &[TrialRecord]) -> Result<Pending<'_>, StoreError> {
        if trials.is_empty() {
            return Ok(Pending { store: self });
        }
        let mut encoded = Vec::with_capacity(trials.len());
        for t in trials {
            check_name(&t.study)?;
            check_trial(t)?;
            encoded.push((trial_key(&t.study, t.number), encode_now(t)?));
        }
        self.write_pending(|tx, log| {
            for (t, (key, value)) in trials.iter().zip(&encoded) {
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
            Ok(())
        })?;
        Ok(Pending { store: self })
    }

    /// One trial.
    pub fn trial(&self, study: &str, number: u64) -> Result<Option<TrialRecord>, StoreError> {
        if !valid_name(study) {
            return Ok(None);
        }
        match self.trials.get(trial_key(study, number))? {
            Some(v) => Ok(Some(decode("trials", &v)?)),
            None => Ok(None),
        }
    }

    /// Every trial of a study, by number (empty when the study does not exist).
    pub fn trials(&self, study: &str) -> Result<Vec<TrialRecord>, StoreError> {
        self.each_trial(study).collect()
    }

    /// Every trial of a study, by number, decoded one at a time (loading a study of 100,000
    /// trials builds no list of them all beside its own).
    pub fn each_trial(
        &self,
        study: &str,
    ) -> impl Iterator<Item = Result<TrialRecord, StoreError>> + '_ {
        let valid = valid_name(study);
        self.trials
            .scan_prefix(study_prefix(study))
            .filter(move |_| valid)
            .map(|kv| {
                let (_, v) = kv?;
                decode("trials", &v)
            })
    }

    /// Stores an intermediate report for a trial (replacing one at the same step). The study
    /// and the trial must exist (`NoStudy`, `NoTrial`). Appends no event. Durable.
    pub fn add_report(&self, study: &str, trial: u64, report: &Report) -> Result<(), StoreError> {
        check_name(study)?;
        check_report(study, trial, report)?;
        let value = encode_now(report)?;
        let tkey = trial_key(study, trial);
        let rkey = report_key(study, trial, report.step);
        self.write(|tx, _| {
            if tx.studies.get(study.as_bytes())?.is_none() {
                return abort(StoreError::NoStudy(study.to_string()));
            }
            if tx.trials.get(tkey.as_slice())?.is_none() {
                return abort(StoreError::NoTrial {
                    study: study.to_string(),
                    number: trial,
                });
            }
            tx.reports.insert(rkey.as_slice(), value.as_slice())?;
            Ok(())
        })
    }

    /// A trial's reports, by step.
    pub fn reports(&self, study: &str, trial: u64) -> Result<Vec<Report>, StoreError> {
        if !valid_name(study) {
            return Ok(Vec::new());
        }
        self.reports
            .scan_prefix(trial_key(study, trial))
            .map(|kv| {
                let (_, v) = kv?;
                decode("reports", &v)
            })
            .collect()
    }

    /// Events, oldest first, optionally of one study only, at most `limit` of the newest.
    pub fn events(&self, study: Option<&str>, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        match study {
            None => {
                for kv in self.events.iter().rev().take(limit) {
                    let (_, v) = kv?;
                    out.push(decode("events", &v)?);
                }
            }
            Some(study) if !valid_name(study) => {}
            Some(study) => {
                let prefix = study_prefix(study);
                for kv in self.study_events.scan_prefix(&prefix).rev().take(limit) {
                    let (key, _) = kv?;
                    let seq = &key[prefix.len()..];
                    let Some(v) = self.events.get(seq)? else {
                        return Err(StoreError::Corrupt {
                            tree: "study_events",
                            detail: format!(
                                "index entry for study '{study}' points to missing event {:?}",
                                decode_u64(seq)
                            ),
                        });
                    };
                    out.push(decode("events", &v)?);
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Deletes a study with its trials, reports and events: the record at once (one
    /// transaction, which also leaves a purge marker), then the rest in bounded pieces (see
    /// [`crate::purge`]). Fails with `NoStudy` if it does not exist. Durable.
    pub fn delete_study(&self, name: &str) -> Result<(), StoreError> {
        if self.study(name)?.is_none() {
            return Err(StoreError::NoStudy(name.to_string()));
        }
        self.commit(&crate::Batch {
            deleted: vec![name.to_string()],
            ..crate::Batch::default()
        })?;
        self.purge(name)?;
        Ok(())
    }

    /// Runs `body` as one transaction over every tree, then flushes. See [`Store::transact`].
    pub(crate) fn write<T>(
        &self,
        body: impl Fn(&Tx<'_>, &mut EventLog) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let out = self.write_pending(body)?;
        self.sync()?;
        Ok(out)
    }

    /// [`Store::write`] without the flush.
    pub(crate) fn write_pending<T>(
        &self,
        body: impl Fn(&Tx<'_>, &mut EventLog) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let mut next = self.lock_writer();
        self.transact(&mut next, body)
    }

    /// Runs `body` as one transaction over every tree, with an event log starting at `*next`;
    /// on commit, persists and advances the sequence counter. No flush.
    pub(crate) fn transact<T>(
        &self,
        next: &mut MutexGuard<'_, u64>,
        body: impl Fn(&Tx<'_>, &mut EventLog) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let start = **next;
        let at = now();
        let trees = (
            &self.meta,
            &self.studies,
            &self.trials,
            &self.reports,
            &self.events,
            &self.study_events,
            &self.undo,
        );
        let result = sled::Transactional::transaction(
            &trees,
            |(meta, studies, trials, reports, events, study_events, undo)| {
                let tx = Tx {
                    meta,
                    studies,
                    trials,
                    reports,
                    events,
                    study_events,
                    undo,
                };
                let mut log = EventLog { next: start, at };
                let out = body(&tx, &mut log)?;
                if log.next != start {
                    tx.meta.insert(NEXT_SEQ_KEY, &log.next.to_be_bytes())?;
                }
                Ok((out, log.next))
            },
        );
        match result {
            Ok((out, after)) => {
                **next = after;
                Ok(out)
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(StoreError::Io(e)),
        }
    }

    /// Makes everything written so far durable: sled's flush, then an `fdatasync` of its data
    /// file (see the `file` field).
    /// Makes every write made before the call durable: sled's flush, then `fdatasync` of its
    /// file. Group commit: a caller that finds a flush running waits for it to end and then
    /// for (or runs) the next one, so N concurrent callers cost about two flushes, not N.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        let lock = || self.syncs.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = lock();
        st.requested += 1;
        let mine = st.requested;
        loop {
            if st.done >= mine {
                return Ok(());
            }
            if let Some((upto, e)) = &st.failed {
                if *upto >= mine {
                    return Err(StoreError::Io(sled::Error::Io(std::io::Error::other(
                        e.clone(),
                    ))));
                }
            }
            if !st.running {
                st.running = true;
                let upto = st.requested;
                drop(st);
                let result = self.flush_now();
                st = lock();
                st.running = false;
                match &result {
                    Ok(()) => st.done = st.done.max(upto),
                    Err(e) => st.failed = Some((upto, e.to_string())),
                }
                self.synced.notify_all();
                if upto >= mine {
                    return result;
                }
                continue;
            }
            st = self.synced.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// One flush: sled's buffers to its file, then `fdatasync`.
    fn flush_now(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.file
            .sync_data()
            .map_err(|e| StoreError::Io(sled::Error::Io(e)))
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, u64> {
        // A panic while holding the lock cannot leave the counter inconsistent: it is only
        // advanced after a committed transaction.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long [`Store::open`] waits for sled's file lock. A `Store` dropped in this process lets
/// go of the lock only once sled's background work on it has ended (a moment later); another
/// process holding it is still refused, after this wait.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens sled's database in `dir`, waiting up to [`LOCK_WAIT`] for its file lock.
fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_CAPACITY)
            .open()
        {
            Err(sled::Error::Io(io))
                if io.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Rewrites sled's "could not acquire lock" error into one that says what is likely going on.
fn explain_open_error(e: sled::Error) -> sled::Error {
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            sled::Error::Io(std::io::Error::new(
                io.kind(),
                format!("the store is locked (is another quantune using it?): {io}"),
            ))
        }
        other => other,
    }
}

/// Unix time now, in seconds.
pub(crate) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whether a name can be a key prefix: non-empty, no NUL byte.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('\0')
}

pub(crate) fn check_name(name: &str) -> Result<(), StoreError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "study name {name:?} is empty or contains a NUL byte"
        )))
    }
}

fn finite(what: impl FnOnce() -> String, x: f64) -> Result<(), StoreError> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{} is {x}; the store keeps finite numbers only",
            what()
        )))
    }
}

pub(crate) fn check_study(s: &StudyRecord) -> Result<(), StoreError> {
    let w = |f: &str| format!("study '{}': {f}", s.name);
    finite(|| w("created_at"), s.created_at)?;
    finite(|| w("updated_at"), s.updated_at)
}

pub(crate) fn check_trial(t: &TrialRecord) -> Result<(), StoreError> {
    use quantune_strategies::ParamValue;
    let w = |f: String| format!("trial {} of study '{}': {f}", t.number, t.study);
    for (k, v) in t.params.iter() {
        if let ParamValue::Float(x) = v {
            finite(|| w(format!("parameter '{k}'")), *x)?;
        }
    }
    for (k, x) in t.metrics.iter() {
        finite(|| w(format!("metric '{k}'")), *x)?;
    }
    finite(|| w("created_at".into()), t.created_at)?;
    let optional = [
        ("started_at", t.started_at),
        ("finished_at", t.finished_at),
        ("last_seen_at", t.last_seen_at),
    ];
    for (name, x) in optional {
        if let Some(x) = x {
            finite(|| w(name.into()), x)?;
        }
    }
    for a in &t.attempts {
        finite(
            || w(format!("attempt {} finished_at", a.attempt)),
            a.finished_at,
        )?;
        if let Some(x) = a.started_at {
            finite(|| w(format!("attempt {} started_at", a.attempt)), x)?;
        }
    }
    Ok(())
}

pub(crate) fn check_report(study: &str, trial: u64, r: &Report) -> Result<(), StoreError> {
    let w = |f: String| {
        format!(
            "report at step {} of trial {trial} of study '{study}': {f}",
            r.step
        )
    };
    for (k, x) in &r.values {
        finite(|| w(format!("value '{k}'")), *x)?;
    }
    finite(|| w("at".into()), r.at)
}

/// `name` + `0x00`: the prefix of every key of the study in the keyed-by-study trees.
pub(crate) fn study_prefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1 + 16);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

pub(crate) fn trial_key(study: &str, number: u64) -> Vec<u8> {
    let mut k = study_prefix(study);
    k.extend_from_slice(&number.to_be_bytes());
    k
}

pub(crate) fn report_key(study: &str, trial: u64, step: u64) -> Vec<u8> {
    let mut k = trial_key(study, trial);
    k.extend_from_slice(&step.to_be_bytes());
    k
}

pub(crate) fn study_seq_key(study: &str, seq: u64) -> Vec<u8> {
    let mut k = study_prefix(study);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn decode_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

pub(crate) fn decode_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// Serializes a record as JSON (outside a transaction).
pub(crate) fn encode_now<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Invalid(format!("cannot serialize: {e}")))
}

/// Serializes a record as JSON inside a transaction.
fn encode<T: Serialize>(v: &T) -> TxResult<Vec<u8>> {
    encode_now(v).map_err(ConflictableTransactionError::Abort)
}

/// Decodes a stored JSON record.
pub(crate) fn decode<T: DeserializeOwned>(tree: &'static str, v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        tree,
        detail: e.to_string(),
    })
}

/// Decodes a stored JSON record inside a transaction.
pub(crate) fn decode_tx<T: DeserializeOwned>(tree: &'static str, v: &[u8]) -> TxResult<T> {
    decode(tree, v).map_err(ConflictableTransactionError::Abort)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::records::{AttemptRecord, StudyState, TrialState};
    use proptest::prelude::*;
    use quantune_strategies::{ParamValue, Params};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    pub(crate) fn study(name: &str) -> StudyRecord {
        StudyRecord::new(
            name,
            serde_json::json!({"objective": {"metric": "eval_loss"}, "max_trials": 20}),
            format!("[study]\nname = \"{name}\"\n"),
            1_700_000_000.5,
        )
    }

    pub(crate) fn trial(study: &str, number: u64) -> TrialRecord {
        let mut params = Params::new();
        params.insert("learning_rate".into(), ParamValue::Float(1e-4));
        params.insert("batch_size".into(), ParamValue::Int(16));
        params.insert("quantization".into(), ParamValue::Str("int8".into()));
        params.insert("lora".into(), ParamValue::Bool(true));
        TrialRecord::new(study, number, params, 1_700_000_001.25)
    }

    pub(crate) fn report(step: u64, loss: f64) -> Report {
        Report {
            step,
            values: BTreeMap::from([("eval_loss".to_string(), loss)]),
            at: 1_700_000_002.0 + step as f64,
        }
    }

    fn whats(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.what.as_str()).collect()
    }

    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Store>();
    }

    #[test]
    fn concurrent_writers_share_flushes_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        store.create_study(&study("s")).unwrap();
        let threads: Vec<_> = (0..8u64)
            .map(|w| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..25u64 {
                        let pending = store
                            .put_trials_pending(&[trial("s", w * 100 + i)])
                            .unwrap();
                        pending.commit().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        {
            let st = store.syncs.lock().unwrap();
            assert_eq!(
                st.requested,
                2 + 8 * 25,
                "open, create_study, one per write"
            );
            assert_eq!(st.done, st.requested, "every request covered");
            assert!(!st.running);
        }
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.trials("s").unwrap().len(), 200);
    }

    #[test]
    fn data_survives_drop_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = study("qat");
        let mut t = trial("qat", 0);
        t.state = TrialState::Complete;
        Arc::make_mut(&mut t.metrics).insert("eval_loss".into(), 2.31);
        Arc::make_mut(&mut t.info).insert("gpu".into(), "H100".into());
        t.attempts.push(AttemptRecord {
            attempt: 1,
            reason: "exit status 1".into(),
            stderr_tail: Some("boom\n".into()),
            started_at: Some(1.0),
            finished_at: 2.0,
        });
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.path(), dir.path());
            store.create_study(&s).unwrap();
            store.put_trial(&t).unwrap();
            store.add_report("qat", 0, &report(100, 2.5)).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.study("qat").unwrap(), Some(s.clone()));
        assert_eq!(store.studies().unwrap(), vec![s]);
        assert_eq!(store.trial("qat", 0).unwrap(), Some(t.clone()));
        assert_eq!(store.trials("qat").unwrap(), vec![t]);
        assert_eq!(store.reports("qat", 0).unwrap(), vec![report(100, 2.5)]);
        assert_eq!(store.events(None, 100).unwrap().len(), 2);
        assert_eq!(store.study("nope").unwrap(), None);
        assert_eq!(store.trial("qat", 1).unwrap(), None);
    }

    #[test]
    fn schema_version_is_written_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        {
            let db = sled::open(dir.path()).unwrap();
            let meta = db.open_tree("meta").unwrap();
            let v = meta.get(SCHEMA_KEY).unwrap().unwrap();
            assert_eq!(v.as_ref(), SCHEMA_VERSION.to_be_bytes());
            meta.insert(SCHEMA_KEY, &(SCHEMA_VERSION + 1).to_be_bytes())
                .unwrap();
            db.flush().unwrap();
        }
        match Store::open(dir.path()) {
            Err(
                e @ StoreError::NewerSchema {
                    found, supported, ..
                },
            ) => {
                assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
                assert!(e.to_string().contains("upgrade quantune"), "{e}");
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a newer schema was accepted"),
        }
    }

    #[test]
    fn a_store_with_data_but_no_version_is_version_1() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.create_study(&study("old")).unwrap();
            store.meta.remove(SCHEMA_KEY).unwrap();
            store.db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.meta.get(SCHEMA_KEY).unwrap().unwrap().as_ref(),
            1u32.to_be_bytes()
        );
        assert!(store.study("old").unwrap().is_some());
    }

    /// sled takes an exclusive `flock` on `<dir>/db`; flock locks belong to the open file, so a
    /// second open fails even from the same process (and all the more from another one).
    #[test]
    fn a_second_open_of_the_same_dir_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let err = match Store::open(dir.path()) {
            Err(e) => e,
            Ok(_) => panic!("a second open succeeded"),
        };
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("is another quantune using it?"), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        drop(first);
        // Released on drop.
        Store::open(dir.path()).unwrap();
    }

    #[test]
    fn trials_come_by_number_beyond_255() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_study(&study("s")).unwrap();
        let numbers = [300u64, 1, 256, 0, 255, 65_536, 2, 1 << 40];
        let trials: Vec<_> = numbers.iter().map(|&n| trial("s", n)).collect();
        store.put_trials(&trials).unwrap();
        let got: Vec<u64> = store
            .trials("s")
            .unwrap()
            .iter()
            .map(|t| t.number)
            .collect();
        let mut want = numbers.to_vec();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn studies_sharing_a_name_prefix_are_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for name in ["a-b", "a", "ab", "a_"] {
            store.create_study(&study(name)).unwrap();
        }
        store.put_trials(&[trial("a", 0), trial("a", 1)]).unwrap();
        store
            .put_trials(&[trial("a-b", 0), trial("a-b", 7)])
            .unwrap();
        store.put_trial(&trial("ab", 3)).unwrap();
        store.add_report("a", 0, &report(1, 1.0)).unwrap();
        store.add_report("a-b", 0, &report(2, 2.0)).unwrap();
        let numbers =
            |s: &str| -> Vec<u64> { store.trials(s).unwrap().iter().map(|t| t.number).collect() };
        assert_eq!(numbers("a"), vec![0, 1]);
        assert_eq!(numbers("a-b"), vec![0, 7]);
        assert_eq!(numbers("ab"), vec![3]);
        assert_eq!(numbers("a_"), Vec::<u64>::new());
        assert_eq!(store.reports("a", 0).unwrap(), vec![report(1, 1.0)]);
        assert_eq!(store.reports("a-b", 0).unwrap(), vec![report(2, 2.0)]);
        let names: Vec<String> = store
            .studies()
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["a", "a-b", "a_", "ab"]);
        assert_eq!(store.events(Some("a"), 100).unwrap().len(), 3);
        assert_eq!(store.events(Some("a-b"), 100).unwrap().len(), 3);
        store.delete_study("a").unwrap();
        assert_eq!(numbers("a-b"), vec![0, 7]);
        assert_eq!(store.reports("a-b", 0).unwrap(), vec![report(2, 2.0)]);
        assert_eq!(store.events(Some("a-b"), 100).unwrap().len(), 3);
    }

    #[test]
    fn reports_come_by_step_and_replace_the_same_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_study(&study("s")).unwrap();
        store.put_trials(&[trial("s", 0), trial("s", 1)]).unwrap();
        for step in [1000u64, 5, 256, 0, 300] {
            store
                .add_report("s", 0, &report(step, step as f64))
                .unwrap();
        }
        store.add_report("s", 0, &report(256, 0.5)).unwrap();
        store.add_report("s", 1, &report(9, 9.0)).unwrap();
        let got: Vec<(u64, f64)> = store
            .reports("s", 0)
            .unwrap()
            .iter()
            .map(|r| (r.step, r.values["eval_loss"]))
            .collect();
        assert_eq!(
            got,
            [(0, 0.0), (5, 5.0), (256, 0.5), (300, 300.0), (1000, 1000.0)]
        );
        assert_eq!(store.reports("s", 1).unwrap(), vec![report(9, 9.0)]);
        assert!(store.reports("s", 2).unwrap().is_empty());
        // Reports append no events.
        assert_eq!(store.events(Some("s"), 100).unwrap().len(), 3);
    }

    #[test]
    fn writes_need_an_existing_study_and_trial() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(matches!(
            store.put_trial(&trial("ghost", 0)),
            Err(StoreError::NoStudy(n)) if n == "ghost"
        ));
        assert!(matches!(
            store.update_study(&study("ghost")),
            Err(StoreError::NoStudy(_))
        ));
        assert!(matches!(
            store.add_report("ghost", 0, &report(1, 1.0)),
            Err(StoreError::NoStudy(_))
        ));
        store.create_study(&study("s")).unwrap();
        assert!(matches!(
            store.create_study(&study("s")),
            Err(StoreError::StudyExists(n)) if n == "s"
        ));
        assert!(matches!(
            store.add_report("s", 4, &report(1, 1.0)),
            Err(StoreError::NoTrial { number: 4, .. })
        ));
        // put_trials is all or nothing.
        assert!(matches!(
            store.put_trials(&[trial("s", 0), trial("ghost", 1)]),
            Err(StoreError::NoStudy(_))
        ));
        assert!(store.trials("s").unwrap().is_empty());
        assert_eq!(store.events(None, 100).unwrap().len(), 1);
        assert!(matches!(
            store.delete_study("ghost"),
            Err(StoreError::NoStudy(_))
        ));
    }

    #[test]
    fn non_finite_numbers_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_study(&study("s")).unwrap();
        let mut t = trial("s", 0);
        Arc::make_mut(&mut t.metrics).insert("eval_loss".into(), f64::NAN);
        let err = store.put_trial(&t).unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("metric 'eval_loss'"), "{err}");
        let mut t = trial("s", 0);
        Arc::make_mut(&mut t.params).insert("lr".into(), ParamValue::Float(f64::INFINITY));
        assert!(matches!(store.put_trial(&t), Err(StoreError::Invalid(_))));
        store.put_trial(&trial("s", 0)).unwrap();
        assert!(matches!(
            store.add_report("s", 0, &report(1, f64::NEG_INFINITY)),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.create_study(&study("")),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.create_study(&study("a\0b")),
            Err(StoreError::Invalid(_))
        ));
        // Reads with such names find nothing (and never another study's keys).
        assert!(store.trials("s\0").unwrap().is_empty());
        assert_eq!(store.trial("", 0).unwrap(), None);
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_study(&study("s")).unwrap();
        store.put_trial(&trial("s", 0)).unwrap();
        store
            .trials
            .insert(trial_key("s", 1), &b"{not json"[..])
            .unwrap();
        store.studies.insert("t", &b"\xff\x00"[..]).unwrap();
        assert!(matches!(
            store.trials("s"),
            Err(StoreError::Corrupt { tree: "trials", .. })
        ));
        assert!(matches!(
            store.trial("s", 1),
            Err(StoreError::Corrupt { tree: "trials", .. })
        ));
        assert!(matches!(
            store.studies(),
            Err(StoreError::Corrupt {
                tree: "studies",
                ..
            })
        ));
        // Overwriting a corrupt trial needs its old state for the event: reported, not a panic.
        assert!(matches!(
            store.put_trial(&trial("s", 1)),
            Err(StoreError::Corrupt { tree: "trials", .. })
        ));
        store.meta.insert(SCHEMA_KEY, &b"x"[..]).unwrap();
        drop(store);
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Corrupt { tree: "meta", .. })
        ));
    }

    #[test]
    fn events_record_each_state_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut s = study("s");
        store.create_study(&s).unwrap();
        store.create_study(&study("other")).unwrap();
        let mut t = trial("s", 3);
        store.put_trial(&t).unwrap();
        t.state = TrialState::Running;
        store.put_trial(&t).unwrap();
        // Same state and attempt: no event.
        t.last_seen_at = Some(5.0);
        t.slot = Some("gpu0".into());
        store.put_trial(&t).unwrap();
        t.state = TrialState::Queued;
        t.attempt = 2;
        store.put_trial(&t).unwrap();
        s.state = StudyState::Paused;
        store.update_study(&s).unwrap();
        s.message = Some("still paused".into());
        store.update_study(&s).unwrap();
        assert_eq!(
            store.study("s").unwrap().unwrap().message.as_deref(),
            Some("still paused")
        );

        let all = store.events(Some("s"), usize::MAX).unwrap();
        assert_eq!(
            whats(&all),
            [
                "study created",
                "trial queued (attempt 1)",
                "trial running (attempt 1)",
                "trial queued (attempt 2)",
                "study paused",
            ]
        );
        assert_eq!(all[1].trial, Some(3));
        assert_eq!(all[0].trial, None);
        assert!(all.iter().all(|e| e.study == "s" && e.at > 1e9));
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        let newest = store.events(Some("s"), 2).unwrap();
        assert_eq!(whats(&newest), ["trial queued (attempt 2)", "study paused"]);
        let global = store.events(None, 3).unwrap();
        assert_eq!(
            whats(&global),
            [
                "trial running (attempt 1)",
                "trial queued (attempt 2)",
                "study paused"
            ]
        );
        assert_eq!(store.events(None, usize::MAX).unwrap().len(), 6);
        assert!(store.events(None, 0).unwrap().is_empty());

        // Sequence numbers keep growing across reopen, even after the newest are deleted.
        let last = store.events(None, 1).unwrap()[0].seq;
        store.delete_study("s").unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        store.create_study(&study("s")).unwrap();
        let fresh = store.events(Some("s"), usize::MAX).unwrap();
        assert_eq!(whats(&fresh), ["study created"]);
        assert!(fresh[0].seq > last);
    }

    #[test]
    fn delete_study_removes_everything_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_study(&study("gone")).unwrap();
        store.create_study(&study("kept")).unwrap();
        store
            .put_trials(&[trial("gone", 0), trial("gone", 1)])
            .unwrap();
        store.put_trial(&trial("kept", 0)).unwrap();
        store.add_report("gone", 1, &report(10, 1.0)).unwrap();
        store.add_report("kept", 0, &report(10, 1.0)).unwrap();
        store.delete_study("gone").unwrap();
        assert_eq!(store.study("gone").unwrap(), None);
        assert!(store.trials("gone").unwrap().is_empty());
        assert!(store.reports("gone", 1).unwrap().is_empty());
        assert!(store.events(Some("gone"), 100).unwrap().is_empty());
        assert!(store
            .events(None, 100)
            .unwrap()
            .iter()
            .all(|e| e.study == "kept"));
        assert_eq!(store.trials("kept").unwrap().len(), 1);
        assert_eq!(store.reports("kept", 0).unwrap().len(), 1);
        // Nothing left behind in any tree.
        let prefix = study_prefix("gone");
        for tree in [&store.trials, &store.reports, &store.study_events] {
            assert_eq!(tree.scan_prefix(&prefix).count(), 0);
        }
        // A new study of the same name starts empty.
        store.create_study(&study("gone")).unwrap();
        assert!(store.trials("gone").unwrap().is_empty());
    }

    #[test]
    fn concurrent_writers_get_distinct_ordered_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        store.create_study(&study("s")).unwrap();
        let handles: Vec<_> = (0..4u64)
            .map(|k| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..10 {
                        store.put_trial(&trial("s", k * 100 + i)).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(store.trials("s").unwrap().len(), 40);
        let events = store.events(None, usize::MAX).unwrap();
        assert_eq!(events.len(), 41);
        assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    /// Prints how long a durable `put_trial` takes here: `cargo test -p quantune-state --
    /// --ignored --nocapture put_trial_latency`. Not a benchmark, and asserts nothing.
    #[test]
    #[ignore]
    fn put_trial_latency() {
        let dir = tempfile::tempdir_in(".").unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_study(&study("s")).unwrap();
        let n = 200u64;
        let start = std::time::Instant::now();
        for i in 0..n {
            let mut t = trial("s", i);
            store.put_trial(&t).unwrap();
            t.state = TrialState::Running;
            store.put_trial(&t).unwrap();
        }
        let each = start.elapsed() / (2 * n as u32);
        let batch: Vec<_> = (n..n + 100).map(|i| trial("s", i)).collect();
        let start = std::time::Instant::now();
        store.put_trials(&batch).unwrap();
        let grouped = start.elapsed();
        eprintln!("put_trial (with flush): {each:?} each; put_trials of 100: {grouped:?}");
    }

    fn param_value() -> impl Strategy<Value = ParamValue> {
        prop_oneof![
            any::<i64>().prop_map(ParamValue::Int),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(ParamValue::Float),
            ".{0,12}".prop_map(ParamValue::Str),
            any::<bool>().prop_map(ParamValue::Bool),
        ]
    }

    fn finite() -> impl Strategy<Value = f64> {
        any::<f64>().prop_filter("finite", |x| x.is_finite())
    }

    fn trial_state() -> impl Strategy<Value = TrialState> {
        prop_oneof![
            Just(TrialState::Queued),
            Just(TrialState::Running),
            Just(TrialState::Complete),
            Just(TrialState::Pruned),
            Just(TrialState::Failed),
            Just(TrialState::Infeasible),
            Just(TrialState::Cancelled),
        ]
    }

    prop_compose! {
        fn trial_record()(
            number in any::<u64>(),
            state in trial_state(),
            params in prop::collection::btree_map("[a-z_]{1,10}", param_value(), 0..6),
            metrics in prop::collection::btree_map(".{0,8}", finite(), 0..4),
            info in prop::collection::btree_map(".{0,8}", ".{0,16}", 0..3),
            attempt in 1u32..5,
            reason in proptest::option::of(".{0,20}"),
            created_at in finite(),
            started_at in proptest::option::of(finite()),
            finished_at in proptest::option::of(finite()),
            imported in any::<bool>(),
        ) -> TrialRecord {
            let mut t = TrialRecord::new("prop", number, params, created_at);
            t.state = state;
            t.metrics = metrics.into();
            t.info = info.into();
            t.attempt = attempt;
            t.reason = reason;
            t.started_at = started_at;
            t.finished_at = finished_at;
            t.imported = imported;
            t
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn trial_records_round_trip_exactly(
            trials in prop::collection::vec(trial_record(), 1..8)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            store.create_study(&study("prop")).unwrap();
            let mut want = BTreeMap::new();
            for t in &trials {
                store.put_trial(t).unwrap();
                want.insert(t.number, t.clone());
            }
            for (n, t) in &want {
                let got = store.trial("prop", *n).unwrap().unwrap();
                prop_assert_eq!(&got, t);
                // Float bits too (PartialEq says 0.0 == -0.0).
                prop_assert_eq!(
                    serde_json::to_string(&got).unwrap(),
                    serde_json::to_string(t).unwrap()
                );
            }
            let all: Vec<TrialRecord> = want.into_values().collect();
            prop_assert_eq!(store.trials("prop").unwrap(), all);
        }
    }
}
