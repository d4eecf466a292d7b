//! `quantune logs STUDY N`: a trial attempt's stdout and stderr, read from the daemon in
//! bounded pieces (`GET …/trials/{n}/logs?offset=…`); `--follow` polls on from where each
//! stream stopped while the attempt runs.

use crate::client::cli::LogStreams;
use crate::client::http::Client;
use crate::model::wire::LogStream;
use anyhow::Result;
use std::io::Write;
use std::time::Duration;

/// How often `--follow` asks for more.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

/// `quantune logs`: the trial's stdout to stdout and its stderr to stderr (or one of them).
pub async fn logs(
    client: &Client,
    study: &str,
    trial: u64,
    attempt: Option<u32>,
    streams: LogStreams,
    follow: bool,
) -> Result<()> {
    let streams = match streams {
        LogStreams::Both => vec![LogStream::Stdout, LogStream::Stderr],
        LogStreams::Stdout => vec![LogStream::Stdout],
        LogStreams::Stderr => vec![LogStream::Stderr],
    };
    let mut offsets = vec![0u64; streams.len()];
    // The attempt of the first reply is kept, so that a retry starting meanwhile does not mix
    // two attempts' output.
    let mut attempt = attempt;
    let stop = crate::signal::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let (mut running, mut exists) = (false, false);
        for (stream, offset) in streams.iter().zip(offsets.iter_mut()) {
            loop {
                let piece = client
                    .trial_log(study, trial, attempt, *stream, *offset)
                    .await?;
                attempt.get_or_insert(piece.attempt);
                match stream {
                    LogStream::Stdout => write_flushed(&mut std::io::stdout(), &piece.text)?,
                    LogStream::Stderr => write_flushed(&mut std::io::stderr(), &piece.text)?,
                }
                *offset = piece.next_offset;
                running |= piece.running;
                exists |= piece.exists;
                if piece.next_offset >= piece.size || piece.text.is_empty() {
                    break;
                }
            }
        }
        if !(follow && running) {
            if !exists {
                let why = if running {
                    "no output yet: it has not started (--follow waits for it)"
                } else {
                    "no output files: it never started"
                };
                eprintln!(
                    "trial {trial} of '{study}' (attempt {}) has {why}",
                    attempt.unwrap_or(1)
                );
            }
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            _ = &mut stop => return Ok(()),
        }
    }
}

/// Writes `text` and flushes, so that a followed log appears as it comes.
fn write_flushed(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}
