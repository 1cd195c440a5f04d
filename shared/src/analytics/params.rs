//! Query parameters of the analytics routes (docs/remaining-routes.md, "Common
//! to the three routes"): unknown ones
//! are ignored; a known one that is repeated or invalid is a 400 listing every such
//! parameter with what is wrong (the old server answered 500). Integers are decimal
//! digits only (`1e2`, `0x10`, `+5`, `5.0` and ` 7 ` are refused).

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use lambda_http::aws_lambda_events::query_map::QueryMap;

use crate::http::{ApiError, FieldError};

/// The parameters of one request, read one by one; the failures pile up until
/// [`Params::finish`].
pub(crate) struct Params<'a> {
    query: &'a QueryMap,
    errors: Vec<FieldError>,
}

impl<'a> Params<'a> {
    pub(crate) fn new(query: &'a QueryMap) -> Self {
        Self {
            query,
            errors: Vec::new(),
        }
    }

    /// The value of `name`, `None` when it is absent (or, recorded as an error,
    /// given more than once).
    pub(crate) fn value(&mut self, name: &'static str) -> Option<&'a str> {
        let values = self.query.all(name)?;
        match values.as_slice() {
            [one] => Some(one),
            _ => {
                self.invalid(name, "must be given once");
                None
            }
        }
    }

    /// `name` read by `read`; `None` when it is absent or (recorded with `message`)
    /// `read` refuses it.
    pub(crate) fn parsed<T>(
        &mut self,
        name: &'static str,
        message: &str,
        read: impl FnOnce(&'a str) -> Option<T>,
    ) -> Option<T> {
        let value = self.value(name)?;
        let parsed = read(value);
        if parsed.is_none() {
            self.invalid(name, message);
        }
        parsed
    }

    /// An integer from `min` to `max`, `default` when absent (or invalid: the
    /// request then fails at [`Params::finish`]).
    pub(crate) fn integer(&mut self, name: &'static str, min: i64, max: i64, default: i64) -> i64 {
        let message = if max == i64::MAX {
            format!("must be an integer of at least {min}")
        } else {
            format!("must be an integer from {min} to {max}")
        };
        self.parsed(name, &message, |v| {
            integer(v).filter(|n| (min..=max).contains(n))
        })
        .unwrap_or(default)
    }

    pub(crate) fn invalid(&mut self, name: &'static str, message: &str) {
        self.errors.push(FieldError {
            path: name.to_string(),
            message: message.to_string(),
        });
    }

    /// 400 with every failure, if there was one.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidQuery(self.errors))
        }
    }
}

/// Decimal digits only; `None` for anything else or beyond `i64`.
fn integer(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Text PostgreSQL can hold (no NUL).
pub(crate) fn text(value: &str) -> Option<&str> {
    (!value.contains('\0')).then_some(value)
}

/// The old server's date-time grammar (zod's `datetime()`):
/// `YYYY-MM-DDTHH:MM[:SS[.digits]]Z`, calendar-checked, UTC only. The instant
/// (rounded to microseconds, as PostgreSQL read the text), and the date as written.
pub(crate) fn date_time(text: &str) -> Option<(DateTime<Utc>, NaiveDate)> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    if b.len() < 17 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(digits(0..4)?).ok()?,
        digits(5..7)?,
        digits(8..10)?,
    )?;
    let (hour, minute) = (digits(11..13)?, digits(14..16)?);
    let mut rest = &b[16..];
    let (mut second, mut micros) = (0, 0u64);
    if let [b':', ..] = rest {
        second = digits(17..19)?;
        rest = &b[19..];
        if let [b'.', fraction @ .., b'Z'] = rest {
            micros = rounded_micros(fraction)?;
            rest = b"Z";
        }
    }
    if rest != b"Z" || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let time = NaiveTime::from_hms_opt(hour, minute, second)?;
    let at = Utc.from_utc_datetime(&date.and_time(time))
        + chrono::Duration::microseconds(i64::try_from(micros).ok()?);
    Some((at, date))
}

/// The microseconds of a fraction's digits, rounded half to even as PostgreSQL
/// rounds them (`rint`); 1,000,000 when it rounds up to the next second.
fn rounded_micros(fraction: &[u8]) -> Option<u64> {
    if fraction.is_empty() || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let digit = |i: usize| fraction.get(i).map_or(0, |d| u64::from(d - b'0'));
    let micros = (0..6).fold(0, |n, i| n * 10 + digit(i));
    let next = digit(6);
    let more = fraction.iter().skip(7).any(|d| *d != b'0');
    let up = next > 5 || (next == 5 && (more || micros % 2 == 1));
    Some(micros + u64::from(up))
}

/// `YYYY-MM-DD`, calendar-checked.
pub(crate) fn date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let all_digits = [0..4, 5..7, 8..10]
        .into_iter()
        .all(|r| b[r].iter().all(u8::is_ascii_digit));
    all_digits.then_some(())?;
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// An RFC 3339 instant (any offset), in UTC.
pub(crate) fn instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A cursor `<time>|<key>`, split at the last `|`: both parts, the key checked
/// by [`text`].
pub(crate) fn cursor(value: &str) -> Option<(&str, &str)> {
    let (time, key) = value.rsplit_once('|')?;
    Some((time, text(key)?))
}

/// A timestamp as the old server wrote it (JavaScript's `toISOString`): UTC,
/// milliseconds (truncated), `Z`.
pub(crate) fn iso_millis(t: &DateTime<Utc>) -> String {
    crate::upload::time::Instant::truncated(*t).to_string()
}

/// A timestamp at PostgreSQL's full precision, for a cursor: UTC, microseconds, `Z`.
pub(crate) fn iso_micros(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A parse's result with, for a refused request, the parameters it names
/// (`details[].path`): for tests.
#[cfg(test)]
pub(crate) fn refused_paths<T>(result: Result<T, ApiError>) -> Result<T, Vec<String>> {
    result.map_err(|e| match e {
        ApiError::InvalidQuery(details) => details.into_iter().map(|d| d.path).collect(),
        other => panic!("not an invalid query: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn query(text: &str) -> QueryMap {
        text.parse().unwrap()
    }

    #[test]
    fn integers_are_decimal_digits_within_their_range() {
        let q = query("limit=0042&hours=7");
        let mut p = Params::new(&q);
        assert_eq!(p.integer("limit", 1, 500, 200), 42);
        assert_eq!(p.integer("hours", 1, 168, 24), 7);
        assert_eq!(p.integer("absent", 1, 10, 3), 3);
        assert!(p.finish().is_ok());
        for bad in [
            "",
            "0",
            "501",
            "-5",
            "+5",
            "1.5",
            "5.0",
            " 7",
            "7 ",
            "1e2",
            "0x10",
            "abc",
            "99999999999999999999",
        ] {
            let q: QueryMap = [("limit".to_string(), vec![bad.to_string()])]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>()
                .into();
            let mut p = Params::new(&q);
            p.integer("limit", 1, 500, 200);
            let Err(ApiError::InvalidQuery(details)) = p.finish() else {
                panic!("{bad:?} accepted");
            };
            assert_eq!(details[0].path, "limit");
            assert_eq!(details[0].message, "must be an integer from 1 to 500");
        }
    }

    #[test]
    fn a_repeated_parameter_and_every_invalid_one_are_listed() {
        let q = query("limit=5&limit=6&hours=x&unknown=1&unknown=2");
        let mut p = Params::new(&q);
        p.integer("limit", 1, 500, 200);
        p.integer("hours", 1, 168, 24);
        p.integer("min_devices", 0, i64::MAX, 0);
        let Err(ApiError::InvalidQuery(details)) = p.finish() else {
            panic!("accepted");
        };
        let listed: Vec<(&str, &str)> = details
            .iter()
            .map(|d| (d.path.as_str(), d.message.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                ("limit", "must be given once"),
                ("hours", "must be an integer from 1 to 168")
            ]
        );
    }

    #[test]
    fn the_old_date_time_grammar_is_utc_with_optional_seconds_and_fraction() {
        for (text, at) in [
            ("2026-03-10T10:00Z", "2026-03-10T10:00:00Z"),
            ("2026-03-10T10:00:05Z", "2026-03-10T10:00:05Z"),
            ("2026-03-10T10:00:05.1Z", "2026-03-10T10:00:05.1Z"),
            ("2026-03-10T23:59:59.123456Z", "2026-03-10T23:59:59.123456Z"),
            // Rounded to microseconds, half to even, as PostgreSQL read the text.
            ("2026-03-10T10:00:00.0000005Z", "2026-03-10T10:00:00Z"),
            (
                "2026-03-10T10:00:00.0000015Z",
                "2026-03-10T10:00:00.000002Z",
            ),
            (
                "2026-03-10T10:00:00.00000051Z",
                "2026-03-10T10:00:00.000001Z",
            ),
            ("2026-03-10T23:59:59.9999999Z", "2026-03-11T00:00:00Z"),
            ("2024-02-29T00:00Z", "2024-02-29T00:00:00Z"),
        ] {
            let (instant, date) = date_time(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(instant, utc(at), "{text}");
            assert_eq!(date.to_string(), text[..10], "{text}");
        }
        for bad in [
            "2026-03-10",
            "2026-03-10T10Z",
            "2026-03-10T10:00",
            "2026-03-10T10:00:00",
            "2026-03-10T10:00:00+01:00",
            "2026-03-10T10:00:00.Z",
            "2026-03-10t10:00:00z",
            "2026-03-10 10:00:00Z",
            "2026-02-30T10:00:00Z",
            "2025-02-29T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-03-10T24:00:00Z",
            "2026-03-10T10:60:00Z",
            "2026-03-10T10:00:60Z",
            "2026-03-10T10:00:00ZZ",
            "+2026-03-10T10:00:00Z",
            "２026-03-10T10:00:00Z",
        ] {
            assert!(date_time(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn cursors_split_at_the_last_bar_and_their_times_are_strict() {
        assert_eq!(
            cursor("2026-03-10T10:00:00.000000Z|u0|9"),
            Some(("2026-03-10T10:00:00.000000Z|u0", "9"))
        );
        assert_eq!(cursor("t|"), Some(("t", "")));
        assert_eq!(cursor("no bar"), None);
        assert_eq!(cursor("t|a\0b"), None);
        assert_eq!(
            instant("2026-03-10T10:00:00.123456Z"),
            Some(utc("2026-03-10T10:00:00.123456Z"))
        );
        assert_eq!(
            instant("2026-03-10T11:00:00+01:00"),
            Some(utc("2026-03-10T10:00:00Z"))
        );
        assert_eq!(instant("2026-03-10"), None);
        assert_eq!(instant("Tue Mar 10 2026 10:00:00 GMT+0000"), None);
        assert_eq!(date("2026-03-10"), NaiveDate::from_ymd_opt(2026, 3, 10));
        for bad in [
            "2026-3-10",
            "2026-03-1",
            "2026-02-30",
            "2026-03-10T00:00:00Z",
            " 2026-03-10",
        ] {
            assert_eq!(date(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_are_written_truncated_to_milliseconds_and_in_full_for_cursors() {
        let t = utc("2026-03-10T10:00:00.123987Z");
        assert_eq!(iso_millis(&t), "2026-03-10T10:00:00.123Z");
        assert_eq!(iso_micros(&t), "2026-03-10T10:00:00.123987Z");
        let whole = utc("2026-03-10T10:00:00Z");
        assert_eq!(iso_millis(&whole), "2026-03-10T10:00:00.000Z");
        assert_eq!(iso_micros(&whole), "2026-03-10T10:00:00.000000Z");
    }
}
