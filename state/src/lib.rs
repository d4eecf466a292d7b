//! # quantune-state
//!
//! quantune's durable store, on sled. It holds studies, trials, intermediate reports and an
//! append-only event log, behind a typed API: nothing outside this crate sees sled.
//!
//! Every mutating call is durable when it returns (the write is flushed to disk), so the
//! daemon can acknowledge or act on a state change as soon as the call returns. A schema version
//! is kept in the store; opening a store written by a newer quantune fails with a clear error.
//!
//! ```
//! use quantune_state::{Store, StudyRecord, StudyState};
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path()).unwrap();
//! let study = StudyRecord::new("demo", serde_json::json!({}), "[study]\nname = \"demo\"\n".into(), 0.0);
//! store.create_study(&study).unwrap();
//! assert_eq!(store.study("demo").unwrap().unwrap().state, StudyState::Running);
//! ```

pub mod batch;
pub mod damage;
pub mod purge;
pub mod records;
pub mod store;
pub mod transfer;

pub use batch::Batch;
pub use records::{
    AttemptRecord, Event, GpuUsage, Info, Report, StudyRecord, StudyState, TrialRecord, TrialState,
};
pub use store::{Pending, Store, StoreError, SCHEMA_VERSION};
pub use transfer::{ExportLine, ImportSummary};
