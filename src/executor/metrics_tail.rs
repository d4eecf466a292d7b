//! Following a trial's metrics file while it runs: new complete lines are parsed and their
//! intermediate reports sent to the scheduler (used by every executor that starts a command).

use super::protocol::{self, MetricsLine};
use super::{ExecEvent, Launch};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// Reads new complete lines of the metrics file and forwards intermediate reports.
pub struct MetricsTail {
    /// The file.
    path: std::path::PathBuf,
    /// Bytes already read.
    offset: u64,
    /// The start of a line not yet complete.
    partial: Vec<u8>,
}

impl MetricsTail {
    /// Follows `path` from its start.
    pub fn new(path: std::path::PathBuf) -> MetricsTail {
        MetricsTail {
            path,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// Reads what was appended since the last call and sends its intermediate reports.
    pub async fn poll(&mut self, launch: &Launch, events: &mpsc::UnboundedSender<ExecEvent>) {
        let Ok(mut f) = tokio::fs::File::open(&self.path).await else {
            return;
        };
        if f.seek(std::io::SeekFrom::Start(self.offset)).await.is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).await.is_err() {
            return;
        }
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        while let Some(nl) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            if let Ok(MetricsLine::Report { step, values }) =
                protocol::parse_line(String::from_utf8_lossy(&line).trim())
            {
                let _ = events.send(ExecEvent::Report {
                    study: launch.study.clone(),
                    trial: launch.trial,
                    attempt: launch.attempt,
                    step,
                    values,
                });
            }
        }
    }
}
