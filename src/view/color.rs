//! Terminal colours. They are used only for `--format table` output to a terminal (stdout or
//! stderr, whichever is written), never in `--format json|csv`, never when `NO_COLOR` is set
//! or `TERM=dumb`; `--color always|never` overrides the terminal check.

use crate::view::table::Format;
use std::io::IsTerminal;
use std::sync::OnceLock;

/// `--color`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColorChoice {
    /// Colours when writing to a terminal.
    #[default]
    Auto,
    /// Colours even into a pipe (not in JSON or CSV).
    Always,
    /// No colours.
    Never,
}

static CHOICE: OnceLock<ColorChoice> = OnceLock::new();

/// Records the `--color` choice (once, from `main`).
pub fn init(choice: ColorChoice) {
    let _ = CHOICE.set(choice);
}

fn allowed(is_terminal: bool) -> bool {
    match CHOICE.get().copied().unwrap_or_default() {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            is_terminal
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

/// Whether output on stdout in `format` gets colours.
pub fn stdout(format: Format) -> bool {
    format == Format::Table && allowed(std::io::stdout().is_terminal())
}

/// Whether progress lines on stderr get colours.
pub fn stderr() -> bool {
    allowed(std::io::stderr().is_terminal())
}

/// How a line or a word is painted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paint {
    /// Bold (headers).
    Bold,
    /// Bold green (the best trial).
    Best,
    /// Green (complete).
    Good,
    /// Red (failed).
    Bad,
    /// Yellow (pruned, cancelled).
    Warn,
    /// Cyan (running, queued).
    Active,
    /// Grey (infeasible, imported history).
    Dim,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Bold => "1",
            Paint::Best => "1;32",
            Paint::Good => "32",
            Paint::Bad => "31",
            Paint::Warn => "33",
            Paint::Active => "36",
            Paint::Dim => "2",
        }
    }

    /// `text` wrapped in this paint's escape codes.
    pub fn apply(self, text: &str) -> String {
        format!("\x1b[{}m{text}\x1b[0m", self.code())
    }

    /// The paint for a trial state name.
    pub fn for_state(state: &str) -> Option<Paint> {
        match state {
            "complete" => Some(Paint::Good),
            "failed" => Some(Paint::Bad),
            "pruned" | "cancelled" => Some(Paint::Warn),
            "running" | "queued" => Some(Paint::Active),
            "infeasible" => Some(Paint::Dim),
            _ => None,
        }
    }
}
