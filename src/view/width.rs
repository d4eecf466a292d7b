//! How wide a line may be, and cutting a line to that width. The width is `$COLUMNS` when it is
//! set (also into a pipe, as `ls` does: a script or a test can ask for a width), else the
//! terminal's, else unknown.

use std::io::IsTerminal;

/// The width tables are fitted to when the output's width is unknown (a pipe, a file).
pub const DEFAULT: usize = 100;

/// The narrowest width honoured: a smaller `$COLUMNS` is taken as this.
const MIN: usize = 40;

/// `$COLUMNS` if it is a number, else the width of the terminal `stream` is, else `None`.
fn width_of(is_terminal: bool, size: impl FnOnce() -> Option<usize>) -> Option<usize> {
    let env = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0);
    env.or_else(|| if is_terminal { size() } else { None })
        .map(|w| w.max(MIN))
}

/// The width of standard output (see the module doc), `None` when unknown.
pub fn stdout() -> Option<usize> {
    width_of(std::io::stdout().is_terminal(), || {
        terminal_size::terminal_size_of(std::io::stdout()).map(|(w, _)| w.0 as usize)
    })
}

/// The width of standard error (see the module doc), `None` when unknown.
pub fn stderr() -> Option<usize> {
    width_of(std::io::stderr().is_terminal(), || {
        terminal_size::terminal_size_of(std::io::stderr()).map(|(w, _)| w.0 as usize)
    })
}

/// The length of an ANSI escape sequence (CSI `ESC [ … final`) starting at `chars[i]`, if one
/// does: it takes no room on the screen.
fn escape_len(chars: &[char], i: usize) -> Option<usize> {
    if chars[i] != '\u{1b}' || chars.get(i + 1) != Some(&'[') {
        return None;
    }
    let end = chars[i + 2..]
        .iter()
        .position(|c| ('@'..='~').contains(c))?;
    Some(end + 3)
}

/// How many columns `s` takes on a terminal: its characters, not counting colour codes.
pub fn visible_len(s: &str) -> usize {
    let chars: Vec<char> = s.chars().collect();
    let (mut i, mut n) = (0, 0);
    while i < chars.len() {
        match escape_len(&chars, i) {
            Some(l) => i += l,
            None => {
                n += 1;
                i += 1;
            }
        }
    }
    n
}

/// `s` cut to `width` columns, ending in `…` when something was cut, so that a terminal never
/// wraps it (mid-word or otherwise). Colour codes are kept and take no room; a cut inside a
/// coloured part resets the colour.
pub fn elide(s: &str, width: usize) -> String {
    if visible_len(s) <= width {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let (mut i, mut n, mut coloured) = (0, 0, false);
    while i < chars.len() && n + 1 < width {
        match escape_len(&chars, i) {
            Some(l) => {
                out.extend(&chars[i..i + l]);
                coloured = true;
                i += l;
            }
            None => {
                out.push(chars[i]);
                n += 1;
                i += 1;
            }
        }
    }
    let out = out.trim_end().to_string();
    if coloured {
        format!("{out}…\u{1b}[0m")
    } else {
        format!("{out}…")
    }
}

/// `s` (plain text) cut to `width` characters by leaving out its middle (`throu…tok_s`), so
/// that both its start and its end (often a unit) stay.
pub fn elide_middle(s: &str, width: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= width {
        return s.to_string();
    }
    let keep = width.saturating_sub(1);
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// A name such as a column header shortened to at most `width` characters: the words of a
/// `snake_case` name but the last cut to three letters, from the left, as far as needed
/// (`learning_rate` → `lea_rate`, `throughput_tok_s` → `thr_tok_s`), then the middle left out
/// ([`elide_middle`]) if that is not enough.
pub fn abbreviate(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut words: Vec<String> = s.split('_').map(String::from).collect();
    for i in 0..words.len().saturating_sub(1) {
        if words[i].chars().count() > 3 {
            words[i] = words[i].chars().take(3).collect();
        }
        let joined = words.join("_");
        if joined.chars().count() <= width {
            return joined;
        }
    }
    elide_middle(&words.join("_"), width)
}

/// Every line of `text` cut to `width` (see [`elide`]), or `text` as is when `width` is `None`.
pub fn elide_lines(text: &str, width: Option<usize>) -> String {
    let Some(w) = width else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        out.push_str(&elide(body, w));
        out.push_str(nl);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elide_cuts_to_the_width_with_an_ellipsis() {
        assert_eq!(elide("short", 10), "short");
        assert_eq!(elide("0123456789", 10), "0123456789");
        let cut = elide("learning_rate=0.0003 batch_size=16", 12);
        assert_eq!(cut, "learning_ra…");
        assert_eq!(visible_len(&cut), 12);
        let painted = "\u{1b}[32mcomplete\u{1b}[0m and more text";
        let cut = elide(painted, 10);
        assert_eq!(visible_len(&cut), 9, "{cut:?}");
        assert!(cut.starts_with("\u{1b}[32mcomplete") && cut.ends_with("…\u{1b}[0m"));
        assert_eq!(elide_lines("abcdef\nab\n", Some(4)), "abc…\nab\n");
        assert_eq!(elide_middle("throughput_tok_s", 10), "throu…ok_s");
        assert_eq!(elide_middle("latency_ms", 10), "latency_ms");
        assert_eq!(abbreviate("learning_rate", 9), "lea_rate");
        assert_eq!(abbreviate("throughput_tok_s", 9), "thr_tok_s");
        assert_eq!(abbreviate("latency_ms", 9), "lat_ms");
        assert_eq!(abbreviate("quantization", 9), "quan…tion");
        assert_eq!(abbreviate("eval_loss_delta", 9), "eva_…elta");
        assert_eq!(elide_lines("abcdef", None), "abcdef");
    }
}
