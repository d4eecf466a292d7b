//! What a scheduler call can fail with; the API maps each variant to one HTTP status
//! ([`SchedulerError::status`]) and the CLI prints the message.

use quantune_state::StoreError;

/// An error the API turns into an HTTP status and the CLI into exit code 1.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchedulerError {
    /// No such study or trial.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (name taken, study finished, …).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The store failed, or the scheduler has stopped.
    #[error("{0}")]
    Internal(String),
}

impl SchedulerError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            SchedulerError::NotFound(_) => 404,
            SchedulerError::Conflict(_) => 409,
            SchedulerError::BadRequest(_) => 400,
            SchedulerError::Internal(_) => 500,
        }
    }

    /// A store error as the caller should see it (with a hint for a full disk).
    pub fn from_store(e: StoreError) -> Self {
        match e {
            StoreError::StudyExists(n) => SchedulerError::Conflict(format!(
                "a study named '{n}' already exists; choose another [study] name"
            )),
            StoreError::NoStudy(n) => SchedulerError::NotFound(format!("no study named '{n}'")),
            StoreError::BeingDeleted(_) => SchedulerError::Conflict(e.to_string()),
            StoreError::Import { .. } => SchedulerError::BadRequest(e.to_string()),
            other => SchedulerError::Internal(format!("{other}{}", disk_hint(&other))),
        }
    }

    /// The reply when the scheduler loop is gone (stopping, or stopped after a store failure).
    pub fn stopped() -> Self {
        SchedulerError::Internal(
            "the scheduler has stopped (the daemon is shutting down); try again once it is back"
                .into(),
        )
    }
}

/// An operator's hint for a store error: a full disk is common and fixable.
pub(crate) fn disk_hint(e: &StoreError) -> &'static str {
    let text = e.to_string();
    if text.contains("No space left on device") || text.contains("os error 28") {
        " (the disk holding the state directory is full: free space there; what was not recorded was not acknowledged, and is retried)"
    } else {
        ""
    }
}

/// A study that does not exist.
pub(crate) fn not_found(name: &str) -> SchedulerError {
    SchedulerError::NotFound(format!("no study named '{name}' (see `quantune studies`)"))
}

/// A trial that does not exist.
pub(crate) fn no_trial(name: &str, n: u64) -> SchedulerError {
    SchedulerError::NotFound(format!("study '{name}' has no trial {n}"))
}

/// Result of scheduler calls.
pub type Result<T> = std::result::Result<T, SchedulerError>;
