//! Numbers for people: the one formatting rule every message, reason and table uses, so that a
//! prune reason, a constraint violation and a leaderboard cell show the same value the same way.

/// `v` with four significant digits, trailing zeros dropped (`0.002157`, `13.5`, `2801`), in
/// scientific notation outside [1e-3, 1e6) (`1.234e-5`, `1e-5`); `NaN`, `inf` and `-inf` as such.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if v == 0.0 || (1e-3..1e6).contains(&a) {
        let decimals = if v == 0.0 {
            0
        } else {
            (3 - a.log10().floor() as i32).max(0) as usize
        };
        let s = format!("{v:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        // -0.00001 rounds to "-0" at no decimals' precision; a zero has no sign here.
        if s == "-0" {
            "0".into()
        } else {
            s
        }
    } else {
        // 1.200e-5 → 1.2e-5
        let s = format!("{v:.3e}");
        match s.split_once('e') {
            Some((m, e)) if m.contains('.') => {
                format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
            }
            _ => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::num;

    #[test]
    fn four_significant_digits() {
        assert_eq!(num(0.000012345), "1.234e-5");
        assert_eq!(num(13.5), "13.5");
        assert_eq!(num(0.0021571), "0.002157");
        assert_eq!(num(2800.636), "2801");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(2.345678901234567), "2.346");
        assert_eq!(num(-1.0 / 3.0), "-0.3333");
        assert_eq!(num(12345678.0), "1.235e7");
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(1e-5), "1e-5");
        assert_eq!(num(-1.2e9), "-1.2e9");
    }
}
