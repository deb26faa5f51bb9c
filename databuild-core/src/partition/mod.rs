//! Partitions: the atomic units of data a build produces.
//!
//! A [`PartitionRef`] names one partition with a validated, cheaply clonable
//! string. A [`PartitionPattern`] is an anchored regular expression with named
//! captures; each job declares the patterns of the partitions it produces.

mod error;
mod pattern;
mod reference;
pub mod typed;

pub use error::{PartitionRefError, PatternError};
pub use pattern::{PartitionPattern, PatternCaptures};
pub use reference::PartitionRef;
pub use typed::{Date, PartitionField, TypedPartition, TypedPartitionError};

/// Quotes untrusted input for an error message: at most `max` characters,
/// escaped with `{:?}`, with a note of how much was cut.
pub(crate) fn quote(input: &str, max: usize) -> String {
    let mut chars = input.char_indices();
    match chars.nth(max) {
        None => format!("{input:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes in all)", &input[..cut], input.len()),
    }
}

/// Quotes untrusted bytes (possibly not UTF-8) for an error message.
pub(crate) fn quote_bytes(input: &[u8], max: usize) -> String {
    let end = input.len().min(max.saturating_mul(4));
    let text = String::from_utf8_lossy(&input[..end]);
    let quoted = quote(&text, max);
    if end < input.len() && !quoted.contains("bytes in all") {
        format!("{quoted}... ({} bytes in all)", input.len())
    } else {
        quoted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_truncates_and_escapes() {
        assert_eq!(quote("abc", 10), "\"abc\"");
        assert_eq!(quote("a\nbc", 2), "\"a\\n\"... (4 bytes in all)");
        let long = "x".repeat(1000);
        assert!(quote(&long, 16).ends_with("(1000 bytes in all)"));
    }

    #[test]
    fn quote_bytes_handles_invalid_utf8() {
        let q = quote_bytes(&[0x66, 0xff, 0x00], 10);
        assert!(q.contains('\u{fffd}'), "{q}");
        assert!(q.contains("\\0"), "{q}");
    }
}
