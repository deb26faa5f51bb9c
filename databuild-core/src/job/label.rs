use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::partition::quote;
use crate::proto;

/// The stable name of a job, for example `//reviews:daily_summary`.
///
/// Non-empty, at most [`JobLabel::MAX_LEN`] bytes, no control characters.
/// Cloning is a reference-count increment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobLabel(Arc<str>);

/// Why a string is not a valid [`JobLabel`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid job label {label}: {reason}")]
pub struct JobLabelError {
    /// The label, quoted and truncated.
    pub label: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl JobLabel {
    /// Longest accepted label, in bytes.
    pub const MAX_LEN: usize = 256;

    /// Validates `s` and makes a label of it.
    pub fn new(s: impl AsRef<str>) -> Result<Self, JobLabelError> {
        let s = s.as_ref();
        let reason = if s.is_empty() {
            Some("empty")
        } else if s.len() > Self::MAX_LEN {
            Some("longer than 256 bytes")
        } else if s.chars().any(char::is_control) {
            Some("holds a control character")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(JobLabelError {
                label: quote(s, 80),
                reason,
            }),
            None => Ok(Self(Arc::from(s))),
        }
    }

    /// The label as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The proto form of the label.
    pub fn to_proto(&self) -> proto::JobLabel {
        proto::JobLabel {
            label: self.0.to_string(),
        }
    }
}

impl fmt::Display for JobLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for JobLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobLabel({:?})", &*self.0)
    }
}

impl AsRef<str> for JobLabel {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for JobLabel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for JobLabel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        JobLabel::new(&*s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(JobLabel::new("//a:b").is_ok());
        assert!(JobLabel::new("").is_err());
        assert!(JobLabel::new("a\0").is_err());
        assert!(JobLabel::new("x".repeat(257)).is_err());
        let err = JobLabel::new("bad\nlabel").unwrap_err();
        assert!(err.to_string().contains("bad\\nlabel"), "{err}");
    }
}
