//! Output that a closed pipe ends quietly. `main` restores the default SIGPIPE action
//! ([`default_sigpipe`]), so that `quantune trials x | head -1` ends the way `cat` would:
//! killed by SIGPIPE without a word (status 141 in a shell). Commands that serve (`serve`,
//! `web`) or run a study (`run`) ignore it again ([`ignore_sigpipe`]) — a client hanging up
//! must not kill them — and write through [`note`] and [`write_stdout`] instead of `println!`,
//! which panics on a closed pipe.

use std::io::Write;

/// The exit status of a command whose standard output closed early: 128 + SIGPIPE, what a
/// shell shows for a process SIGPIPE killed.
pub const CLOSED_PIPE_EXIT: u8 = 141;

/// Restores the default SIGPIPE action (Rust starts programs with it ignored). Call before
/// any thread starts.
pub fn default_sigpipe() {
    // SAFETY: resetting a signal disposition; called from `main` before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Ignores SIGPIPE again (what Rust sets up before `main`): a write to a closed pipe or socket
/// then fails with `BrokenPipe` instead of ending the process. Call before any thread starts.
pub fn ignore_sigpipe() {
    // SAFETY: as in `default_sigpipe`.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// A line on stderr (progress, notes); dropped when stderr is closed, so that a study or a
/// server goes on without its audience.
pub fn note(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// `text` on stdout, flushed; an error (a `BrokenPipe` one when the reader went away) instead
/// of a panic.
pub fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Whether `e` is, or was caused by, a write to a closed pipe.
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
