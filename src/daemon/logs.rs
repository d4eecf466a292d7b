//! Pieces of a trial attempt's stdout or stderr file for `GET …/trials/{n}/logs` (`quantune
//! logs`): at most [`MAX_PIECE`] bytes per reply from a byte offset, so a client reads a large
//! log (or follows a running attempt) in bounded replies, and the daemon's memory stays bounded
//! whatever the trial wrote.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The most bytes one reply carries.
pub const MAX_PIECE: u64 = 256 << 10;

/// Bytes per reply when the request names no `limit`.
pub const DEFAULT_PIECE: u64 = 64 << 10;

/// The fewest bytes a `limit` may ask for (one UTF-8 character always fits).
pub const MIN_PIECE: u64 = 16;

/// What [`read_piece`] read.
#[derive(Debug, PartialEq)]
pub struct Piece {
    /// Where `text` starts (the requested offset, or the file's size when that was past it).
    pub offset: u64,
    /// The bytes read, as UTF-8 text.
    pub text: String,
    /// Where the next piece starts.
    pub next_offset: u64,
    /// The file's size.
    pub size: u64,
    /// Whether the file exists.
    pub exists: bool,
}

/// Reads up to `limit` bytes of `path` from `offset`; a piece that ends inside a UTF-8
/// character ends before it instead (the next piece starts with it). A missing file reads as
/// empty.
pub fn read_piece(path: &Path, offset: u64, limit: u64) -> std::io::Result<Piece> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Piece {
                offset: 0,
                text: String::new(),
                next_offset: 0,
                size: 0,
                exists: false,
            })
        }
        Err(e) => return Err(e),
    };
    let size = f.metadata()?.len();
    let offset = offset.min(size);
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(limit.clamp(MIN_PIECE, MAX_PIECE))
        .read_to_end(&mut buf)?;
    if offset + (buf.len() as u64) < size {
        buf.truncate(complete_prefix(&buf));
    }
    Ok(Piece {
        offset,
        next_offset: offset + buf.len() as u64,
        text: String::from_utf8_lossy(&buf).into_owned(),
        size,
        exists: true,
    })
}

/// The length of `buf` without a UTF-8 character cut off at its end.
fn complete_prefix(buf: &[u8]) -> usize {
    let n = buf.len();
    for back in 1..=n.min(4) {
        let b = buf[n - back];
        if b & 0xC0 != 0x80 {
            let need = match b {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            return if back < need { n - back } else { n };
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_pieces_without_cutting_characters() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stderr.1.log");
        assert!(!read_piece(&p, 0, 100).unwrap().exists);
        let text = "é".repeat(20); // 40 bytes, two per character
        std::fs::write(&p, &text).unwrap();
        let a = read_piece(&p, 0, 17).unwrap();
        assert_eq!(
            (a.text.as_str(), a.next_offset, a.size),
            ("é".repeat(8).as_str(), 16, 40)
        );
        let mut got = a.text;
        let mut at = a.next_offset;
        while at < 40 {
            let b = read_piece(&p, at, 17).unwrap();
            got.push_str(&b.text);
            at = b.next_offset;
        }
        assert_eq!(got, text);
        let past = read_piece(&p, 1000, 17).unwrap();
        assert_eq!(
            (past.offset, past.next_offset, past.text.as_str()),
            (40, 40, "")
        );
    }
}
