//! The `quantune` binary: parses the command line and hands off. Exit codes: 0 success,
//! 1 an error it explains, 2 a usage error (from clap), 130 interrupted `run`.

use quantune::client::cli::{Command, Format};
use std::process::ExitCode;

fn init_tracing(daemon: bool) {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(if daemon { "info" } else { "warn" }));
    // Under systemd (JOURNAL_STREAM set) log to journald when it answers, else to stderr.
    let journald = if daemon && std::env::var_os("JOURNAL_STREAM").is_some() {
        tracing_journald::layer().ok()
    } else {
        None
    };
    match journald {
        Some(layer) => tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .init(),
        None => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colour codes only on a terminal (and as --color/NO_COLOR allow): a log
                    // file or a pipe gets plain text.
                    .with_ansi(quantune::view::color::stderr())
                    .with_target(false),
            )
            .init(),
    }
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Output to a pipe that closes (`| head`) ends the process quietly, as in other Unix tools
    // — also `--help` and usage errors. Commands that serve or run a study ignore SIGPIPE
    // again below (see client::output).
    quantune::client::output::default_sigpipe();
    // A built-in workload's trial (`quantune qat-bench …`): CPU-bound and synchronous, no
    // runtime, no tracing; the workload parses its own arguments.
    if let Some(code) = quantune::workload::dispatch(&args) {
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let cli = quantune::client::cli::parse();
    quantune::view::color::init(cli.color);
    if matches!(
        cli.command,
        Command::Serve { .. } | Command::Run { .. } | Command::Web { .. }
    ) {
        // A client hanging up must not kill these; they write through client::output.
        quantune::client::output::ignore_sigpipe();
    }
    let daemon = matches!(cli.command, Command::Serve { .. });
    init_tracing(daemon);
    let multi = matches!(cli.command, Command::Serve { .. } | Command::Run { .. });
    let rt = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result: anyhow::Result<i32> = rt.block_on(async move {
        match cli.command {
            Command::Serve { config } => quantune::daemon::serve::serve(config.as_deref())
                .await
                .map(|_| 0),
            Command::Run {
                file,
                state,
                cpu_slots,
                quiet,
            } => quantune::daemon::run::run(&file, &state, cpu_slots, quiet).await,
            Command::Validate { file } => validate(&file, cli.format),
            Command::Gpus => gpus(cli.format),
            Command::Notify { action } => quantune::client::notify::run(action, cli.format).await,
            Command::Completions { shell } => {
                clap_complete::generate(
                    shell,
                    &mut quantune::client::cli::command(),
                    "quantune",
                    &mut std::io::stdout(),
                );
                Ok(0)
            }
            Command::Man { out_dir } => man(out_dir.as_deref()),
            // The forwarder is a small server of its own (daemon/web/proxy.rs), so it is
            // started here, like `serve`, and not from the client's commands.
            Command::Web { listen } => {
                let endpoint = quantune::client::commands::endpoint(
                    &cli.socket,
                    cli.url.as_deref(),
                    cli.token_file.as_deref(),
                )?;
                quantune::daemon::web::proxy(endpoint, &listen)
                    .await
                    .map(|_| 0)
            }
            other => {
                let endpoint = quantune::client::commands::endpoint(
                    &cli.socket,
                    cli.url.as_deref(),
                    cli.token_file.as_deref(),
                )?;
                quantune::client::commands::run_client(other, endpoint, cli.format)
                    .await
                    .map(|_| 0)
            }
        }
    });
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) if quantune::client::output::is_closed_pipe(&e) => {
            ExitCode::from(quantune::client::output::CLOSED_PIPE_EXIT)
        }
        Err(e) => {
            quantune::client::output::note(&format!("error: {e:#}"));
            ExitCode::from(1)
        }
    }
}

fn validate(file: &std::path::Path, format: Format) -> anyhow::Result<i32> {
    let (def, source) = quantune::model::study::load(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut warnings = validate_warnings(&def);
    let preflight = &quantune::model::preflight::check_program;
    let file_name = file.display().to_string();
    warnings.extend(preflight(&def, &source, &file_name).map_err(|e| anyhow::anyhow!("{e}"))?);
    warnings.extend(quantune::model::preflight::metric_warnings(&def));
    for w in &warnings {
        eprintln!("warning: {}: {w}", file.display());
    }
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "ok": true, "study": def, "warnings": warnings })
            )?
        );
    } else {
        let objectives: Vec<String> = def
            .objectives
            .iter()
            .map(|o| format!("{} {:?}", o.metric, o.direction).to_lowercase())
            .collect();
        let conditional = match def.space.conditions().len() {
            0 => String::new(),
            n => format!(" ({n} conditional)"),
        };
        println!(
            "ok: {}: study '{}': {} parameter(s){conditional}, objectives [{}], {} constraint(s), strategy {}, {} trials ({} at once)",
            file.display(),
            def.name,
            def.space.dim(),
            objectives.join(", "),
            def.constraints.len(),
            def.strategy.kind,
            def.budget.max_trials,
            def.budget.parallel
        );
    }
    Ok(0)
}

/// What `validate` warns about without refusing the file: hardware requirements of choices that
/// no GPU of this machine meets (checked against the GPUs found here; a daemon elsewhere may
/// have others).
fn validate_warnings(def: &quantune::model::study::StudyDefinition) -> Vec<String> {
    if def.requires.is_empty() {
        return Vec::new();
    }
    if def.trial.executor != "local" {
        return vec![format!(
            "space.*.requires: trial.executor = \"{}\" runs trials on machines quantune cannot inspect, so hardware requirements are not checked there; the trial should report a choice it cannot run as infeasible",
            def.trial.executor
        )];
    }
    let found = quantune::daemon::serve::discover_gpus(true);
    quantune::gpu::hardware::unmet_warnings(&def.requires, def.trial.gpus, &found.devices)
}

/// The man page from the clap definitions: to stdout, or one file per (sub)command in `dir`.
/// Each subcommand's page ends with its examples; the top page with all of them.
fn man(dir: Option<&std::path::Path>) -> anyhow::Result<i32> {
    let cmd =
        quantune::client::cli::command().after_long_help(quantune::client::examples::all_text());
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            clap_mangen::generate_to(cmd, d)?;
            eprintln!("wrote man pages to {}", d.display());
        }
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?,
    }
    Ok(0)
}

fn gpus(format: Format) -> anyhow::Result<i32> {
    let d = quantune::gpu::discover();
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else if let Some(note) = &d.note {
        println!("no GPUs: {note}");
    } else {
        if let Some(v) = &d.driver_version {
            println!("CUDA driver {v}");
        }
        for g in &d.devices {
            println!(
                "gpu{}: {}, compute capability {}, {} total, {} free",
                g.index,
                g.name,
                g.compute_capability.as_deref().unwrap_or("?"),
                quantune::gpu::gib(g.memory_total),
                g.memory_free
                    .map_or_else(|| "?".to_string(), quantune::gpu::gib)
            );
        }
    }
    Ok(0)
}
