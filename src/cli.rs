//! Every command-line flag and subcommand, defined once with its help text (clap derive).

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// quantune — tunes quantization-aware fine-tuning: proposes learning-rate, batch-size and
/// quantization settings, runs each as a trial, keeps every trial, and ranks the latency /
/// throughput / quality trade-off.
#[derive(Parser, Debug)]
#[command(name = "quantune", version, about, long_about = None)]
pub struct Cli {
    /// The daemon's API socket (client commands).
    #[arg(
        long,
        global = true,
        env = "QUANTUNE_SOCKET",
        default_value = "/run/quantune/quantune.sock"
    )]
    pub socket: PathBuf,

    /// Output format (client commands that print data).
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// A JSON document (stable; see docs/CLI.md).
    Json,
    /// Comma-separated values with a header row.
    Csv,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon (what systemd starts).
    Serve {
        /// Daemon config file (default /etc/quantune/quantune.toml if it exists).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run one study in the foreground, without a daemon; Ctrl-C stops, a second run resumes.
    Run {
        /// The study file.
        file: PathBuf,
        /// State directory (created if missing).
        #[arg(long, default_value = ".quantune")]
        state: PathBuf,
        /// CPU slots (default: the number of cores).
        #[arg(long)]
        cpu_slots: Option<usize>,
        /// Print no per-trial progress.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Check a study file without a daemon.
    Validate {
        /// The study file.
        file: PathBuf,
    },
    /// Submit a study file to the daemon.
    Submit {
        /// The study file.
        file: PathBuf,
    },
    /// List studies.
    Studies,
    /// Daemon status (slots, GPUs, studies), or one study's.
    Status {
        /// A study name.
        study: Option<String>,
    },
    /// A study's trials, by number.
    Trials {
        /// The study.
        study: String,
    },
    /// A study's leaderboard (SPEC §6 ordering).
    Leaderboard {
        /// The study.
        study: String,
        /// Show only the first N rows.
        #[arg(long)]
        top: Option<usize>,
    },
    /// Stop starting new trials of a study (running ones go on).
    Pause {
        /// The study.
        study: String,
    },
    /// Resume a paused study.
    Resume {
        /// The study.
        study: String,
    },
    /// Cancel a study: queued trials are dropped, running ones stopped.
    Cancel {
        /// The study.
        study: String,
    },
    /// Get the next trial of an external study: prints {"trial": N, "params": {…}}.
    Ask {
        /// The study.
        study: String,
    },
    /// Report an intermediate value of a running external trial: prints {"prune": bool}.
    Report {
        /// The study.
        study: String,
        /// The trial number.
        trial: u64,
        /// The step the values were measured at.
        #[arg(long)]
        step: u64,
        /// A JSON object of numbers, e.g. '{"eval_loss": 2.31}'.
        #[arg(long)]
        metrics: String,
    },
    /// Finish a running external trial.
    Tell {
        /// The study.
        study: String,
        /// The trial number.
        trial: u64,
        /// Final metrics, a JSON object of numbers.
        #[arg(long, group = "outcome", required_unless_present_any = ["failed", "infeasible"])]
        metrics: Option<String>,
        /// Mark the trial failed with this reason.
        #[arg(long, group = "outcome")]
        failed: Option<String>,
        /// Mark the configuration infeasible with this reason.
        #[arg(long, group = "outcome")]
        infeasible: Option<String>,
    },
    /// Export a study (every trial) as JSON lines.
    Export {
        /// The study.
        study: String,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Import studies exported by `export` (a file, or - for stdin).
    Import {
        /// The JSON-lines file.
        file: PathBuf,
    },
    /// List CUDA devices this machine offers.
    Gpus,
    /// One trial of the built-in workload `builtin:qat-bench` (the daemon starts it).
    #[command(hide = true, name = "qat-bench")]
    QatBench(crate::workload::qat::BenchArgs),
}
