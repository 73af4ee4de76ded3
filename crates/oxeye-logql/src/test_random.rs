//! A deterministic xorshift64 generator for the randomised tests that compare a fast scanner with its
//! reference on generated lines.

/// The next-number function of an xorshift64 sequence (shifts 13, 7, 17) from `seed` (not zero).
pub(crate) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// The logfmt syntax the randomised logfmt tests draw lines from besides their keys and values: `=` and
/// spaces three times as often as the rest, quotes twice, a tab and a backslash.
pub(crate) const LOGFMT_SYNTAX: [&str; 10] = ["=", "=", "=", " ", " ", " ", "\t", "\"", "\"", "\\"];
