//! "Did you mean ...?" for misspelt keys: the closest valid name by edit distance.

/// The candidate closest to `word` (optimal-string-alignment distance, so a swap of two
/// letters counts once), if it is close enough to be a likely misspelling: at most one edit
/// for words of up to 4 characters, otherwise up to a third of the word's length. Ties go to
/// the first candidate.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    // Spelt without separators or case (`onecycle`, `OneCycle` for `one_cycle`): the same
    // word; one the other's prefix of 4 letters or more (`optimizer` for `optim`): one edit.
    let bare = |x: &str| -> String {
        x.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let w = bare(word);
    for c in candidates {
        let b = bare(c);
        let d = if b == w {
            0
        } else if b.len().min(w.len()) >= 4 && (b.starts_with(&w) || w.starts_with(&b)) {
            1
        } else {
            strsim::osa_distance(word, c)
        };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// `; did you mean NAME?` for the closest candidate, or an empty string.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match closest(word, candidates) {
        Some(c) => format!("; did you mean {c}?"),
        None => String::new(),
    }
}

/// The rule of an unknown-key message: `unknown key{what}; did you mean X? (known keys: a,
/// b, ...)`, the valid keys sorted and each named once. `what` qualifies the key, e.g.
/// ` for kind = "cosine"`, or is empty.
pub fn unknown_key_rule<'a>(
    key: &str,
    what: &str,
    valid: impl IntoIterator<Item = &'a str>,
) -> String {
    let mut valid: Vec<&str> = valid.into_iter().collect();
    valid.sort_unstable();
    valid.dedup();
    let hint = did_you_mean(key, valid.iter().copied());
    format!("unknown key{what}{hint} (known keys: {})", valid.join(", "))
}

/// A serde message in the user's terms: Rust's integer types become what they accept
/// (`expected u64` → `expected a whole number >= 0`).
pub fn plain_types(msg: &str) -> String {
    let mut out = msg.to_string();
    for (rust, words) in [
        ("expected u64", "expected a whole number >= 0"),
        ("expected usize", "expected a whole number >= 0"),
        ("expected u32", "expected a whole number >= 0"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
    ] {
        out = out.replace(rust, words);
    }
    out
}

/// The unknown field and the expected ones of serde's `deny_unknown_fields` message
/// ("unknown field `x`, expected one of `a`, `b`" / "expected `a` or `b`" / "there are no
/// fields"), or `None` for another message.
pub fn serde_unknown_field(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.trim().strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((field.to_string(), expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        let keys = ["lr_max", "lr_min", "epochs", "steps"];
        assert_eq!(closest("lr_maxx", keys), Some("lr_max"));
        assert_eq!(closest("lr_mni", keys), Some("lr_min"));
        assert_eq!(closest("epoch", keys), Some("epochs"));
        assert_eq!(closest("momentum", keys), None);
        assert_eq!(closest("x", keys), None);
        assert_eq!(did_you_mean("step", keys), "; did you mean steps?");
        assert_eq!(did_you_mean("batch", keys), "");
    }

    #[test]
    fn serde_messages_are_read() {
        let (f, e) =
            serde_unknown_field("unknown field `epoch`, expected one of `epochs`, `steps`, `seed`")
                .unwrap();
        assert_eq!(f, "epoch");
        assert_eq!(e, ["epochs", "steps", "seed"]);
        let (f, e) = serde_unknown_field("unknown field `b`, expected `a` or `c`").unwrap();
        assert_eq!(f, "b");
        assert_eq!(e, ["a", "c"]);
        let (f, e) = serde_unknown_field("unknown field `b`, there are no fields").unwrap();
        assert_eq!(f, "b");
        assert!(e.is_empty());
        assert!(serde_unknown_field("invalid type: string, expected u64").is_none());
    }
}
