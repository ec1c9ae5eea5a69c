//! `Retry-After` parsing: how long a `429` or `503` asks Herald to wait.
//!
//! DESIGN §4 has Herald honour `Retry-After` on `429` and `503`. The header is either a number of
//! seconds or an HTTP-date (RFC 9110 §10.2.3); a date is turned into a wait relative to `now`,
//! which the caller passes in so the function stays pure and testable. Recipients must accept all
//! three HTTP-date forms (RFC 9110 §5.6.7): the IMF-fixdate everyone sends, and the obsolete
//! RFC 850 and asctime forms. Anything else yields `None` and the retry policy decides alone.

use std::time::Duration;

use jiff::Timestamp;
use jiff::fmt::rfc2822::DateTimeParser;
use jiff::tz::TimeZone;

static RFC2822: DateTimeParser = DateTimeParser::new();

/// The wait a `Retry-After` value asks for, from `now`.
///
/// A date in the past means "now" (`Duration::ZERO`). Delta-seconds too large for a `u64`
/// saturate, so the result can be huge: the retry policy clamps it to its own bounds.
pub fn parse_retry_after(value: &[u8], now: Timestamp) -> Option<Duration> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return None;
    }
    if value.iter().all(u8::is_ascii_digit) {
        let secs = value.iter().try_fold(0u64, |acc, d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        return Some(Duration::from_secs(secs.unwrap_or(u64::MAX)));
    }
    let date = parse_http_date(value)?;
    // Negative (a date in the past) fails the conversion: no wait.
    Some(Duration::try_from(date.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// An HTTP-date in any of its three forms, always in GMT.
fn parse_http_date(value: &[u8]) -> Option<Timestamp> {
    // IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT", is a subset of RFC 2822.
    if let Ok(ts) = RFC2822.parse_timestamp(value) {
        return Some(ts);
    }
    // RFC 850, "Sunday, 06-Nov-94 08:49:37 GMT", and asctime, "Sun Nov  6 08:49:37 1994".
    for format in ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"] {
        if let Ok(tm) = jiff::fmt::strtime::parse(format, value)
            && let Ok(dt) = tm.to_datetime()
            && let Ok(ts) = TimeZone::UTC.to_timestamp(dt)
        {
            return Some(ts);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seconds_and_dates() {
        // 1994-11-06T08:49:37Z, the RFC's example date.
        let now: Timestamp = "1994-11-06T08:49:00Z".parse().unwrap();
        let secs = |s| Some(Duration::from_secs(s));
        let table: &[(&str, Option<Duration>)] = &[
            ("0", secs(0)),
            ("120", secs(120)),
            ("  7 ", secs(7)),
            (
                "99999999999999999999999",
                Some(Duration::from_secs(u64::MAX)),
            ),
            ("Sun, 06 Nov 1994 08:49:37 GMT", secs(37)),
            ("Sun, 06 Nov 1994 09:49:00 GMT", secs(3600)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", secs(37)),
            ("Sun Nov  6 08:49:37 1994", secs(37)),
            // In the past: retry now.
            ("Sat, 05 Nov 1994 08:49:37 GMT", secs(0)),
            // Not a Retry-After value.
            ("", None),
            ("   ", None),
            ("-5", None),
            ("1.5", None),
            ("soon", None),
            ("12abc", None),
            ("2024-02-29T05:34:00Z", None),
        ];
        for (value, want) in table {
            assert_eq!(parse_retry_after(value.as_bytes(), now), *want, "{value:?}");
        }
    }
}
