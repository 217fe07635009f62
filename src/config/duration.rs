//! Go duration syntax (spec/worker.md Appendix A): `300ms`, `1m30s`, `1.5h`, `-1s`.
//!
//! Parsing returns a signed count of nanoseconds so callers can reject negative
//! values with a message that names their own key; [`parse_positive`] is the
//! common case.
//!
//! Hand-written because the widely used crate, `humantime`, speaks another grammar
//! (no fractions such as `1.5h`, no sign, extra units such as `1day`); Go's units
//! (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), fractions and overflow rules are the
//! compatibility surface, small enough to own and pinned by the tests below.

use std::time::Duration;

/// A duration string that is not Go syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl DurationError {
    fn new(input: &str, reason: &'static str) -> Self {
        Self {
            input: input.to_owned(),
            reason,
        }
    }
}

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go duration into signed nanoseconds.
///
/// # Errors
/// Empty input, a missing or unknown unit, spaces, or a value beyond `i64` nanoseconds.
pub fn parse_nanos(input: &str) -> Result<i64, DurationError> {
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(DurationError::new(input, "empty duration"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        if number.is_empty() || number == "." {
            return Err(DurationError::new(input, "expected a number"));
        }
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| {
                if unit.is_empty() {
                    DurationError::new(input, "missing unit")
                } else {
                    DurationError::new(input, "unknown unit")
                }
            })?;
        total = total
            .checked_add(
                scale_number(number, scale)
                    .ok_or_else(|| DurationError::new(input, "invalid number"))?,
            )
            .ok_or_else(|| DurationError::new(input, "overflow"))?;
    }
    let limit = if negative {
        i64::MAX as u128 + 1
    } else {
        i64::MAX as u128
    };
    if total > limit {
        return Err(DurationError::new(input, "overflow"));
    }
    let magnitude = total as i128;
    Ok(if negative { -magnitude } else { magnitude } as i64)
}

/// `digits[.fraction] * scale`, exact to the nanosecond (extra fraction digits truncate).
fn scale_number(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut value = whole.checked_mul(scale)?;
    let mut place = scale;
    for digit in fraction.bytes() {
        place /= 10;
        if place == 0 {
            break;
        }
        value = value.checked_add(u128::from(digit - b'0') * place)?;
    }
    Some(value)
}

/// Parses a Go duration that must not be negative.
///
/// # Errors
/// As [`parse_nanos`], and for a negative value.
pub fn parse_non_negative(input: &str) -> Result<Duration, DurationError> {
    let nanos = parse_nanos(input)?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| DurationError::new(input, "must not be negative"))
}

/// Parses a Go duration that must be strictly positive.
///
/// # Errors
/// As [`parse_nanos`], and for zero or a negative value.
pub fn parse_positive(input: &str) -> Result<Duration, DurationError> {
    let duration = parse_non_negative(input)?;
    if duration.is_zero() {
        return Err(DurationError::new(input, "must be a positive duration"));
    }
    Ok(duration)
}

/// Renders a duration in Go's `String()` form (`1m30s`, `300ms`, `0s`).
pub fn format(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (scale, unit) = match nanos {
            n if n < 1_000 => (1, "ns"),
            n if n < 1_000_000 => (1_000, "µs"),
            _ => (1_000_000, "ms"),
        };
        return format!("{}{unit}", trim_fraction(nanos, scale));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let seconds = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{seconds}s"));
    out
}

fn trim_fraction(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_examples() {
        let cases = [
            ("0", 0),
            ("300ms", 300_000_000),
            ("1m30s", 90_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("2h45m", 9_900_000_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("-1s", -1_000_000_000),
            ("+5s", 5_000_000_000),
            ("10us", 10_000),
            ("10µs", 10_000),
            ("10μs", 10_000),
            ("7ns", 7),
            ("1h1m1s1ms1us1ns", 3_661_001_001_001),
        ];
        for (input, nanos) in cases {
            assert_eq!(parse_nanos(input), Ok(nanos), "{input}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for input in ["", "5", "1d", "1 s", " 1s", "s", ".s", "1..5s", "-", "1e3s"] {
            assert!(parse_nanos(input).is_err(), "{input:?} should fail");
        }
        assert!(parse_nanos("3000000h").is_err(), "overflow past ~292 years");
    }

    #[test]
    fn positive_and_non_negative_guards() {
        assert!(parse_positive("0").is_err());
        assert!(parse_positive("-1s").is_err());
        assert_eq!(parse_positive("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_non_negative("0"), Ok(Duration::ZERO));
        let error = parse_non_negative("-3s").unwrap_err().to_string();
        assert!(error.contains("must not be negative"), "{error}");
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_millis(300)), "300ms");
        assert_eq!(format(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
