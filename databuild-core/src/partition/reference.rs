use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{PartitionRefError, quote, quote_bytes};
use crate::proto;

/// The name of one partition, such as `reviews/date=2024-01-03` or
/// `s3://bucket/clicks/region=4/date=2024-01-03`.
///
/// A ref is opaque to the library except for validation: it is non-empty, at
/// most [`PartitionRef::MAX_LEN`] bytes, valid UTF-8, free of NUL and other
/// control characters, and has no `.` or `..` path segment (so a ref can never
/// walk out of a directory named after it). Cloning is a reference-count
/// increment.
///
/// ```
/// use databuild_core::PartitionRef;
///
/// let r = PartitionRef::new("reviews/date=2024-01-03")?;
/// assert_eq!(r.as_str(), "reviews/date=2024-01-03");
/// assert!(PartitionRef::new("a/../b").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct PartitionRef(Arc<str>);

impl std::hash::Hash for PartitionRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Consistent with `eq`: equal refs have equal bytes.
        self.0.hash(state);
    }
}

impl PartialEq for PartitionRef {
    fn eq(&self, other: &Self) -> bool {
        // Refs are often shared clones (the planner interns them): compare
        // pointers before bytes.
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

/// How many characters of bad input an error quotes.
const QUOTE: usize = 120;

impl PartitionRef {
    /// Longest accepted ref, in bytes.
    pub const MAX_LEN: usize = 4096;

    /// Validates `s` and makes a ref of it.
    pub fn new(s: impl AsRef<str>) -> Result<Self, PartitionRefError> {
        let s = s.as_ref();
        Self::validate(s)?;
        Ok(Self(Arc::from(s)))
    }

    /// Validates a `String` and makes a ref of it.
    pub fn from_string(s: String) -> Result<Self, PartitionRefError> {
        Self::validate(&s)?;
        Ok(Self(Arc::from(s)))
    }

    /// Formats, validates and makes a ref in one allocation:
    /// `PartitionRef::from_fmt(format_args!("daily/date={date}"))`. Cheaper
    /// than `PartitionRef::new(format!(..))`, which allocates twice.
    pub fn from_fmt(args: std::fmt::Arguments<'_>) -> Result<Self, PartitionRefError> {
        use std::fmt::Write;
        thread_local! {
            static BUFFER: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        if let Some(s) = args.as_str() {
            return Self::new(s);
        }
        BUFFER.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buffer) => {
                buffer.clear();
                // Writing to a String cannot fail, but a Display impl may.
                if buffer.write_fmt(args).is_err() {
                    return Err(PartitionRefError::Empty);
                }
                let made = Self::new(buffer.as_str());
                if buffer.capacity() > Self::MAX_LEN * 4 {
                    *buffer = String::new();
                }
                made
            }
            // Re-entered from inside a Display impl: take the slow path.
            Err(_) => Self::from_string(std::fmt::format(args)),
        })
    }

    /// Validates raw bytes (for example a line of job output) and makes a ref.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PartitionRefError> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Self::new(s),
            Err(_) => Err(PartitionRefError::NotUtf8 {
                input: quote_bytes(bytes, QUOTE),
            }),
        }
    }

    /// Checks that `s` would be a valid ref.
    pub fn validate(s: &str) -> Result<(), PartitionRefError> {
        if s.is_empty() {
            return Err(PartitionRefError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(PartitionRefError::TooLong {
                len: s.len(),
                max: Self::MAX_LEN,
                input: quote(s, QUOTE),
            });
        }
        // Fast path: printable ASCII without dot segments is the common case.
        let bytes = s.as_bytes();
        if bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
            if bytes.contains(&b'.') {
                Self::check_segments(s)?;
            }
            return Ok(());
        }
        if let Some((offset, character)) = s.char_indices().find(|(_, c)| c.is_control()) {
            return Err(PartitionRefError::ControlCharacter {
                character,
                offset,
                input: quote(s, QUOTE),
            });
        }
        Self::check_segments(s)
    }

    fn check_segments(s: &str) -> Result<(), PartitionRefError> {
        match s.split('/').find(|seg| *seg == "." || *seg == "..") {
            Some(segment) => Err(PartitionRefError::DotSegment {
                segment: segment.to_owned(),
                input: quote(s, QUOTE),
            }),
            None => Ok(()),
        }
    }

    /// The ref as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The proto form of the ref.
    pub fn to_proto(&self) -> proto::PartitionRef {
        proto::PartitionRef {
            str: self.0.to_string(),
        }
    }
}

impl TryFrom<&proto::PartitionRef> for PartitionRef {
    type Error = PartitionRefError;
    fn try_from(value: &proto::PartitionRef) -> Result<Self, Self::Error> {
        Self::new(&value.str)
    }
}

impl From<&PartitionRef> for proto::PartitionRef {
    fn from(value: &PartitionRef) -> Self {
        value.to_proto()
    }
}

impl TryFrom<&str> for PartitionRef {
    type Error = PartitionRefError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for PartitionRef {
    type Error = PartitionRefError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::from_string(value)
    }
}

impl std::str::FromStr for PartitionRef {
    type Err = PartitionRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for PartitionRef {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for PartitionRef {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartitionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PartitionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartitionRef({:?})", &*self.0)
    }
}

impl Serialize for PartitionRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PartitionRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        PartitionRef::new(&*s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_refs() {
        for ok in [
            "reviews/date=2024-01-03",
            "s3://bucket/clicks/region=4/date=2024-01-03",
            "données/jour=lundi",
            "a.b/c..d/.hidden/x.",
        ] {
            assert_eq!(PartitionRef::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(PartitionRef::new(""), Err(PartitionRefError::Empty));
    }

    #[test]
    fn rejects_too_long_and_quotes_a_prefix() {
        let long = "a".repeat(PartitionRef::MAX_LEN + 1);
        let err = PartitionRef::new(&long).unwrap_err();
        assert!(matches!(err, PartitionRefError::TooLong { len: 4097, .. }));
        let msg = err.to_string();
        assert!(msg.contains("4097 bytes"), "{msg}");
        assert!(msg.len() < 400, "error message is bounded: {msg}");
        assert!(PartitionRef::new("a".repeat(PartitionRef::MAX_LEN)).is_ok());
    }

    #[test]
    fn rejects_nul_and_control_characters() {
        for (bad, c, offset) in [
            ("a\0b", '\0', 1),
            ("a\nb", '\n', 1),
            ("\tx", '\t', 0),
            ("x\u{7f}", '\u{7f}', 1),
            ("é\u{85}", '\u{85}', 2),
        ] {
            let err = PartitionRef::new(bad).unwrap_err();
            assert_eq!(
                err,
                PartitionRefError::ControlCharacter {
                    character: c,
                    offset,
                    input: quote(bad, QUOTE)
                }
            );
        }
    }

    #[test]
    fn rejects_dot_segments() {
        for bad in ["..", ".", "a/../b", "a/./b", "../etc/passwd", "a/.."] {
            let err = PartitionRef::new(bad).unwrap_err();
            assert!(
                matches!(err, PartitionRefError::DotSegment { .. }),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn rejects_invalid_utf8() {
        let err = PartitionRef::from_bytes(b"abc\xff").unwrap_err();
        assert!(matches!(err, PartitionRefError::NotUtf8 { .. }));
        assert!(err.to_string().contains("abc"));
    }

    #[test]
    fn serde_round_trip_validates() {
        let r = PartitionRef::new("x/y=1").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"x/y=1\"");
        assert_eq!(serde_json::from_str::<PartitionRef>(&json).unwrap(), r);
        assert!(serde_json::from_str::<PartitionRef>("\"a/../b\"").is_err());
    }

    #[test]
    fn from_fmt_formats_and_validates() {
        let date = "2024-01-03";
        let r = PartitionRef::from_fmt(format_args!("daily/date={date}")).unwrap();
        assert_eq!(r.as_str(), "daily/date=2024-01-03");
        assert_eq!(r, PartitionRef::new("daily/date=2024-01-03").unwrap());
        assert_eq!(
            PartitionRef::from_fmt(format_args!("plain"))
                .unwrap()
                .as_str(),
            "plain"
        );
        let bad = "..";
        assert!(matches!(
            PartitionRef::from_fmt(format_args!("a/{bad}/b")),
            Err(PartitionRefError::DotSegment { .. })
        ));
        assert_eq!(
            PartitionRef::from_fmt(format_args!("{}", "")),
            Err(PartitionRefError::Empty)
        );
    }

    #[test]
    fn equality_by_content_and_by_pointer() {
        let a = PartitionRef::new("x/1").unwrap();
        assert_eq!(a, a.clone());
        assert_eq!(a, PartitionRef::new("x/1").unwrap());
        assert_ne!(a, PartitionRef::new("x/2").unwrap());
    }

    #[test]
    fn clone_shares_storage() {
        let a = PartitionRef::new("x").unwrap();
        let b = a.clone();
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }
}
