//! The examples at the end of every subcommand's `--help`, of `quantune --help`, in the man
//! page and in docs/CLI.md: written once, here, and attached to the clap definitions by
//! [`attach`]. A new subcommand needs one line in [`EXAMPLES`]; the tests fail until it has
//! one and until docs/CLI.md carries it (`QUANTUNE_BLESS=1 cargo test --test cli_manners`
//! rewrites that section of docs/CLI.md from this table).

/// Examples per subcommand (`""` is `quantune` itself), in `quantune --help` order. A `#`
/// starts a comment shown beside the command. At most [`MAX_LINE`] characters a line, so that
/// `--help` never wraps one.
pub const EXAMPLES: &[(&str, &[&str])] = &[
    ("", &[
        "quantune validate configs/quickstart.toml",
        "quantune run configs/quickstart.toml          # foreground, no daemon",
        "quantune submit study.toml                    # to the daemon",
        "quantune watch gemma1b-qat                    # live leaderboard",
        "quantune plot gemma1b-qat --kind pareto --out front.svg",
        "quantune importance gemma1b-qat",
        "quantune import gemma1b-qat old-results/ --map lat=latency_ms",
        "quantune completions bash > /etc/bash_completion.d/quantune",
    ]),
    ("serve", &[
        "quantune serve --config /etc/quantune/quantune.toml",
        "RUST_LOG=debug quantune serve --config dev.toml 2> daemon.log",
    ]),
    ("run", &[
        "quantune run configs/quickstart.toml",
        "quantune run study.toml --state /data/qt --cpu-slots 4",
    ]),
    ("validate", &[
        "quantune validate configs/quickstart.toml",
        "quantune validate study.toml --format json | jq .study.budget",
    ]),
    ("submit", &[
        "quantune submit configs/quickstart.toml",
        "quantune submit study.toml --url http://gpu-box:7707 --token-file ~/.quantune-token",
    ]),
    ("studies", &[
        "quantune studies",
        "quantune studies --format csv > studies.csv",
        "quantune studies --tag baseline --format json",
    ]),
    ("status", &["quantune status", "quantune status gemma1b-qat"]),
    ("trials", &[
        "quantune trials gemma1b-qat",
        "quantune trials gemma1b-qat --columns trial,state,latency_ms,reason",
        "quantune trials gemma1b-qat --format json | jq '.[] | select(.state == \"failed\")'",
    ]),
    ("curve", &["quantune curve gemma1b-qat 7", "quantune curve gemma1b-qat 7 --format csv"]),
    ("leaderboard", &[
        "quantune leaderboard gemma1b-qat --top 10",
        "quantune leaderboard gemma1b-qat --all                  # every column, full width",
        "quantune leaderboard gemma1b-qat --columns rank,trial,latency_ms,note",
        "quantune leaderboard gemma1b-qat --format csv > board.csv",
    ]),
    ("pause", &["quantune pause gemma1b-qat"]),
    ("resume", &["quantune resume gemma1b-qat"]),
    ("cancel", &["quantune cancel gemma1b-qat"]),
    ("ask", &["quantune ask my-external-study    # {\"trial\": 0, \"params\": {…}}"]),
    ("report", &["quantune report my-external-study 0 --step 100 --metrics '{\"eval_loss\": 2.31}'"]),
    ("tell", &[
        "quantune tell my-external-study 0 --metrics '{\"latency_ms\": 12.5, \"throughput_tok_s\": 840}'",
        "quantune tell my-external-study 1 --failed 'CUDA out of memory'",
        "quantune tell my-external-study 2 --infeasible 'int4 kernels need compute capability 8.0'",
    ]),
    ("export", &[
        "quantune export gemma1b-qat -o gemma1b-qat.jsonl",
        "quantune export gemma1b-qat --format csv > trials.csv   # one row per trial",
    ]),
    ("import", &[
        "quantune import backup.jsonl",
        "quantune export old | quantune import -",
        "quantune import --as gemma1b-qat-2 gemma1b-qat.jsonl  # beside the original",
        "quantune import gemma1b-qat results/ --dry-run",
        "quantune import gemma1b-qat runs.csv --map lr=learning_rate --map lat=latency_ms",
        "quantune import gemma1b-qat runs/*.json --mapping mapping.toml --skip-invalid",
    ]),
    ("delete", &[
        "quantune delete old-sweep",
        "quantune delete old-sweep --yes",
    ]),
    ("extend", &[
        "quantune extend gemma1b-qat --max-trials 60",
        "quantune extend gemma1b-qat --max-wall 24h --max-gpu-hours 40",
    ]),
    ("copy", &[
        "quantune copy gemma1b-qat gemma1b-qat-wider",
    ]),
    ("tag", &[
        "quantune tag gemma1b-qat +baseline +int4",
        "quantune tag gemma1b-qat -int4",
    ]),
    ("note", &[
        "quantune note gemma1b-qat \"int4 looks promising; try lr 1e-4\"",
        "quantune note gemma1b-qat 7 \"loss spike at step 300\"",
        "quantune note gemma1b-qat 7 \"\"",
    ]),
    ("enqueue", &[
        "quantune enqueue gemma1b-qat --params '{\"learning_rate\": 3e-4, \"quantization\": \"int8\"}'",
        "quantune enqueue gemma1b-qat --params '{\"quantization\": \"int4\"}'",
    ]),
    ("plot", &[
        "quantune plot gemma1b-qat --kind history --out history.svg",
        "quantune plot gemma1b-qat --kind pareto --out front.png --size 1600x1000",
        "quantune plot gemma1b-qat --kind curves --metric eval_loss --out curves.svg",
    ]),
    ("importance", &[
        "quantune importance gemma1b-qat",
        "quantune importance gemma1b-qat --quantile 0.2 --format json",
    ]),
    ("watch", &[
        "quantune watch gemma1b-qat",
        "quantune watch gemma1b-qat --interval 10s --top 5",
    ]),
    ("web", &[
        "quantune web                      # then open the URL it prints",
        "quantune web --listen 127.0.0.1:0 # any free port",
    ]),
    ("completions", &[
        "quantune completions bash > /etc/bash_completion.d/quantune",
        "quantune completions zsh > \"${fpath[1]}/_quantune\"",
    ]),
    ("man", &["quantune man | man -l -", "quantune man --out-dir /usr/local/share/man/man1"]),
    ("backup", &["quantune backup /backups/quantune-$(date +%F)"]),
    ("restore", &[
        "quantune restore /backups/quantune-2026-01-31",
        "quantune restore /backups/quantune-2026-01-31 --skip-existing",
    ]),
    ("logs", &[
        "quantune logs gemma1b-qat 7                  # stdout and stderr of the last attempt",
        "quantune logs gemma1b-qat 7 --attempt 1 --stream stderr",
        "quantune logs gemma1b-qat 12 --follow        # while it runs",
    ]),
    ("gpus", &["quantune gpus", "quantune gpus --format json"]),
    ("notify", &[
        "quantune notify test                         # one test event to every [[notify]] target",
        "quantune notify test --config ./quantune.toml --format json",
    ]),
];

/// The longest example line: `--help` wraps at 100 columns and indents examples by two.
pub const MAX_LINE: usize = 96;

/// The examples of `subcommand` (`""` for `quantune` itself), if it has any.
pub fn of(subcommand: &str) -> Option<&'static [&'static str]> {
    EXAMPLES
        .iter()
        .find(|(name, _)| *name == subcommand)
        .map(|(_, lines)| *lines)
}

/// The `Examples:` block `--help` ends with.
pub fn help_text(lines: &[&str]) -> String {
    let mut out = String::from("Examples:");
    for l in lines {
        out.push_str("\n  ");
        out.push_str(l);
    }
    out
}

/// `cmd` (the `quantune` command) with every subcommand's examples at the end of its help.
pub fn attach(cmd: clap::Command) -> clap::Command {
    let mut cmd = match of("") {
        Some(lines) => cmd.after_help(help_text(lines)),
        None => cmd,
    };
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        if let Some(lines) = of(&name) {
            cmd = cmd.mut_subcommand(&name, |s| s.after_help(help_text(lines)));
        }
    }
    cmd
}

/// Every example, by subcommand, as the man page's top page shows them.
pub fn all_text() -> String {
    let mut out = String::new();
    for (name, lines) in EXAMPLES {
        let title = if name.is_empty() {
            "quantune".to_string()
        } else {
            format!("quantune {name}")
        };
        out.push_str(&format!("{title}:\n"));
        for l in *lines {
            out.push_str(&format!("  {l}\n"));
        }
        out.push('\n');
    }
    out
}

/// The marker lines around the generated section of docs/CLI.md.
pub const DOCS_BEGIN: &str =
    "<!-- examples: generated from src/client/examples.rs; QUANTUNE_BLESS=1 cargo test --test cli_manners rewrites it -->";
/// The line that ends the generated section.
pub const DOCS_END: &str = "<!-- end of generated examples -->";

/// The examples section of docs/CLI.md, markers included.
pub fn markdown() -> String {
    let mut out = format!("{DOCS_BEGIN}\n\n");
    for (name, lines) in EXAMPLES {
        let title = if name.is_empty() {
            "`quantune`".to_string()
        } else {
            format!("`quantune {name}`")
        };
        out.push_str(&format!("{title}\n\n```sh\n"));
        for l in *lines {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str("```\n\n");
    }
    out.push_str(DOCS_END);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_visible_subcommand_has_examples() {
        use clap::CommandFactory;
        let cmd = crate::client::cli::Cli::command();
        let missing: Vec<&str> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            .map(|s| s.get_name())
            .filter(|n| super::of(n).is_none_or(|l| l.is_empty()))
            .collect();
        assert!(
            missing.is_empty(),
            "add a line to EXAMPLES in src/client/examples.rs for: {missing:?}"
        );
        for (name, lines) in super::EXAMPLES {
            for l in *lines {
                assert!(
                    l.chars().count() <= super::MAX_LINE,
                    "longer than {} characters: {l}",
                    super::MAX_LINE
                );
            }
            assert!(
                name.is_empty() || cmd.find_subcommand(name).is_some(),
                "EXAMPLES names \"{name}\", which is not a subcommand"
            );
        }
    }
}
