//! A damaged store is found when it is opened and reported in one short paragraph that names
//! the file and the way back, never as a panic from deep inside sled.
//!
//! Three checks: a store closed cleanly carries a seal (`store.sealed` beside the store
//! directory: the length of its `db` file and its next event number then), so a `db` file found
//! shorter at the next open was cut short while nobody used it (a copy or restore cut off, a
//! full disk), and an event log that ends earlier than sealed means sled met damage and rolled
//! back to its last intact record (which it does silently); and
//! whatever sled does while it opens and while the daemon first reads every record runs under
//! [`catch_panics`], which turns a panic (an index out of bounds on a truncated log, a
//! multi-megabyte message on flipped bytes) into [`StoreError::Damaged`] with the message cut
//! to a line. The seal is removed once the store is open, so after a crash there is none and
//! nothing can be mistaken for a truncation.

use crate::StoreError;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The most of a panic message kept in the error.
const MESSAGE_LIMIT: usize = 200;

/// The seal file of the store in `dir`.
fn seal_path(dir: &Path) -> PathBuf {
    dir.with_extension("sealed")
}

/// The store's `db` file.
pub(crate) fn db_file(dir: &Path) -> PathBuf {
    dir.join("db")
}

/// Records, after a clean stop, how long the store's `db` file is, for [`check_seal`] at the
/// next open. Best effort: a seal that cannot be written only means no check. (The store
/// seals itself again, with its event count, when it is dropped.)
pub fn seal(dir: &Path) {
    write_seal(dir, None);
}

/// Writes the seal: the `db` file's length and, when known, the next event number.
pub(crate) fn write_seal(dir: &Path, next_event: Option<u64>) {
    if let Ok(meta) = std::fs::metadata(db_file(dir)) {
        let mut text = format!("db_len {}\n", meta.len());
        if let Some(n) = next_event {
            text.push_str(&format!("next_event {n}\n"));
        }
        let _ = std::fs::write(seal_path(dir), text);
    }
}

/// What a seal says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seal {
    /// The `db` file's length at the clean stop.
    pub db_len: Option<u64>,
    /// The next event number then.
    pub next_event: Option<u64>,
}

/// Fails if the store was sealed and its `db` file has since become shorter; returns the
/// seal (for [`check_events`] once the store is open).
pub(crate) fn check_seal(dir: &Path) -> Result<Seal, StoreError> {
    let Ok(text) = std::fs::read_to_string(seal_path(dir)) else {
        return Ok(Seal::default());
    };
    if !dir.exists() {
        // The store was moved aside (the way back from damage): a fresh one starts here.
        unseal(dir);
        return Ok(Seal::default());
    }
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    let seal = Seal {
        db_len: field("db_len "),
        next_event: field("next_event "),
    };
    let now = std::fs::metadata(db_file(dir))
        .map(|m| m.len())
        .unwrap_or(0);
    if let Some(sealed) = seal.db_len.filter(|s| now < *s) {
        return Err(StoreError::Damaged {
            path: db_file(dir),
            detail: format!(
                "it is {now} bytes but was {sealed} when quantune last stopped cleanly: it was truncated"
            ),
        });
    }
    Ok(seal)
}

/// Fails if the opened store's event log ends before where it ended at the sealed stop: sled
/// found damage and rolled back to its last intact record, silently dropping the rest.
pub(crate) fn check_events(dir: &Path, seal: Seal, next_event: u64) -> Result<(), StoreError> {
    match seal.next_event {
        Some(sealed) if next_event < sealed => Err(StoreError::Damaged {
            path: db_file(dir),
            detail: format!(
                "its records end at event {} but reached event {} when quantune last stopped cleanly: {} change(s) were lost to damage in the file",
                next_event.saturating_sub(1),
                sealed - 1,
                sealed - next_event
            ),
        }),
        _ => Ok(()),
    }
}

/// Removes the seal once the store is open (the next clean stop writes a new one).
pub(crate) fn unseal(dir: &Path) {
    let _ = std::fs::remove_file(seal_path(dir));
}

/// The message of the panic being caught, cut short.
static CAUGHT: Mutex<Option<String>> = Mutex::new(None);

/// Runs `f`, which reads the store in `dir`; a panic inside it becomes
/// [`StoreError::Damaged`] (and prints nothing: the panic hook is quiet meanwhile).
pub fn catch_panics<T>(dir: &Path, f: impl FnOnce() -> T) -> Result<T, StoreError> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        let mut short: String = msg
            .chars()
            .take(MESSAGE_LIMIT)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if msg.chars().count() > MESSAGE_LIMIT {
            short.push('…');
        }
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        *CAUGHT.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{short}{at}"));
    }));
    let result = catch_unwind(AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    result.map_err(|_| {
        let what = CAUGHT
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| "a panic".into());
        StoreError::Damaged {
            path: db_file(dir),
            detail: format!("reading it failed inside the storage library ({what})"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_short_error_and_the_hook_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let huge = "x".repeat(5 << 20);
        let e = catch_panics(&store, || -> u32 { panic!("{huge}") }).unwrap_err();
        let text = e.to_string();
        assert!(text.len() < 1200, "{} bytes", text.len());
        assert!(
            text.contains("quantune restore") && text.contains("store/db"),
            "{text}"
        );
        assert_eq!(catch_panics(&store, || 7).unwrap(), 7);
    }

    #[test]
    fn a_sealed_store_found_shorter_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir(&store).unwrap();
        std::fs::write(db_file(&store), vec![0u8; 1000]).unwrap();
        seal(&store);
        check_seal(&store).unwrap();
        write_seal(&store, Some(8));
        let s = check_seal(&store).unwrap();
        check_events(&store, s, 8).unwrap();
        let e = check_events(&store, s, 5).unwrap_err().to_string();
        assert!(e.contains("3 change(s) were lost"), "{e}");
        std::fs::write(db_file(&store), vec![0u8; 10]).unwrap();
        let e = check_seal(&store).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("10 bytes"), "{e}");
        unseal(&store);
        check_seal(&store).unwrap();
        // Moved aside, as the error says: the fresh store that follows is not refused.
        seal(&store);
        std::fs::rename(&store, dir.path().join("store.damaged")).unwrap();
        check_seal(&store).unwrap();
    }
}
