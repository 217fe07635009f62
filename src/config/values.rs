//! Value parsers for Go's flag spellings: integers with base prefixes, `ParseBool`
//! booleans, floats and durations. Used by clap and shared by every subcommand.

/// Go's `strconv.ParseInt(s, 0, 64)`: `0x1f`, `0o17`, `0b101`, `010` (octal), `1_000`.
///
/// # Errors
/// Not an integer in any of those forms.
pub fn go_int(input: &str) -> Result<i64, String> {
    let invalid = || format!("invalid integer {input:?}");
    let (negative, digits) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest.to_owned())
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest.to_owned())
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest.to_owned())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_owned())
    } else {
        (10, lower.clone())
    };
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return Err(invalid());
    }
    let clean: String = body.chars().filter(|c| *c != '_').collect();
    let magnitude = i128::from_str_radix(&clean, radix).map_err(|_| invalid())?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).map_err(|_| format!("integer {input:?} out of range"))
}

/// A Go integer that must be zero or more.
///
/// # Errors
/// As [`go_int`], or negative.
pub fn go_non_negative(input: &str) -> Result<i64, String> {
    let value = go_int(input)?;
    if value < 0 {
        return Err(format!("{value} must not be negative"));
    }
    Ok(value)
}

/// A Go integer that must be at least one.
///
/// # Errors
/// As [`go_int`], or below one.
pub fn go_positive(input: &str) -> Result<i64, String> {
    let value = go_int(input)?;
    if value < 1 {
        return Err(format!("{value} must be a positive integer"));
    }
    Ok(value)
}

/// Go's `strconv.ParseBool`.
///
/// # Errors
/// Any other spelling.
pub fn go_bool(input: &str) -> Result<bool, String> {
    match input {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("invalid boolean {input:?}")),
    }
}

/// A finite float (`1e3`, `.5`).
///
/// # Errors
/// Not a number, or NaN/infinite.
pub fn go_float(input: &str) -> Result<f64, String> {
    let clean: String = input.chars().filter(|c| *c != '_').collect();
    match clean.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("invalid number {input:?}")),
    }
}

/// A finite float that must be zero or more.
///
/// # Errors
/// As [`go_float`], or negative.
pub fn go_non_negative_float(input: &str) -> Result<f64, String> {
    let value = go_float(input)?;
    if value < 0.0 {
        return Err(format!("{input} must be >= 0"));
    }
    Ok(value)
}

/// A non-negative Go duration.
///
/// # Errors
/// Not Go duration syntax, or negative.
pub fn go_duration(input: &str) -> Result<std::time::Duration, String> {
    super::duration::parse_non_negative(input).map_err(|e| e.to_string())
}

/// A strictly positive Go duration.
///
/// # Errors
/// Not Go duration syntax, zero or negative.
pub fn go_positive_duration(input: &str) -> Result<std::time::Duration, String> {
    super::duration::parse_positive(input).map_err(|e| e.to_string())
}

/// A size in bytes: `1048576`, `512MiB`, `1GiB`, `600MB`, `64KiB`.
///
/// # Errors
/// Not a number with an optional unit.
pub fn byte_size(input: &str) -> Result<u64, String> {
    let text = input.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size {input:?} (use bytes, or a unit such as 512MiB)"
            ));
        }
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {input:?}"))?;
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("size {input:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(byte_size("1048576"), Ok(1_048_576));
        assert_eq!(byte_size("512MiB"), Ok(512 << 20));
        assert_eq!(byte_size("1GiB"), Ok(1 << 30));
        assert_eq!(byte_size("600MB"), Ok(600_000_000));
        assert!(byte_size("lots").is_err());
        assert!(byte_size("12 parsecs").is_err());
    }

    #[test]
    fn go_integers() {
        assert_eq!(go_int("42"), Ok(42));
        assert_eq!(go_int("0x1f"), Ok(31));
        assert_eq!(go_int("0o17"), Ok(15));
        assert_eq!(go_int("0b101"), Ok(5));
        assert_eq!(go_int("010"), Ok(8));
        assert_eq!(go_int("1_000"), Ok(1000));
        assert_eq!(go_int("-7"), Ok(-7));
        assert_eq!(go_int("0"), Ok(0));
        for bad in ["", "x", "1.5", "_1", "1__0", "09", "99999999999999999999"] {
            assert!(go_int(bad).is_err(), "{bad:?}");
        }
        assert!(go_positive("0").is_err());
        assert!(go_non_negative("-1").is_err());
    }

    #[test]
    fn go_booleans_and_floats() {
        for yes in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(go_bool(yes), Ok(true));
        }
        for no in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(go_bool(no), Ok(false));
        }
        assert!(go_bool("yes").is_err());
        assert_eq!(go_float("1e3"), Ok(1000.0));
        assert_eq!(go_float(".5"), Ok(0.5));
        assert!(go_float("NaN").is_err());
        assert!(go_non_negative_float("-1").is_err());
    }
}
