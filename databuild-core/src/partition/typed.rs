//! Typed partitions (seed 001, "helpers that make coupling explicit"): a
//! job author declares a partition type once, a struct with named fields
//! and a template such as `clean/date={date}`, and gets its pattern, its
//! formatting to a ref and its parsing from one. Jobs then build their
//! inputs and outputs from typed values instead of formatting strings,
//! and a ref that does not fit is a typed error naming the pattern.
//!
//! ```
//! use databuild_core::partition::{Date, TypedPartition};
//! use databuild_core::{PartitionRef, typed_partition};
//!
//! typed_partition! {
//!     /// One day of cleaned events.
//!     pub struct CleanDay = "clean/date={date}" { pub date: Date }
//! }
//! typed_partition! {
//!     /// A week of counts, named by its last day.
//!     pub struct Week = "weekly/region={region}/end={end}" { pub region: String, pub end: Date }
//! }
//!
//! let week = Week::from_ref(&PartitionRef::new("weekly/region=eu/end=2024-01-07")?)?;
//! let days: Vec<PartitionRef> = (0..7)
//!     .map(|back| CleanDay { date: week.end.add_days(-back) }.to_ref())
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(days[6].as_str(), "clean/date=2024-01-01");
//! assert_eq!(CleanDay::pattern().as_str(), r"clean/date=(?P<date>\d{4}-\d{2}-\d{2})");
//!
//! let err = CleanDay::from_ref(&PartitionRef::new("clean/day=2024-01-07")?).unwrap_err();
//! assert!(err.to_string().contains(r"clean/date=(?P<date>\d{4}-\d{2}-\d{2})"), "{err}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

use super::{PartitionPattern, PartitionRef, PatternCaptures, quote};

/// One field of a typed partition: the text it takes in a ref.
pub trait PartitionField: Sized {
    /// A regex for the field's text, without capture groups of its own.
    const PATTERN: &'static str;

    /// Parses the text the pattern matched.
    fn parse_field(text: &str) -> Result<Self, String>;

    /// The field's text in a ref.
    fn format_field(&self) -> String;
}

impl PartitionField for String {
    const PATTERN: &'static str = "[^/]+";

    fn parse_field(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }

    fn format_field(&self) -> String {
        self.clone()
    }
}

macro_rules! integer_field {
    ($($ty:ty => $pattern:literal),*) => {$(
        impl PartitionField for $ty {
            const PATTERN: &'static str = $pattern;

            fn parse_field(text: &str) -> Result<Self, String> {
                text.parse().map_err(|e| format!("{e}"))
            }

            fn format_field(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

integer_field!(u32 => r"\d+", u64 => r"\d+", i64 => r"-?\d+");

/// A calendar date (proleptic Gregorian), written `YYYY-MM-DD` in refs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Days since 1970-01-01.
    days: i64,
}

impl Date {
    /// The date, if it exists (February 30th does not).
    pub fn new(year: i64, month: u32, day: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        // H. Hinnant's days-from-civil.
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Some(Self {
            days: era * 146_097 + doe - 719_468,
        })
    }

    /// The date `days` after this one (before, when negative).
    #[must_use]
    pub fn add_days(self, days: i64) -> Self {
        Self {
            days: self.days + days,
        }
    }

    /// Days since 1970-01-01.
    pub fn days_since_epoch(self) -> i64 {
        self.days
    }

    /// The year.
    pub fn year(self) -> i64 {
        civil(self.days).0
    }

    /// The month, 1 to 12.
    pub fn month(self) -> u32 {
        civil(self.days).1
    }

    /// The day of the month, from 1.
    pub fn day(self) -> u32 {
        civil(self.days).2
    }
}

/// (year, month, day) of a day number.
fn civil(days: i64) -> (i64, u32, u32) {
    crate::clock::civil_from_days(days)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil(self.days);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl FromStr for Date {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{} is not a date (YYYY-MM-DD)", quote(s, 40));
        let mut parts = s.splitn(3, '-');
        let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let (Ok(y), Ok(m), Ok(d)) = (y.parse(), m.parse(), d.parse()) else {
            return Err(bad());
        };
        Date::new(y, m, d).ok_or_else(|| format!("{} is not a day of the calendar", quote(s, 40)))
    }
}

impl PartitionField for Date {
    const PATTERN: &'static str = r"\d{4}-\d{2}-\d{2}";

    fn parse_field(text: &str) -> Result<Self, String> {
        text.parse()
    }

    fn format_field(&self) -> String {
        self.to_string()
    }
}

/// Why a value and a ref of a typed partition do not fit each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypedPartitionError {
    /// The ref does not match the type's pattern.
    #[error("{partition} is not a {type_name}: it does not match the pattern {pattern}")]
    NoMatch {
        /// The ref, quoted.
        partition: String,
        /// The type.
        type_name: &'static str,
        /// The pattern.
        pattern: String,
    },
    /// The ref matches, but a field's text does not parse.
    #[error("{partition} is not a {type_name} (pattern {pattern}): field {field}: {reason}")]
    Field {
        /// The ref, quoted.
        partition: String,
        /// The type.
        type_name: &'static str,
        /// The pattern.
        pattern: String,
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A value formats to text that is not a ref of its own type (a
    /// `String` field holding a `/`, say).
    #[error("a {type_name} formats to {text}, which is not a ref of the pattern {pattern}")]
    Format {
        /// The type.
        type_name: &'static str,
        /// The text, quoted.
        text: String,
        /// The pattern.
        pattern: String,
    },
}

/// A partition type: named fields that format to a ref through a template
/// and parse back through the pattern made from it. Declare one with
/// [`typed_partition!`](crate::typed_partition).
pub trait TypedPartition: Sized {
    /// The template: literal text with a `{field}` placeholder per field.
    const TEMPLATE: &'static str;

    /// The pattern every ref of the type matches: the template with each
    /// placeholder replaced by a named group of its field's pattern. Use it
    /// as the job's output pattern.
    fn pattern() -> &'static PartitionPattern;

    /// The ref of this value.
    fn to_ref(&self) -> Result<PartitionRef, TypedPartitionError>;

    /// The value a ref names.
    fn from_ref(partition: &PartitionRef) -> Result<Self, TypedPartitionError>;
}

/// Splits a template into literal text and placeholders.
fn pieces(template: &str) -> Result<Vec<(bool, &str)>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            out.push((false, &rest[..open]));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("template {template:?} has an unclosed {{"))?;
        out.push((true, &rest[open + 1..open + close]));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        out.push((false, rest));
    }
    Ok(out)
}

/// The pattern of a template whose fields have the given patterns. Used by
/// [`typed_partition!`](crate::typed_partition); an unknown or missing
/// placeholder is an error naming it.
#[doc(hidden)]
pub fn compile(template: &str, fields: &[(&str, &str)]) -> Result<PartitionPattern, String> {
    let mut pattern = String::new();
    let mut used = Vec::new();
    for (placeholder, text) in pieces(template)? {
        if placeholder {
            let (_, field) = fields
                .iter()
                .find(|(name, _)| *name == text)
                .ok_or_else(|| format!("template {template:?} names no field {text:?}"))?;
            pattern.push_str(&format!("(?P<{text}>{field})"));
            used.push(text);
        } else {
            pattern.push_str(&regex_escape(text));
        }
    }
    if let Some((name, _)) = fields.iter().find(|(name, _)| !used.contains(name)) {
        return Err(format!(
            "template {template:?} has no placeholder for field {name:?}"
        ));
    }
    PartitionPattern::new(&pattern).map_err(|e| e.to_string())
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The ref of a value whose fields format to `values`, checked against the
/// type's pattern. Used by [`typed_partition!`](crate::typed_partition).
#[doc(hidden)]
pub fn render(
    type_name: &'static str,
    template: &str,
    pattern: &PartitionPattern,
    values: &[(&str, String)],
) -> Result<PartitionRef, TypedPartitionError> {
    let mut text = String::new();
    for (placeholder, piece) in pieces(template).unwrap_or_default() {
        if placeholder {
            if let Some((_, v)) = values.iter().find(|(n, _)| *n == piece) {
                text.push_str(v);
            }
        } else {
            text.push_str(piece);
        }
    }
    let format_error = || TypedPartitionError::Format {
        type_name,
        text: quote(&text, 200),
        pattern: pattern.as_str().to_owned(),
    };
    let partition = PartitionRef::new(&text).map_err(|_| format_error())?;
    if pattern.is_match(&partition) {
        Ok(partition)
    } else {
        Err(format_error())
    }
}

/// The captures of `partition` under the type's pattern. Used by
/// [`typed_partition!`](crate::typed_partition).
#[doc(hidden)]
pub fn captures(
    type_name: &'static str,
    pattern: &PartitionPattern,
    partition: &PartitionRef,
) -> Result<PatternCaptures, TypedPartitionError> {
    pattern
        .captures(partition)
        .ok_or_else(|| TypedPartitionError::NoMatch {
            partition: quote(partition.as_str(), 200),
            type_name,
            pattern: pattern.as_str().to_owned(),
        })
}

/// One field parsed from captures. Used by
/// [`typed_partition!`](crate::typed_partition).
#[doc(hidden)]
pub fn field<T: PartitionField>(
    type_name: &'static str,
    pattern: &PartitionPattern,
    partition: &PartitionRef,
    captures: &PatternCaptures,
    name: &'static str,
) -> Result<T, TypedPartitionError> {
    let text = captures.get(name).unwrap_or_default();
    T::parse_field(text).map_err(|reason| TypedPartitionError::Field {
        partition: quote(partition.as_str(), 200),
        type_name,
        pattern: pattern.as_str().to_owned(),
        field: name,
        reason,
    })
}

/// Declares a typed partition: a struct with named fields (each a
/// [`PartitionField`]: `Date`, `String`, `u32`, `u64`, `i64`, or your own)
/// and a template naming each field once.
///
/// ```
/// use databuild_core::partition::{Date, TypedPartition};
/// databuild_core::typed_partition! {
///     /// Hourly clicks of one region.
///     pub struct Clicks = "clicks/region={region}/date={date}/hour={hour}" {
///         pub region: String,
///         pub date: Date,
///         pub hour: u32,
///     }
/// }
/// let c = Clicks { region: "eu".into(), date: "2024-03-01".parse()?, hour: 7 };
/// let r = c.to_ref()?;
/// assert_eq!(r.as_str(), "clicks/region=eu/date=2024-03-01/hour=7");
/// assert_eq!(Clicks::from_ref(&r)?, c);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The template is checked when the pattern is first needed: a placeholder
/// naming no field, or a field with no placeholder, panics then with a
/// message naming it (a test that round-trips one value finds it).
#[macro_export]
macro_rules! typed_partition {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident = $template:literal {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty, )*
        }

        impl $crate::partition::TypedPartition for $name {
            const TEMPLATE: &'static str = $template;

            fn pattern() -> &'static $crate::PartitionPattern {
                static PATTERN: ::std::sync::OnceLock<$crate::PartitionPattern> =
                    ::std::sync::OnceLock::new();
                PATTERN.get_or_init(|| {
                    $crate::partition::typed::compile(
                        $template,
                        &[$((
                            stringify!($field),
                            <$ty as $crate::partition::PartitionField>::PATTERN,
                        )),*],
                    )
                    .unwrap_or_else(|e| panic!("typed partition {}: {e}", stringify!($name)))
                })
            }

            fn to_ref(&self) -> ::std::result::Result<$crate::PartitionRef, $crate::partition::TypedPartitionError> {
                $crate::partition::typed::render(
                    stringify!($name),
                    $template,
                    <Self as $crate::partition::TypedPartition>::pattern(),
                    &[$((
                        stringify!($field),
                        $crate::partition::PartitionField::format_field(&self.$field),
                    )),*],
                )
            }

            fn from_ref(
                partition: &$crate::PartitionRef,
            ) -> ::std::result::Result<Self, $crate::partition::TypedPartitionError> {
                let pattern = <Self as $crate::partition::TypedPartition>::pattern();
                let _captures = $crate::partition::typed::captures(stringify!($name), pattern, partition)?;
                Ok(Self {
                    $( $field: $crate::partition::typed::field(
                        stringify!($name), pattern, partition, &_captures, stringify!($field),
                    )?, )*
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::typed_partition! {
        /// A test type.
        struct Hourly = "hits/site={site}/date={date}/hour={hour}" {
            site: String,
            date: Date,
            hour: u32,
        }
    }

    #[test]
    fn round_trips_and_errors_name_the_pattern() {
        let h = Hourly {
            site: "a.example".into(),
            date: Date::new(2024, 2, 29).unwrap(),
            hour: 23,
        };
        let r = h.to_ref().unwrap();
        assert_eq!(r.as_str(), "hits/site=a.example/date=2024-02-29/hour=23");
        assert_eq!(Hourly::from_ref(&r).unwrap(), h);

        let err =
            Hourly::from_ref(&PartitionRef::new("hits/site=a/date=2024-02-30/hour=1").unwrap())
                .unwrap_err();
        assert!(
            matches!(err, TypedPartitionError::Field { field: "date", .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("not a day of the calendar"),
            "{err}"
        );
        let err =
            Hourly::from_ref(&PartitionRef::new("hits/date=2024-02-01").unwrap()).unwrap_err();
        assert!(
            err.to_string().contains(Hourly::pattern().as_str()),
            "{err}"
        );

        let slash = Hourly {
            site: "a/b".into(),
            ..h
        };
        assert!(matches!(
            slash.to_ref(),
            Err(TypedPartitionError::Format { .. })
        ));
    }

    #[test]
    fn dates_do_calendar_arithmetic() {
        let d: Date = "2024-03-01".parse().unwrap();
        assert_eq!(d.add_days(-1).to_string(), "2024-02-29");
        assert_eq!(d.add_days(306).to_string(), "2025-01-01");
        assert_eq!("1970-01-01".parse::<Date>().unwrap().days_since_epoch(), 0);
        assert_eq!((d.year(), d.month(), d.day()), (2024, 3, 1));
        assert!("2023-02-29".parse::<Date>().is_err());
        assert!("2024-1-01".parse::<Date>().is_err());
        // Every 997th day from 1970 to about 10,000.
        for days in (0..2_900_000).step_by(997) {
            let date = Date { days };
            let (y, m, dd) = (date.year(), date.month(), date.day());
            assert_eq!(Date::new(y, m, dd), Some(date));
            assert_eq!(date.to_string().parse::<Date>().unwrap(), date);
        }
    }

    #[test]
    fn templates_are_checked() {
        assert!(
            compile("a/{x}", &[])
                .unwrap_err()
                .contains("no field \"x\"")
        );
        assert!(
            compile("a", &[("x", r"\d+")])
                .unwrap_err()
                .contains("no placeholder")
        );
        assert!(
            compile("a/{x", &[("x", r"\d+")])
                .unwrap_err()
                .contains("unclosed")
        );
        let p = compile("a.b/{x}", &[("x", r"\d+")]).unwrap();
        assert!(
            !p.is_match(&PartitionRef::new("axb/1").unwrap()),
            "literal dots are escaped"
        );
    }
}
