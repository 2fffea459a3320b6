//! Names that become file and folder names: made safe, and kept distinct by a hash.

use sha2::{Digest, Sha256};

/// Longest run folder name; longer names are cut and end in a hash of the full name.
pub const MAX_NAME: usize = 120;

/// A safe folder name: only `A-Z a-z 0-9 . _ , = + - @` (others become `_`), no `..`, no
/// leading `.` or `-`, at most [`MAX_NAME`] bytes (longer names keep their start and end in
/// `-` and 10 hex digits of the full name's SHA-256, so distinct names stay distinct).
/// Letters outside ASCII are transliterated first (`Lernraten-Studie_äöü` →
/// `Lernraten-Studie_aou`, `学习率` → `Xue_Xi_Lu`), so the folder keeps a readable name.
pub fn sanitize(raw: &str) -> String {
    let ascii = if raw.is_ascii() {
        std::borrow::Cow::Borrowed(raw)
    } else {
        std::borrow::Cow::Owned(deunicode::deunicode(raw))
    };
    let mut s: String = ascii
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._,=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    while s.contains("..") {
        s = s.replace("..", "._");
    }
    if s.starts_with('.') || s.starts_with('-') {
        s.replace_range(0..1, "_");
    }
    if s.is_empty() {
        s.push('_');
    }
    if s.len() > MAX_NAME {
        let hash = hex_sha256(raw.as_bytes());
        s.truncate(MAX_NAME - 11);
        s.push('-');
        s.push_str(&hash[..10]);
    }
    s
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
