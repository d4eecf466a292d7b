//! "Did you mean …?" for names a user typed: the closest known name by edit distance, when it
//! is close enough to be a likely typo.

/// The known name closest to `typed` (Damerau–Levenshtein), when at most a third of its
/// characters (and at least one) differ; ties go to the first candidate.
pub fn closest<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (typed.chars().count() / 3).max(1);
    known
        .into_iter()
        .filter(|k| *k != typed)
        .map(|k| (strsim::damerau_levenshtein(typed, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// `" (did you mean K?)"` for the closest known name, else empty: appended to a message.
pub fn did_you_mean<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    closest(typed, known)
        .map(|k| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_close_names() {
        assert_eq!(closest("pythn3", ["python3", "perl"]), Some("python3"));
        assert_eq!(
            closest("eval_los", ["eval_loss", "loss"]),
            Some("eval_loss")
        );
        assert_eq!(closest("nope", ["eval_loss", "accuracy"]), None);
        assert_eq!(did_you_mean("los", ["loss"]), " (did you mean loss?)");
        assert_eq!(did_you_mean("xyz", ["loss"]), "");
    }
}
