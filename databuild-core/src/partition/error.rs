use thiserror::Error;

/// Why a string is not a valid [`PartitionRef`](super::PartitionRef).
///
/// Every variant quotes the offending input (truncated).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PartitionRefError {
    /// The ref is the empty string.
    #[error("partition ref is empty")]
    Empty,
    /// The ref is longer than [`PartitionRef::MAX_LEN`](super::PartitionRef::MAX_LEN) bytes.
    #[error("partition ref is {len} bytes long, more than the limit of {max}: {input}")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
        /// The limit.
        max: usize,
        /// The input, quoted and truncated.
        input: String,
    },
    /// The ref is not valid UTF-8.
    #[error("partition ref is not valid UTF-8: {input}")]
    NotUtf8 {
        /// The input, quoted lossily and truncated.
        input: String,
    },
    /// The ref holds a NUL or another control character.
    #[error("partition ref holds control character {character:?} at byte {offset}: {input}")]
    ControlCharacter {
        /// The control character.
        character: char,
        /// Its byte offset.
        offset: usize,
        /// The input, quoted and truncated.
        input: String,
    },
    /// The ref holds a `.` or `..` path segment.
    #[error("partition ref holds a {segment:?} path segment: {input}")]
    DotSegment {
        /// The segment, `.` or `..`.
        segment: String,
        /// The input, quoted and truncated.
        input: String,
    },
}

/// Why a string is not a valid [`PartitionPattern`](super::PartitionPattern).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The regular expression does not compile.
    #[error("invalid partition pattern {pattern}: {reason}")]
    InvalidRegex {
        /// The pattern, quoted.
        pattern: String,
        /// What the regex compiler said.
        reason: String,
    },
    /// A ref does not fit a pattern it was meant to fit.
    #[error("partition ref {partition} does not match pattern {pattern}")]
    NoMatch {
        /// The ref, quoted.
        partition: String,
        /// The pattern, quoted.
        pattern: String,
    },
    /// A capture a typed partition needs is not in the match.
    #[error("pattern {pattern} has no capture named {name:?}")]
    MissingCapture {
        /// The pattern, quoted.
        pattern: String,
        /// The capture name.
        name: String,
    },
}
