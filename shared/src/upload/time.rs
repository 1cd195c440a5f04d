//! Reading times as the app sends them: an ISO 8601 string with an offset, or epoch
//! milliseconds. Stored as the old server stored them: UTC with milliseconds
//! (`2026-01-10T08:00:00.000Z`), so the aggregation job reads them unchanged.

use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Timelike, Utc};

/// The largest instant a JavaScript `Date` holds (±8.64e15 ms): the old server's range.
const MAX_EPOCH_MS: f64 = 8.64e15;

/// An instant with millisecond precision (what a JavaScript `Date` holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(DateTime<Utc>);

impl Instant {
    /// Epoch milliseconds; a fraction is cut off as JavaScript's `new Date(ms)` does.
    pub fn from_epoch_ms(ms: f64) -> Option<Self> {
        if !ms.is_finite() || ms.abs() > MAX_EPOCH_MS {
            return None;
        }
        DateTime::from_timestamp_millis(ms.trunc() as i64).map(Self)
    }

    /// `YYYY-MM-DDTHH:MM[:SS[.fraction]]` followed by `Z` or `±HH[:]MM`, the shape
    /// the old server accepted (case-insensitive `T`/`Z`). Digits beyond milliseconds
    /// are cut off.
    pub fn parse_iso(text: &str) -> Option<Self> {
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
        Some(Self(at.with_timezone(&Utc)))
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

/// JavaScript's `toISOString`: `YYYY-MM-DDTHH:MM:SS.mmmZ`, and outside years 0 to
/// 9999 the extended form with a sign and six digits (`+275760-09-13T…`).
/// Written without allocating: it runs for every stored reading.
impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let t = &self.0;
        let mut out = Ascii::default();
        match t.year() {
            year @ 0..=9999 => out.digits(year as u32, 4),
            year => {
                out.byte(if year < 0 { b'-' } else { b'+' });
                out.digits(year.unsigned_abs(), 6);
            }
        }
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
        f.write_str(out.as_str())
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
        Instant::parse_iso(text).map(|i| i.to_iso())
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
            assert_eq!(iso(bad), None, "{bad}");
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
    fn years_outside_four_digits_are_written_as_javascript_writes_them() {
        // Each right-hand side is node's `new Date(ms).toISOString()`.
        for (ms, js) in [
            (3_093_527_980_800_000.0, "+100000-01-01T00:00:00.000Z"),
            (-3_217_862_419_200_000.0, "-100000-01-01T00:00:00.000Z"),
            (253_402_300_800_000.0, "+010000-01-01T00:00:00.000Z"),
            (253_402_300_799_999.0, "9999-12-31T23:59:59.999Z"),
            (-62_167_219_200_000.0, "0000-01-01T00:00:00.000Z"),
            (-62_198_755_200_001.0, "-000002-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(Instant::from_epoch_ms(ms).unwrap().to_iso(), js, "{ms}");
        }
    }

    #[test]
    fn epoch_values_beyond_a_js_date_are_refused() {
        assert!(Instant::from_epoch_ms(8.64e15 + 1.0).is_none());
        assert!(Instant::from_epoch_ms(f64::NAN).is_none());
        assert!(Instant::from_epoch_ms(f64::INFINITY).is_none());
    }
}
