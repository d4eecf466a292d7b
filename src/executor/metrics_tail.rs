//! Following a trial's metrics file while it runs: new complete lines are parsed and their
//! intermediate reports sent to the scheduler (used by every executor that starts a command).
//! What the file said at the end (its final line, an infeasibility, its first malformed line)
//! is kept as it goes, so nothing reads the whole file at once.
//!
//! Everything a trial writes is bounded here: a line longer than
//! [`protocol::MAX_METRICS_LINE`], a file larger than [`protocol::MAX_METRICS_FILE`] and a
//! path that is not a regular file (a FIFO, a device, a directory) are refused with an error
//! that fails the trial; memory stays under two lines' worth whatever the trial does.

use super::protocol::{self, MetricsFile, MetricsLine};
use super::{ExecEvent, Launch};
use std::io::{Read, Seek};
use std::os::unix::fs::OpenOptionsExt;
use tokio::sync::mpsc;

/// How much one poll reads at most (the rest waits for the next poll).
const POLL_BUDGET: u64 = 16 << 20;

/// Reads new complete lines of the metrics file and forwards intermediate reports.
pub struct MetricsTail {
    /// The file.
    path: std::path::PathBuf,
    /// Bytes already read.
    offset: u64,
    /// The start of a line not yet complete (at most [`protocol::MAX_METRICS_LINE`]).
    partial: Vec<u8>,
    /// Lines seen so far (for the line number in an error).
    lines: u64,
    /// What the file has said so far (`reports` stays empty: they are sent, not kept).
    summary: MetricsFile,
    /// The first malformed line, as the error naming it.
    bad_line: Option<String>,
    /// A limit the file broke: it is no longer read, and the trial fails with this.
    refused: Option<String>,
}

impl MetricsTail {
    /// Follows `path` from its start.
    pub fn new(path: std::path::PathBuf) -> MetricsTail {
        MetricsTail {
            path,
            offset: 0,
            partial: Vec::new(),
            lines: 0,
            summary: MetricsFile::default(),
            bad_line: None,
            refused: None,
        }
    }

    /// Reads what was appended since the last call and sends its intermediate reports. An
    /// error (the file broke a limit, or is not a regular file) means the trial must stop; it
    /// is returned again by every later call.
    pub async fn poll(
        &mut self,
        launch: &Launch,
        events: &mpsc::UnboundedSender<ExecEvent>,
    ) -> Result<(), String> {
        if let Some(e) = &self.refused {
            return Err(e.clone());
        }
        let mut lines = Vec::new();
        let read = self.read_new(&mut lines);
        for line in lines {
            self.line(&line, launch, events);
        }
        if let Err(e) = read {
            self.refused = Some(e.clone());
            return Err(e);
        }
        Ok(())
    }

    /// Reads what is left (an unterminated last line counts as a line) and returns what the
    /// whole file said, or the limit it broke.
    pub async fn finish(
        &mut self,
        launch: &Launch,
        events: &mpsc::UnboundedSender<ExecEvent>,
    ) -> Result<MetricsFile, String> {
        self.poll(launch, events).await?;
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.line(&last, launch, events);
        }
        match &self.bad_line {
            Some(e) => Err(e.clone()),
            None => Ok(self.summary.clone()),
        }
    }

    /// Reads new bytes into complete lines (pushed to `out`), keeping the unterminated rest.
    fn read_new(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        // Non-blocking: opening a FIFO for reading must not wait for a writer.
        let mut f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)
        {
            Ok(f) => f,
            // Not there (yet, or removed by the trial): nothing new.
            Err(_) => return Ok(()),
        };
        let meta = f
            .metadata()
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        if !meta.is_file() {
            return Err(format!(
                "$QUANTUNE_METRICS_FILE ({}) is {}, not a regular file; the trial must write its metrics lines to that file",
                self.path.display(),
                kind_of(&meta)
            ));
        }
        if meta.len() > protocol::MAX_METRICS_FILE {
            return Err(format!(
                "the metrics file {} grew to {} bytes, over the limit of {} MiB; report less often (every few hundred steps is plenty)",
                self.path.display(),
                meta.len(),
                protocol::MAX_METRICS_FILE >> 20
            ));
        }
        if meta.len() <= self.offset {
            return Ok(());
        }
        f.seek(std::io::SeekFrom::Start(self.offset))
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let want = (meta.len() - self.offset).min(POLL_BUDGET);
        let mut reader = f.take(want);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
            };
            self.offset += n as u64;
            let mut chunk = &buf[..n];
            while let Some(nl) = chunk.iter().position(|b| *b == b'\n') {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&chunk[..nl]);
                chunk = &chunk[nl + 1..];
                self.check_length(line.len())?;
                out.push(line);
            }
            self.check_length(self.partial.len() + chunk.len())?;
            self.partial.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Refuses a line of `len` bytes when over the limit.
    fn check_length(&self, len: usize) -> Result<(), String> {
        if len > protocol::MAX_METRICS_LINE {
            return Err(format!(
                "metrics file {} line {} is longer than {} KiB ({len}+ bytes without a newline); write one short JSON object per line",
                self.path.display(),
                self.lines + 1,
                protocol::MAX_METRICS_LINE >> 10
            ));
        }
        Ok(())
    }

    /// Handles one complete line.
    fn line(&mut self, line: &[u8], launch: &Launch, events: &mpsc::UnboundedSender<ExecEvent>) {
        self.lines += 1;
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        match protocol::parse_line(text) {
            Ok(MetricsLine::Report { step, values }) => {
                let _ = events.send(ExecEvent::Report {
                    study: launch.study.clone(),
                    trial: launch.trial,
                    attempt: launch.attempt,
                    step,
                    values,
                });
            }
            Ok(MetricsLine::Final { metrics, info }) => {
                self.summary.last_final = Some((metrics, info));
            }
            Ok(MetricsLine::Infeasible(r)) => self.summary.infeasible = Some(r),
            Err(e) => {
                if self.bad_line.is_none() {
                    self.bad_line = Some(format!("metrics file line {}: {e}", self.lines));
                }
            }
        }
    }
}

/// What kind of file `meta` describes, in words.
pub fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn launch(dir: &std::path::Path) -> Launch {
        let src =
            "[study]\nname = \"t\"\n[[objective]]\nmetric = \"loss\"\ndirection = \"minimize\"\n\
                   [space.x]\ntype = \"float\"\nlow = 0.0\nhigh = 1.0\n[budget]\nmax_trials = 1\n\
                   [trial]\ncommand = [\"true\"]\n";
        let def = crate::model::study::parse(src, "t.toml", dir, None).unwrap();
        Launch {
            study: "t".into(),
            trial: 0,
            attempt: 1,
            params: Default::default(),
            spec: std::sync::Arc::new(def.trial),
            slot: crate::gpu::slots::Slot::detached("cpu0"),
            run_dir: dir.to_path_buf(),
        }
    }

    #[tokio::test]
    async fn follows_lines_and_keeps_the_last_final_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        let l = launch(dir.path());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut tail = MetricsTail::new(path.clone());
        write!(f, "{{\"step\": 1, \"loss\": 2}}\n{{\"loss\"").unwrap();
        tail.poll(&l, &tx).await.unwrap();
        assert!(matches!(
            rx.try_recv(),
            Ok(ExecEvent::Report { step: 1, .. })
        ));
        write!(f, ": 1.5}}\n\n{{\"loss\": 1.25}}").unwrap();
        let done = tail.finish(&l, &tx).await.unwrap();
        assert_eq!(done.last_final.unwrap().0["loss"], 1.25);
    }

    #[tokio::test]
    async fn refuses_long_lines_big_files_and_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let l = launch(dir.path());
        let (tx, _rx) = mpsc::unbounded_channel();
        let long = dir.path().join("long.jsonl");
        std::fs::write(&long, vec![b'a'; protocol::MAX_METRICS_LINE + 10]).unwrap();
        let e = MetricsTail::new(long).poll(&l, &tx).await.unwrap_err();
        assert!(e.contains("line 1 is longer than"), "{e}");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = MetricsTail::new(fifo).poll(&l, &tx).await.unwrap_err();
        assert!(e.contains("is a FIFO, not a regular file"), "{e}");
        let big = dir.path().join("big.jsonl");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(protocol::MAX_METRICS_FILE + 1).unwrap();
        let e = MetricsTail::new(big).poll(&l, &tx).await.unwrap_err();
        assert!(e.contains("over the limit"), "{e}");
    }
}
