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

/// A duration as a study file writes it: text with a unit (`"90s"`). A bare number is refused
/// with a message that says so and shows the text to write instead, as [`parse_duration`] does
/// for text it cannot read (serde's own "invalid type: integer, expected a string" does not).
#[derive(Debug, Clone, PartialEq)]
pub struct DurationText(pub String);

impl<'de> serde::Deserialize<'de> for DurationText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl Visitor {
            fn no_unit<E: serde::de::Error>(v: impl std::fmt::Display) -> E {
                E::custom(format!(
                    "{v} has no unit: a duration is text with one, e.g. \"{v}s\", \"30m\" or \"1h\""
                ))
            }
        }
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DurationText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"90s\", \"30m\" or \"1h\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DurationText, E> {
                Err(Visitor::no_unit(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DurationText, E> {
                Err(Visitor::no_unit(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<DurationText, E> {
                Err(Visitor::no_unit(v))
            }
        }
        d.deserialize_any(Visitor)
    }
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
    fn a_bare_number_says_which_unit_to_add() {
        #[derive(serde::Deserialize)]
        struct T {
            #[allow(dead_code)]
            timeout: DurationText,
        }
        let err = toml::from_str::<T>("timeout = 60")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("60 has no unit") && err.contains("\"60s\""),
            "{err}"
        );
        let ok: T = toml::from_str("timeout = \"60s\"").unwrap();
        assert_eq!(ok.timeout, DurationText("60s".into()));
    }

    #[test]
    fn formats() {
        assert_eq!(format_secs(0.42), "0.4s");
        assert_eq!(format_secs(185.0), "3m05s");
        assert_eq!(format_secs(7800.0), "2h10m");
    }
}
