//! Cell text → typed value, one strict rule per unit. Connect writes `-` (and sometimes a blank)
//! for "no data"; both become null. Anything else that does not parse is an error, never a guess.

use chrono::{DateTime, Datelike, NaiveDate};

/// `NaiveDate::num_days_from_ce()` of 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Characters of a cell quoted in a message; longer cells are cut (messages stay one short line).
pub const QUOTED_CHARS: usize = 40;

/// Why a cell could not be parsed. Each variant holds the cell [`quoted`] (bounded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not an integer.
    #[error("expected an integer count, got {0}")]
    Count(String),
    /// Not a number (or `hh:mm:ss`).
    #[error("expected a number, got {0}")]
    Number(String),
    /// Not an ISO 8601 instant.
    #[error("expected an ISO 8601 timestamp with a zone (e.g. 2024-03-10T16:00:00.000Z), got {0}")]
    Timestamp(String),
    /// Not valid UTF-8.
    #[error("text is not valid UTF-8")]
    Utf8,
    /// A number outside its unit's range (schemas/connect_metrics.toml).
    #[error("{value} is out of range: must be {range}")]
    OutOfRange {
        /// The cell, quoted.
        value: String,
        /// The rule, e.g. `between 0 and 100`.
        range: String,
    },
}

/// A cell for a message: Rust-quoted, invalid UTF-8 replaced, cut after [`QUOTED_CHARS`]
/// characters with the full size noted: `"abc…" (10485760 bytes)`.
pub fn quoted(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    match text.char_indices().nth(QUOTED_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => {
            let cut_text = format!("{}…", &text[..cut]);
            format!("{cut_text:?} ({} bytes)", raw.len())
        }
    }
}

/// `text` cut to at most `max` characters, the last one `…` when cut.
pub fn bounded(text: &str, max: usize) -> String {
    if text.char_indices().nth(max).is_none() {
        return text.to_string();
    }
    let cut = text
        .char_indices()
        .nth(max.saturating_sub(1))
        .map_or(text.len(), |(i, _)| i);
    format!("{}…", &text[..cut])
}

/// Trims ASCII whitespace and maps the "no data" markers to `None`.
fn present(raw: &[u8]) -> Option<&[u8]> {
    let s = raw.trim_ascii();
    (!s.is_empty() && s != b"-").then_some(s)
}

fn lossy(raw: &[u8]) -> String {
    quoted(raw)
}

/// A count: `12`, `-`/blank → null. A zero fraction (`12.00`) is accepted; `1,234` or `1.5` are not.
pub fn parse_count(raw: &[u8]) -> Result<Option<i64>, ValueError> {
    let Some(s) = present(raw) else {
        return Ok(None);
    };
    let (sign, int_part, frac) = decimal_parts(s);
    let frac = frac.unwrap_or_default();
    let fits = !int_part.is_empty() && int_part.len() <= 18 && frac.iter().all(|&b| b == b'0');
    // The length is checked first: more than 19 digits would overflow.
    let value = fits
        .then(|| digits_value(int_part, b""))
        .flatten()
        .ok_or_else(|| ValueError::Count(lossy(raw)))? as i64;
    Ok(Some(if sign == Some(b'-') { -value } else { value }))
}

/// `s` split into its sign (`-` or `+`), the digits before a `.`, and those after it (`None`
/// without a `.`); the digits are not checked.
fn decimal_parts(s: &[u8]) -> (Option<u8>, &[u8], Option<&[u8]>) {
    let (sign, digits) = match s.split_first() {
        Some((&b @ (b'-' | b'+'), rest)) => (Some(b), rest),
        _ => (None, s),
    };
    match digits.iter().position(|&b| b == b'.') {
        Some(dot) => (sign, &digits[..dot], Some(&digits[dot + 1..])),
        None => (sign, digits, None),
    }
}

/// The decimal digits of `whole` then `fraction` as one integer; `None` if any is not a digit.
/// Callers bound the count (at most 19 digits fit).
fn digits_value(whole: &[u8], fraction: &[u8]) -> Option<u64> {
    whole.iter().chain(fraction).try_fold(0u64, |value, &b| {
        b.is_ascii_digit().then(|| value * 10 + u64::from(b - b'0'))
    })
}

/// A duration in seconds: `461`, `30.3`, or the UI's `hh:mm:ss`; `-`/blank → null.
pub fn parse_seconds(raw: &[u8]) -> Result<Option<f64>, ValueError> {
    let Some(s) = present(raw) else {
        return Ok(None);
    };
    if s.contains(&b':') {
        return parse_clock(s)
            .map(Some)
            .ok_or_else(|| ValueError::Number(lossy(raw)));
    }
    parse_number(s, raw).map(Some)
}

/// A percentage 0–100: `87.50%` → 87.5; `-`/blank → null.
pub fn parse_percent(raw: &[u8]) -> Result<Option<f64>, ValueError> {
    let Some(s) = present(raw) else {
        return Ok(None);
    };
    let s = s.strip_suffix(b"%").unwrap_or(s).trim_ascii_end();
    parse_number(s, raw).map(Some)
}

/// A metric cxlake does not know: a number, a percentage or `hh:mm:ss`.
pub fn parse_unknown_metric(raw: &[u8]) -> Result<Option<f64>, ValueError> {
    match present(raw) {
        Some(s) if s.ends_with(b"%") => parse_percent(raw),
        _ => parse_seconds(raw),
    }
}

/// Text, `-`/blank → null.
pub fn parse_text(raw: &[u8]) -> Result<Option<&str>, ValueError> {
    match present(raw) {
        None => Ok(None),
        Some(_) => std::str::from_utf8(raw)
            .map(Some)
            .map_err(|_| ValueError::Utf8),
    }
}

fn parse_number(s: &[u8], raw: &[u8]) -> Result<f64, ValueError> {
    if let Some(value) = short_decimal(s) {
        return Ok(value);
    }
    // Only plain decimal notation: rejects thousands separators, locale commas, inf and NaN.
    let plain = s
        .iter()
        .all(|&b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    let value = std::str::from_utf8(s)
        .ok()
        .filter(|_| plain)
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|v| v.is_finite());
    value.ok_or_else(|| ValueError::Number(lossy(raw)))
}

/// `-?d+(.d+)?` with at most 15 digits in all, the form of nearly every report value, without
/// the general parser: the digits as an integer and the power of ten are both exact doubles, so
/// one division rounds correctly (Clinger's fast path) and gives the same bits as `str::parse`.
/// Anything else is `None` and takes the general path.
fn short_decimal(s: &[u8]) -> Option<f64> {
    let (sign, whole, fraction) = decimal_parts(s);
    if sign == Some(b'+') || whole.is_empty() || fraction == Some(b"") {
        return None;
    }
    let fraction = fraction.unwrap_or_default();
    if whole.len() + fraction.len() > 15 {
        return None;
    }
    let mantissa = digits_value(whole, fraction)?;
    const POWERS: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let value = mantissa as f64 / POWERS[fraction.len()];
    Some(if sign == Some(b'-') { -value } else { value })
}

/// `h+:mm:ss[.f+]`, digits only; hours that overflow are an error, never a wrap.
fn parse_clock(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    let mut parts = text.split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let (whole, frac) = sec.split_once('.').unwrap_or((sec, "0"));
    if parts.next().is_some() || !digits(h) || m.len() != 2 || !digits(m) {
        return None;
    }
    if whole.len() != 2 || !digits(whole) || !digits(frac) {
        return None;
    }
    let hours: u64 = h.parse().ok()?;
    let minutes: u64 = m.parse().ok()?;
    let seconds: f64 = sec.parse().ok()?;
    if minutes >= 60 || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    let whole_seconds = hours.checked_mul(3600)?.checked_add(minutes * 60)?;
    Some(whole_seconds as f64 + seconds)
}

/// An ISO 8601 instant with a zone → milliseconds since the epoch (UTC).
/// `2024-03-10T16:00:00.000Z`, `2024-03-10T16:00:00Z`, `2024-03-10T11:00:00-05:00`.
pub fn parse_timestamp_millis(raw: &[u8]) -> Result<Option<i64>, ValueError> {
    let Some(s) = present(raw) else {
        return Ok(None);
    };
    if let Some(ms) = fast_utc_millis(s) {
        return Ok(Some(ms));
    }
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        // Sub-millisecond digits would be cut off silently (and could hide an off-grid start).
        .filter(|dt| dt.timestamp_subsec_nanos() % 1_000_000 == 0)
        .map(|dt| Some(dt.timestamp_millis()))
        .ok_or_else(|| ValueError::Timestamp(lossy(raw)))
}

/// The common shape `YYYY-MM-DDThh:mm:ss[.fff]Z`, parsed without allocation.
fn fast_utc_millis(s: &[u8]) -> Option<i64> {
    let (body, zone) = s.split_at(s.len().checked_sub(1)?);
    if zone != b"Z" {
        return None;
    }
    if body.len() < 19
        || body[4] != b'-'
        || body[7] != b'-'
        || body[10] != b'T'
        || body[13] != b':'
        || body[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        body[r].iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    };
    let millis = match &body[19..] {
        [] => 0,
        [b'.', frac @ ..] if (1..=3).contains(&frac.len()) => {
            let v = num(20..body.len())?;
            v * 10u32.pow(3 - frac.len() as u32)
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    let days = i64::from(date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE);
    Some(
        ((days * 24 + i64::from(h)) * 60 + i64::from(m)) * 60_000
            + i64::from(sec) * 1000
            + i64::from(millis),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn short_decimals_parse_to_the_bits_of_str_parse(text in "-?[0-9]{0,17}(\\.[0-9]{0,17})?") {
            let expected = text.parse::<f64>().ok().filter(|v| v.is_finite());
            if let Some(fast) = short_decimal(text.as_bytes()) {
                prop_assert_eq!(Some(fast.to_bits()), expected.map(f64::to_bits), "{}", text);
            }
            let general = parse_number(text.as_bytes(), text.as_bytes()).ok();
            prop_assert_eq!(general.map(f64::to_bits), expected.map(f64::to_bits), "{}", text);
        }
    }

    #[test]
    fn short_decimals_take_the_fast_path_and_others_do_not() {
        assert_eq!(short_decimal(b"461"), Some(461.0));
        assert_eq!(short_decimal(b"30.3"), Some(30.3));
        assert_eq!(
            short_decimal(b"-0").map(f64::to_bits),
            Some((-0.0f64).to_bits())
        );
        assert_eq!(short_decimal(b"0.1"), Some(0.1));
        for other in [
            &b"5."[..],
            b".5",
            b"+5",
            b"1e3",
            b"1234567890123456",
            b"1,5",
            b"-",
        ] {
            assert_eq!(
                short_decimal(other),
                None,
                "{:?}",
                std::str::from_utf8(other)
            );
        }
    }

    #[test]
    fn dash_and_blank_mean_no_data() {
        for raw in [&b"-"[..], b"", b"  ", b" - "] {
            assert_eq!(parse_count(raw), Ok(None));
            assert_eq!(parse_seconds(raw), Ok(None));
            assert_eq!(parse_percent(raw), Ok(None));
            assert_eq!(parse_timestamp_millis(raw), Ok(None));
            assert_eq!(parse_text(raw), Ok(None));
        }
    }

    #[test]
    fn counts_are_strict_integers() {
        assert_eq!(parse_count(b"991"), Ok(Some(991)));
        assert_eq!(parse_count(b"0"), Ok(Some(0)));
        assert_eq!(parse_count(b"12.00"), Ok(Some(12)));
        for bad in [
            &b"1,234"[..],
            b"1.5",
            b"abc",
            b"12a",
            b".",
            b"12345678901234567890123",
        ] {
            assert!(
                parse_count(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn seconds_accept_decimals_and_clock_format() {
        assert_eq!(parse_seconds(b"30.3"), Ok(Some(30.3)));
        assert_eq!(parse_seconds(b"461"), Ok(Some(461.0)));
        assert_eq!(parse_seconds(b"01:02:03"), Ok(Some(3723.0)));
        assert!(parse_seconds(b"1,5").is_err());
        assert!(parse_seconds(b"inf").is_err());
        assert!(parse_seconds(b"NaN").is_err());
        assert!(parse_seconds(b"1:2").is_err());
    }

    #[test]
    fn percent_sign_is_stripped_and_scale_is_0_to_100() {
        assert_eq!(parse_percent(b"87.50%"), Ok(Some(87.5)));
        assert_eq!(parse_percent(b"0.00%"), Ok(Some(0.0)));
        assert_eq!(parse_percent(b"100.00%"), Ok(Some(100.0)));
        assert_eq!(parse_percent(b"42"), Ok(Some(42.0)));
        assert!(parse_percent(b"%").is_err());
        assert!(parse_percent(b"12,5%").is_err());
    }

    #[test]
    fn timestamps_with_and_without_millis_and_offsets() {
        let expected = 1_710_086_400_000; // 2024-03-10T16:00:00Z
        assert_eq!(
            parse_timestamp_millis(b"2024-03-10T16:00:00.000Z"),
            Ok(Some(expected))
        );
        assert_eq!(
            parse_timestamp_millis(b"2024-03-10T16:00:00Z"),
            Ok(Some(expected))
        );
        assert_eq!(
            parse_timestamp_millis(b"2024-03-10T16:00:00.5Z"),
            Ok(Some(expected + 500))
        );
        assert_eq!(
            parse_timestamp_millis(b"2024-03-10T12:00:00-04:00"),
            Ok(Some(expected))
        );
        assert_eq!(
            parse_timestamp_millis(b"2024-03-10T16:00:00+00:00"),
            Ok(Some(expected))
        );
        assert_eq!(
            parse_timestamp_millis(b"1969-12-31T23:59:59.999Z"),
            Ok(Some(-1))
        );
        for bad in [
            &b"2024-03-10 16:00"[..],
            b"2024-03-10T16:00:00",
            b"2024-02-30T00:00:00Z",
            b"2024-03-10T16:00:00.000230Z",
            b"yesterday",
        ] {
            assert!(
                parse_timestamp_millis(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn text_keeps_non_ascii_and_rejects_bad_utf8() {
        assert_eq!(
            parse_text("Köln Überlauf".as_bytes()),
            Ok(Some("Köln Überlauf"))
        );
        assert_eq!(parse_text(b"\xff\xfe"), Err(ValueError::Utf8));
    }

    #[test]
    fn clock_hours_that_overflow_are_an_error_not_a_wrap() {
        // 5124095576030432 h × 3600 overflows u64; release builds would wrap without a check.
        assert!(parse_seconds(b"5124095576030432:00:00").is_err());
        assert!(parse_seconds(b"99999999999999999999:00:00").is_err());
        assert_eq!(parse_seconds(b"100:00:00"), Ok(Some(360_000.0)));
        assert_eq!(parse_seconds(b"0:00:01.5"), Ok(Some(1.5)));
        for bad in [
            &b"+1:00:00"[..],
            b"1:00:1e1",
            b"1:00:5",
            b"1:0a:00",
            b"-1:00:00",
        ] {
            assert!(
                parse_seconds(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn messages_quote_cells_cut_short() {
        let huge = vec![b'x'; 10 << 20];
        let q = quoted(&huge);
        assert!(q.len() < 80, "{q}");
        assert!(q.contains("10485760 bytes"), "{q}");
        let e = parse_count(&huge).unwrap_err().to_string();
        assert!(e.len() < 120, "{e}");
        assert_eq!(quoted(b"abc"), "\"abc\"");
        assert_eq!(bounded("abcdef", 4), "abc…");
        assert_eq!(bounded("abcd", 4), "abcd");
        assert_eq!(bounded("ääää", 4), "ääää");
    }
}
