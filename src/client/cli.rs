//! Every command-line flag and subcommand, defined once with its help text (clap derive).

use crate::view::color::ColorChoice;
use crate::view::plot::PlotKind;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Parses `WIDTHxHEIGHT`.
fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("\"{s}\" is not a size; write WIDTHxHEIGHT, e.g. 960x600");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if !(100..=8000).contains(&w) || !(100..=8000).contains(&h) {
        return Err(format!(
            "{s}: width and height must be between 100 and 8000 pixels"
        ));
    }
    Ok((w, h))
}

/// Parses a share in (0, 1].
fn parse_quantile(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(q) if q > 0.0 && q <= 1.0 => Ok(q),
        _ => Err(format!(
            "\"{s}\" must be a number in (0, 1], e.g. 0.1 for the best 10 %"
        )),
    }
}

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
        help_heading = GLOBAL,
        env = "QUANTUNE_SOCKET",
        default_value = "/run/quantune/quantune.sock"
    )]
    pub socket: PathBuf,

    /// Reach the daemon's TCP listener instead of the socket, e.g. http://127.0.0.1:7707; the
    /// bearer token comes from $QUANTUNE_TOKEN or --token-file.
    #[arg(long, global = true,
        help_heading = GLOBAL, env = "QUANTUNE_URL")]
    pub url: Option<String>,

    /// File holding the bearer token for --url (when $QUANTUNE_TOKEN is not set).
    #[arg(long, global = true,
        help_heading = GLOBAL, env = "QUANTUNE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Output format (client commands that print data).
    #[arg(long, global = true,
        help_heading = GLOBAL, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Colours in tables and progress: on a terminal only (auto), always, or never. Never in
    /// --format json or csv; NO_COLOR turns them off.
    #[arg(long, global = true,
        help_heading = GLOBAL, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

pub use crate::view::table::Format;

/// The help heading of the options every subcommand takes, so that a subcommand's own come
/// first in its `--help`.
const GLOBAL: &str = "Global options";

/// The `quantune` command: the derive definitions with the examples of
/// `client::examples` attached. `--help`, the man page and completions all come from this.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    crate::client::examples::attach(Cli::command())
}

/// Parses the process's arguments against [`command`] (exiting with clap's message and
/// status 2 on a usage error, or printing `--help`/`--version`).
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
}

/// Which columns a table shows on screen (`trials`, `leaderboard`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ColumnFlags {
    /// Show these columns, in this order: names from the table's header, comma-separated,
    /// e.g. trial,latency_ms,note (also for --format csv).
    #[arg(long, value_name = "A,B", conflicts_with = "all")]
    pub columns: Option<String>,
    /// Show every column at full width (by default the table fits the terminal, or 100
    /// characters: long cells cut with …, and the columns that do not fit named below it).
    #[arg(long)]
    pub all: bool,
}

impl ColumnFlags {
    /// The choice the flags make.
    pub fn choice(&self) -> crate::view::table::Columns {
        crate::view::table::Columns::from_flags(self.columns.as_deref(), self.all)
    }
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
    ///
    /// On a terminal a progress bar shows finished/total trials and live counts; otherwise one
    /// line per finished trial is printed to stderr.
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
    Studies {
        /// Only studies with this tag (repeat: all of them).
        #[arg(long)]
        tag: Vec<String>,
    },
    /// Daemon status (slots, GPUs, studies), or one study's.
    Status {
        /// A study name.
        study: Option<String>,
    },
    /// A study's trials, by number.
    Trials {
        /// The study.
        study: String,
        #[command(flatten)]
        columns: ColumnFlags,
    },
    /// One trial's learning curve: its intermediate reports, as a table with a bar per step.
    Curve {
        /// The study.
        study: String,
        /// The trial number.
        trial: u64,
    },
    /// A study's leaderboard (feasible best first; Pareto ranks for several objectives).
    Leaderboard {
        /// The study.
        study: String,
        /// Show only the first N rows.
        #[arg(long)]
        top: Option<usize>,
        #[command(flatten)]
        columns: ColumnFlags,
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
    /// Export a study (every trial and report) as JSON lines, which `import` reads back; with
    /// --format csv, the trials as a flat CSV table instead (one row per trial, like `trials
    /// --format csv`: for spreadsheets, not for `import`).
    Export {
        /// The study.
        study: String,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Import a study exported by `export` (one FILE, or - for stdin), or benchmark results
    /// into a study (STUDY FILES…: JSON, JSON lines, CSV or TSV files, or directories of them).
    ///
    /// Result rows become finished trials marked imported, which the strategy uses as history
    /// and which cost no budget. Columns named like a parameter or an objective/constraint
    /// metric are used as such; --map renames the others; other numeric columns are kept as
    /// metrics, other text as info. Every row outside the study's space or lacking a metric is
    /// reported as FILE:LINE; then nothing is imported unless --skip-invalid.
    Import {
        /// The export file (or -); or, with FILES, the study to import results into.
        #[arg(value_name = "FILE|STUDY")]
        first: String,
        /// Result files or directories to import into the study.
        #[arg(value_name = "FILES")]
        files: Vec<PathBuf>,
        /// Map a column to a parameter or metric (COLUMN=NAME; COLUMN= drops it). Repeatable.
        #[arg(long = "map", value_name = "COLUMN=NAME", requires = "files")]
        map: Vec<String>,
        /// A mapping file: [columns] COLUMN = "name", [defaults] param = value.
        #[arg(long, value_name = "FILE", requires = "files")]
        mapping: Option<PathBuf>,
        /// Import the valid rows even if some are invalid (they are still listed).
        #[arg(long, requires = "files")]
        skip_invalid: bool,
        /// Check every row and report; import nothing.
        #[arg(long, requires = "files")]
        dry_run: bool,
        /// Import the export's one study under this name (a copy next to the original).
        #[arg(long = "as", value_name = "NAME", conflicts_with = "files")]
        to: Option<String>,
    },
    /// Delete a study with every trial and report of it; running trials are stopped first.
    ///
    /// Asks for confirmation on a terminal; elsewhere (scripts, pipes) it needs --yes.
    Delete {
        /// The study.
        study: String,
        /// Do not ask.
        #[arg(long, short)]
        yes: bool,
    },
    /// Raise a study's budgets; a completed study runs again, its strategy going on from the
    /// trials it has. Cancelled and failed studies stay ended.
    Extend {
        /// The study.
        study: String,
        /// New budget.max_trials (not below the current one).
        #[arg(long)]
        max_trials: Option<u64>,
        /// New budget.max_wall, counted from the study's creation, e.g. 24h.
        #[arg(long)]
        max_wall: Option<String>,
        /// New budget.max_gpu_hours.
        #[arg(long)]
        max_gpu_hours: Option<f64>,
    },
    /// Copy a study, every trial and report, to a new study that shares nothing with it.
    Copy {
        /// The study to copy.
        study: String,
        /// The new study's name.
        to: String,
    },
    /// Add (+TAG or TAG) and remove (-TAG) tags of a study; with none, print its tags.
    Tag {
        /// The study.
        study: String,
        /// +TAG, TAG or -TAG, as many as needed.
        #[arg(allow_hyphen_values = true, value_name = "+TAG|-TAG")]
        changes: Vec<String>,
    },
    /// Set the notes of a study (STUDY TEXT) or of one trial (STUDY TRIAL TEXT); an empty
    /// TEXT removes them.
    Note {
        /// The study.
        study: String,
        /// TEXT, or TRIAL TEXT.
        #[arg(value_name = "[TRIAL] TEXT", num_args = 1..=2, required = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Queue a configuration to run before the strategy's next suggestion.
    ///
    /// Parameters left out are filled by the strategy; the trial counts against
    /// budget.max_trials. Prints the queued trial.
    Enqueue {
        /// The study.
        study: String,
        /// A JSON object of parameter values.
        #[arg(long)]
        params: String,
    },
    /// Draw a plot of a study into an SVG or PNG file (rendered here from the API's export).
    ///
    /// history: each objective per trial with the best-so-far line; pareto: the first two
    /// objectives, front highlighted; parallel: parallel coordinates of parameters and
    /// objectives; importance: PED-ANOVA bars per objective; curves: intermediate reports per
    /// step. Failed, pruned and infeasible trials are shown, marked.
    Plot {
        /// The study.
        study: String,
        /// What to draw.
        #[arg(long, value_enum, default_value_t = PlotKind::History)]
        kind: PlotKind,
        /// The file to write: .svg or .png (- writes SVG to stdout).
        #[arg(long, short)]
        out: PathBuf,
        /// Size in pixels, WIDTHxHEIGHT.
        #[arg(long, default_value = "960x600", value_parser = parse_size)]
        size: (u32, u32),
        /// Learning curves: the intermediate metric (default: the pruner's, else the first
        /// objective's).
        #[arg(long)]
        metric: Option<String>,
        /// Importance: the share of trials counted as top (0–1].
        #[arg(long, default_value_t = 0.1, value_parser = parse_quantile)]
        quantile: f64,
    },
    /// Which parameters mattered, per objective: PED-ANOVA over the feasible trials, as a
    /// text bar chart (importances sum to 1).
    Importance {
        /// The study.
        study: String,
        /// The share of trials counted as top (0–1].
        #[arg(long, default_value_t = 0.1, value_parser = parse_quantile)]
        quantile: f64,
    },
    /// Show a study's status and leaderboard, refreshed until it finishes (Ctrl-C stops).
    Watch {
        /// The study.
        study: String,
        /// Time between refreshes.
        #[arg(long, default_value = "2s", value_parser = crate::model::duration::parse_duration)]
        interval: f64,
        /// Leaderboard rows to show.
        #[arg(long, default_value_t = 15)]
        top: usize,
    },
    /// Serve the daemon's read-only web page (daemon config `web = true`) on a local address
    /// for a browser; only GET requests under /ui/ are forwarded to the socket.
    Web {
        /// Address to listen on (keep it loopback: the page has no login).
        #[arg(long, default_value = "127.0.0.1:8765")]
        listen: String,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write quantune.1 and one page per subcommand to a directory.
    Man {
        /// Write the pages into this directory instead.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Copy every study (every trial, every report) from the running daemon into DIR, taken at
    /// one consistent moment; restore it with `restore DIR`.
    Backup {
        /// Directory to write `quantune-backup.jsonl` and `manifest.json` into (created; must
        /// not already hold a backup).
        dir: PathBuf,
    },
    /// Load a backup made by `backup` into the running daemon.
    Restore {
        /// The backup directory (or its `quantune-backup.jsonl`).
        dir: PathBuf,
        /// Leave out studies the daemon already has instead of refusing the whole restore.
        #[arg(long)]
        skip_existing: bool,
    },
    /// Print a trial's output: its stdout to stdout and its stderr to stderr (the daemon keeps
    /// both per attempt); --follow keeps printing while the attempt runs.
    Logs {
        /// The study.
        study: String,
        /// The trial number.
        trial: u64,
        /// The attempt (from 1; default: the last).
        #[arg(long)]
        attempt: Option<u32>,
        /// Which output: both (default), stdout or stderr.
        #[arg(long, value_enum, default_value_t = LogStreams::Both)]
        stream: LogStreams,
        /// Keep printing what the attempt writes until it ends (Ctrl-C stops).
        #[arg(long, short)]
        follow: bool,
    },
    /// List CUDA devices this machine offers.
    Gpus,
    /// Webhook notifications of the daemon config's [[notify]] tables (docs/NOTIFY.md).
    Notify {
        /// What to do.
        #[command(subcommand)]
        action: crate::client::notify::NotifyAction,
    },
}

/// `quantune logs --stream`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogStreams {
    /// stdout to stdout and stderr to stderr.
    Both,
    /// Only the trial's stdout.
    Stdout,
    /// Only the trial's stderr.
    Stderr,
}
