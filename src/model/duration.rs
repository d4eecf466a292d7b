//! Human durations in study files and configs (`"90s"`, `"30m"`, `"2h"`, `"1h 30m"`).

/// Parses a duration into seconds; the error says what is allowed.
pub fn parse_duration(text: &str) -> Result<f64, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "\"{text}\" is not a duration ({e}); write e.g. \"90s\", \"30m\", \"2h\" or \"1h 30m\""
        )
    })?;
    if d.is_zero() {
        return Err(format!("\"{text}\" must be longer than zero"));
    }
    Ok(d.as_secs_f64())
}

/// Formats seconds compactly for tables: `0.4s`, `12s`, `3m05s`, `2h10m`.
pub fn format_secs(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    if secs < 10.0 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("90s").unwrap(), 90.0);
        assert_eq!(parse_duration("2h").unwrap(), 7200.0);
        assert_eq!(parse_duration("1h 30m").unwrap(), 5400.0);
        assert!(parse_duration("soon").unwrap_err().contains("\"90s\""));
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_secs(0.42), "0.4s");
        assert_eq!(format_secs(185.0), "3m05s");
        assert_eq!(format_secs(7800.0), "2h10m");
    }
}
