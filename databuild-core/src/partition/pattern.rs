use std::fmt;
use std::sync::Arc;

use regex::Regex;

use super::{PartitionRef, PatternError, quote};

/// An anchored regular expression with named captures that describes the refs
/// a job produces, for example `reviews/date=(?P<date>\d{4}-\d{2}-\d{2})`.
///
/// The pattern always matches a whole ref: it is compiled as `^(?:...)$`.
///
/// ```
/// use databuild_core::{PartitionPattern, PartitionRef};
///
/// let p = PartitionPattern::new(r"reviews/date=(?P<date>\d{4}-\d{2}-\d{2})")?;
/// let r = PartitionRef::new("reviews/date=2024-01-03")?;
/// assert_eq!(p.captures(&r).unwrap().get("date"), Some("2024-01-03"));
/// assert!(!p.is_match(&PartitionRef::new("reviews/date=2024-01-03/extra")?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct PartitionPattern {
    source: Arc<str>,
    regex: Regex,
}

impl PartitionPattern {
    /// Compiles `pattern`, anchored at both ends.
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        let regex =
            Regex::new(&Self::anchored(pattern)).map_err(|e| PatternError::InvalidRegex {
                pattern: quote(pattern, 200),
                reason: e.to_string(),
            })?;
        Ok(Self {
            source: Arc::from(pattern),
            regex,
        })
    }

    /// The pattern with its anchors, as it is compiled.
    pub(crate) fn anchored(pattern: &str) -> String {
        format!("^(?:{pattern})$")
    }

    /// The pattern as written, without the added anchors.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the whole of `partition` matches.
    pub fn is_match(&self, partition: &PartitionRef) -> bool {
        self.regex.is_match(partition.as_str())
    }

    /// The named captures of `partition`, or `None` when it does not match.
    pub fn captures(&self, partition: &PartitionRef) -> Option<PatternCaptures> {
        let caps = self.regex.captures(partition.as_str())?;
        let values = self
            .regex
            .capture_names()
            .enumerate()
            .filter_map(|(i, name)| {
                let name = name?;
                let m = caps.get(i)?;
                Some((Arc::<str>::from(name), m.as_str().to_owned()))
            })
            .collect();
        Some(PatternCaptures { values })
    }

    /// Like [`captures`](Self::captures), but a ref that does not match is a
    /// typed error naming the ref and the pattern.
    pub fn parse(&self, partition: &PartitionRef) -> Result<PatternCaptures, PatternError> {
        self.captures(partition)
            .ok_or_else(|| PatternError::NoMatch {
                partition: quote(partition.as_str(), 200),
                pattern: quote(&self.source, 200),
            })
    }

    /// The names of the pattern's named capture groups, in order.
    pub fn capture_names(&self) -> impl Iterator<Item = &str> {
        self.regex.capture_names().flatten()
    }
}

impl fmt::Debug for PartitionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartitionPattern({:?})", &*self.source)
    }
}

impl fmt::Display for PartitionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for PartitionPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for PartitionPattern {}

/// The named captures of one ref matched by a [`PartitionPattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternCaptures {
    values: Vec<(Arc<str>, String)>,
}

impl PatternCaptures {
    /// The value captured by the group called `name`, if it took part.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All captured `(name, value)` pairs in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(n, v)| (&**n, v.as_str()))
    }

    /// Number of named groups that took part in the match.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when no named group took part in the match.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> PartitionRef {
        PartitionRef::new(s).unwrap()
    }

    #[test]
    fn is_anchored() {
        let p = PartitionPattern::new("a/(?P<n>[0-9]+)").unwrap();
        assert!(p.is_match(&r("a/12")));
        assert!(!p.is_match(&r("xa/12")));
        assert!(!p.is_match(&r("a/12x")));
        // An alternation must not escape the anchors.
        let p = PartitionPattern::new("a|b").unwrap();
        assert!(!p.is_match(&r("ab")));
        assert!(p.is_match(&r("b")));
    }

    #[test]
    fn captures_named_groups() {
        let p = PartitionPattern::new(r"t/region=(?P<region>\w+)/date=(?P<date>[-0-9]+)").unwrap();
        let caps = p.captures(&r("t/region=eu/date=2024-01-01")).unwrap();
        assert_eq!(caps.get("region"), Some("eu"));
        assert_eq!(caps.get("date"), Some("2024-01-01"));
        assert_eq!(caps.get("nope"), None);
        assert_eq!(caps.len(), 2);
        assert_eq!(p.capture_names().collect::<Vec<_>>(), ["region", "date"]);
        assert!(p.captures(&r("t/other")).is_none());
    }

    #[test]
    fn invalid_regex_is_a_typed_error_quoting_the_pattern() {
        let err = PartitionPattern::new("a/(?P<x>[").unwrap_err();
        assert!(matches!(err, PatternError::InvalidRegex { .. }));
        assert!(err.to_string().contains("a/(?P<x>["), "{err}");
    }

    #[test]
    fn parse_names_pattern_and_ref() {
        let p = PartitionPattern::new(r"d/(?P<date>\d+)").unwrap();
        let err = p.parse(&r("d/x")).unwrap_err();
        let msg = err.to_string();
        // Both are quoted with Rust escapes, so the backslash is doubled.
        assert!(msg.contains(r#""d/x""#), "{msg}");
        assert!(msg.contains(r#""d/(?P<date>\\d+)""#), "{msg}");
    }
}
