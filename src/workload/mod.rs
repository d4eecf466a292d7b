//! Built-in workloads: trials the `quantune` binary runs itself, so that a study works with no
//! Python, no GPU and no script of the user's (`trial.workload = "builtin:…"`).
//!
//! A built-in workload keeps the one executor path: the daemon starts the same binary as a
//! child process with a hidden subcommand (`quantune qat-bench …`), and that process speaks the
//! ordinary trial protocol (docs/TRIALS.md) — it reads its parameters from argv and appends JSON lines
//! to `$QUANTUNE_METRICS_FILE`. Timeouts, cancellation, retries and the stderr tail therefore
//! behave exactly as for a user's command.

pub mod qat;
