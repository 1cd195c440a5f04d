//! Reading times as the app sends them: an ISO 8601 string with an offset, or epoch
//! milliseconds. Stored as the old server stored them: UTC with milliseconds
//! (`2026-01-10T08:00:00.000Z`), so the aggregation job reads them unchanged.
//!
//! Only instants in [`EARLIEST`, `LATEST`] exist here (docs/api.md, "The rules"): the
//! old server took any date a JavaScript `Date` holds, and PostgreSQL refused one
//! before 4713 BC (a 500) while one past year 9999 was stored as `+010000-...`,
//! which no reader of the stored payload parses.

use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Timelike, Utc};

use crate::json::write::{Sink, WriteJson};

/// The first instant accepted: 1970-01-01T00:00:00.000Z.
pub const EARLIEST: &str = "1970-01-01T00:00:00.000Z";
/// The last instant accepted: 9999-12-31T23:59:59.999Z (four-digit years only).
pub const LATEST: &str = "9999-12-31T23:59:59.999Z";
const EARLIEST_MS: i64 = 0;
const LATEST_MS: i64 = 253_402_300_799_999;

/// An instant with millisecond precision (what a JavaScript `Date` holds), within
/// [`EARLIEST`, `LATEST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(DateTime<Utc>);

/// Why a value is not an [`Instant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateError {
    /// Not a date in a form we read.
    Malformed,
    /// A date, but before [`EARLIEST`] or after [`LATEST`].
    OutOfRange,
}

impl Instant {
    /// Epoch milliseconds; a fraction is cut off as JavaScript's `new Date(ms)` does.
    pub fn from_epoch_ms(ms: f64) -> Result<Self, DateError> {
        if ms.is_nan() {
            return Err(DateError::Malformed);
        }
        // Compared as floats first: no cast of a huge value to i64 happens.
        let ms = ms.trunc();
        if !(EARLIEST_MS as f64..=LATEST_MS as f64).contains(&ms) {
            return Err(DateError::OutOfRange);
        }
        Self::from_utc_ms(ms as i64)
    }

    fn from_utc_ms(ms: i64) -> Result<Self, DateError> {
        if !(EARLIEST_MS..=LATEST_MS).contains(&ms) {
            return Err(DateError::OutOfRange);
        }
        DateTime::from_timestamp_millis(ms)
            .map(Self)
            .ok_or(DateError::OutOfRange)
    }

    /// `YYYY-MM-DDTHH:MM[:SS[.fraction]]` followed by `Z` or `±HH[:]MM`, the shape
    /// the old server accepted (case-insensitive `T`/`Z`). Digits beyond milliseconds
    /// are cut off.
    pub fn parse_iso(text: &str) -> Result<Self, DateError> {
        let at = Self::parse_iso_fields(text).ok_or(DateError::Malformed)?;
        Self::from_utc_ms(at.timestamp_millis())
    }

    fn parse_iso_fields(text: &str) -> Option<DateTime<Utc>> {
        let mut p = Cursor(text.as_bytes());
        let year = p.digits(4)?;
        p.byte(b'-')?;
        let month = p.digits(2)?;
        p.byte(b'-')?;
        let day = p.digits(2)?;
        p.byte_any(b"Tt")?;
        let hour = p.digits(2)?;
        p.byte(b':')?;
        let minute = p.digits(2)?;
        let (mut second, mut millis) = (0, 0);
        if p.peek() == Some(b':') {
            p.byte(b':')?;
            second = p.digits(2)?;
            if p.peek() == Some(b'.') {
                p.byte(b'.')?;
                let fraction = p.take_while(|b| b.is_ascii_digit());
                if fraction.is_empty() || fraction.len() > 9 {
                    return None;
                }
                // Milliseconds: the first three digits, padded (".5" is 500 ms).
                millis = fraction
                    .iter()
                    .chain(b"000")
                    .take(3)
                    .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'));
            }
        }
        let offset_seconds = match p.next()? {
            b'Z' | b'z' => 0,
            sign @ (b'+' | b'-') => {
                let hours = p.digits(2)?;
                if p.peek() == Some(b':') {
                    p.byte(b':')?;
                }
                let minutes = p.digits(2)?;
                if minutes > 59 {
                    return None;
                }
                let seconds = (hours * 60 + minutes) as i32 * 60;
                if sign == b'-' {
                    -seconds
                } else {
                    seconds
                }
            }
            _ => return None,
        };
        if !p.0.is_empty() {
            return None;
        }
        let local = NaiveDate::from_ymd_opt(year as i32, month, day)?
            .and_hms_milli_opt(hour, minute, second, millis)?;
        let offset = FixedOffset::east_opt(offset_seconds)?;
        let at = offset.from_local_datetime(&local).single()?;
        Some(at.with_timezone(&Utc))
    }

    /// `t` as a JavaScript `Date` would hold it: to the millisecond, truncated.
    pub fn truncated(t: DateTime<Utc>) -> Self {
        Self(DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t))
    }

    pub fn as_utc(&self) -> DateTime<Utc> {
        self.0
    }

    /// Milliseconds since the epoch.
    pub fn epoch_ms(&self) -> i64 {
        self.0.timestamp_millis()
    }

    /// `2026-01-10T08:00:00.000Z`, as JavaScript's `toISOString` (also the
    /// [`Display`](fmt::Display) and JSON form).
    pub fn to_iso(&self) -> String {
        self.to_string()
    }
}

/// JavaScript's `toISOString`: `YYYY-MM-DDTHH:MM:SS.mmmZ` (always four-digit years
/// here, so never its extended form `+010000-…`). Written without allocating: it
/// runs for every stored reading.
impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.iso().as_str())
    }
}

/// `"2026-02-01T09:00:00.000Z"`: nothing in it to escape.
impl WriteJson for Instant {
    fn write_json<S: Sink>(&self, out: &mut S) {
        let iso = self.iso();
        out.put(b"\"");
        out.put(iso.as_str().as_bytes());
        out.put(b"\"");
    }
}

impl Instant {
    /// The ISO 8601 text, in UTC with milliseconds (what `Date.toISOString` writes).
    fn iso(&self) -> Ascii {
        let t = &self.0;
        let mut out = Ascii::default();
        out.digits(t.year() as u32, 4);
        for (separator, value, digits) in [
            (b'-', t.month(), 2),
            (b'-', t.day(), 2),
            (b'T', t.hour(), 2),
            (b':', t.minute(), 2),
            (b':', t.second(), 2),
            (b'.', t.timestamp_subsec_millis(), 3),
        ] {
            out.byte(separator);
            out.digits(value, digits);
        }
        out.byte(b'Z');
        out
    }
}

/// A short ASCII text built on the stack.
#[derive(Default)]
struct Ascii {
    buf: [u8; 32],
    len: usize,
}

impl Ascii {
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// `value` with exactly `n` digits, zero-padded.
    fn digits(&mut self, mut value: u32, n: usize) {
        for i in (0..n).rev() {
            self.buf[self.len + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.len += n;
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("ASCII")
    }
}

impl serde::Serialize for Instant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A tiny reader over ASCII bytes.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn next(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn byte(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    fn byte_any(&mut self, expected: &[u8]) -> Option<()> {
        expected.contains(&self.next()?).then_some(())
    }

    fn digits(&mut self, n: usize) -> Option<u32> {
        let (digits, rest) = self.0.split_at_checked(n)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.0 = rest;
        Some(
            digits
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0')),
        )
    }

    fn take_while(&mut self, keep: impl Fn(&u8) -> bool) -> &[u8] {
        let n = self.0.iter().take_while(|b| keep(b)).count();
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(text: &str) -> Option<String> {
        Instant::parse_iso(text).ok().map(|i| i.to_iso())
    }

    #[test]
    fn utc_strings_are_stored_with_milliseconds() {
        assert_eq!(
            iso("2026-01-10T08:00:00Z").as_deref(),
            Some("2026-01-10T08:00:00.000Z")
        );
        assert_eq!(
            iso("2026-01-10t08:00z").as_deref(),
            Some("2026-01-10T08:00:00.000Z")
        );
        assert_eq!(
            iso("2026-01-10T08:00:00.5Z").as_deref(),
            Some("2026-01-10T08:00:00.500Z")
        );
        assert_eq!(
            iso("2026-01-10T08:00:00.123456789Z").as_deref(),
            Some("2026-01-10T08:00:00.123Z")
        );
    }

    #[test]
    fn offsets_are_converted_to_utc_with_or_without_a_colon() {
        assert_eq!(
            iso("2026-01-10T09:30:00+01:30").as_deref(),
            Some("2026-01-10T08:00:00.000Z")
        );
        assert_eq!(
            iso("2026-01-09T23:00:00-0900").as_deref(),
            Some("2026-01-10T08:00:00.000Z")
        );
    }

    #[test]
    fn strings_without_an_offset_or_with_impossible_fields_are_refused() {
        for bad in [
            "2026-01-10T08:00:00",
            "2026-01-10",
            "2026-02-30T08:00:00Z",
            "2026-01-10T24:00:00Z",
            "2026-01-10T08:60:00Z",
            "2026-01-10T08:00:00.Z",
            "2026-01-10T08:00:00.1234567890Z",
            "2026-01-10T08:00:00Z ",
            "2026-01-10T08:00:00+01:60",
            "yesterday",
            "",
        ] {
            assert_eq!(Instant::parse_iso(bad), Err(DateError::Malformed), "{bad}");
        }
    }

    #[test]
    fn epoch_milliseconds_are_cut_to_whole_milliseconds_like_a_js_date() {
        let i = Instant::from_epoch_ms(1_768_032_000_000.9).unwrap();
        assert_eq!(i.to_iso(), "2026-01-10T08:00:00.000Z");
        assert_eq!(i.epoch_ms(), 1_768_032_000_000);
        assert_eq!(
            Instant::from_epoch_ms(0.0).unwrap().to_iso(),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn the_bounds_are_accepted_in_either_form_and_written_with_four_digit_years() {
        for ms in [0.0, -0.9, 253_402_300_799_999.0, 253_402_300_799_999.9] {
            let i = Instant::from_epoch_ms(ms).unwrap();
            assert!([EARLIEST, LATEST].contains(&i.to_iso().as_str()), "{ms}");
        }
        for text in [
            EARLIEST,
            LATEST,
            "1970-01-01T01:00:00+01:00",
            "9999-12-31T22:59:59.999-01:00",
        ] {
            let i = Instant::parse_iso(text).unwrap();
            assert!([EARLIEST, LATEST].contains(&i.to_iso().as_str()), "{text}");
        }
    }

    #[test]
    fn dates_outside_the_bounds_are_out_of_range_not_malformed() {
        // Each was a JavaScript date the old server took: -1e15 made PostgreSQL
        // fail (a 500), and year 10000 was stored as `+010000-01-01T…`.
        for ms in [
            -1.0,
            -1e15,
            -8.64e15,
            253_402_300_800_000.0,
            8.64e15,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert_eq!(
                Instant::from_epoch_ms(ms),
                Err(DateError::OutOfRange),
                "{ms}"
            );
        }
        for text in [
            "1969-12-31T23:59:59.999Z",
            "0000-01-01T00:00:00Z",
            "1970-01-01T00:59:59.999+01:00",
            "9999-12-31T23:59:59.999-00:01",
            "9999-12-31T23:00:00-01:00",
        ] {
            assert_eq!(
                Instant::parse_iso(text),
                Err(DateError::OutOfRange),
                "{text}"
            );
        }
        assert_eq!(Instant::from_epoch_ms(f64::NAN), Err(DateError::Malformed));
    }
}
