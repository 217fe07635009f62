//! Five-field cron expressions with the reference's semantics (spec/worker.md §7.5):
//! minute hour day-of-month month day-of-week, evaluated in UTC unless prefixed by
//! `TZ=<zone> ` or `CRON_TZ=<zone> `; names, ranges, steps and `?`; the Vixie rule that
//! a day matches either restricted day field when both are restricted; no descriptors.
//!
//! Written here rather than wrapping the `cron` crate, which expects a seconds field,
//! numbers weekdays from 1 and has no day-of-month/day-of-week OR rule.

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// How far ahead `next_after` looks before declaring an expression impossible.
const SEARCH_DAYS: i64 = 5 * 366;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
    zone: Option<Tz>,
}

/// A cron expression that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(String);

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    names_start: u32,
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_start: 0,
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_start: 0,
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
        names_start: 0,
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
        names_start: 1,
    },
    Field {
        name: "day of week",
        min: 0,
        max: 6,
        names: WEEKDAYS,
        names_start: 0,
    },
];

impl std::str::FromStr for Schedule {
    type Err = CronError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        if text.starts_with('@') {
            return Err(CronError(format!(
                "parser does not accept descriptors: {text}"
            )));
        }
        let (zone, rest) = match text.split_once(' ') {
            Some((prefix, rest)) if prefix.starts_with("TZ=") || prefix.starts_with("CRON_TZ=") => {
                let name = prefix.split_once('=').map(|(_, z)| z).unwrap_or_default();
                let zone: Tz = name.parse().map_err(|_| {
                    CronError(format!(
                        "provided bad location {name}: unknown time zone {name}"
                    ))
                })?;
                (Some(zone), rest.trim())
            }
            _ => (None, text),
        };
        let parts: Vec<&str> = rest.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(CronError(format!(
                "expected exactly 5 fields, found {}: {rest}",
                parts.len()
            )));
        }
        let mut sets = [0_u64; 5];
        let mut unrestricted = [false; 5];
        for (i, (part, field)) in parts.iter().zip(FIELDS.iter()).enumerate() {
            let (set, star) = parse_field(part, field)?;
            sets[i] = set;
            unrestricted[i] = star;
        }
        Ok(Schedule {
            minutes: sets[0],
            hours: sets[1],
            days: sets[2],
            months: sets[3],
            weekdays: sets[4],
            days_restricted: !unrestricted[2],
            weekdays_restricted: !unrestricted[4],
            zone,
        })
    }
}

/// Parses one field into a bit set; the flag says whether it is unrestricted (`*`, `?`, `*/1`).
fn parse_field(text: &str, field: &Field) -> Result<(u64, bool), CronError> {
    let mut set = 0_u64;
    let mut star = false;
    for term in text.split(',') {
        let (range, step) = match term.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| {
                    CronError(format!("failed to parse int from {step}: invalid syntax"))
                })?;
                if step == 0 {
                    return Err(CronError(format!(
                        "step of range should be a positive number: {term}"
                    )));
                }
                (range, Some(step))
            }
            None => (term, None),
        };
        let (start, end) = if range == "*" || range == "?" {
            star = star || step.is_none_or(|s| s == 1);
            (field.min, field.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, field)?, value(b, field)?)
        } else {
            let start = value(range, field)?;
            (start, if step.is_some() { field.max } else { start })
        };
        if start < field.min || end > field.max {
            return Err(CronError(format!(
                "end of range ({end}) above maximum ({}): {term}",
                field.max
            )));
        }
        if start > end {
            return Err(CronError(format!(
                "beginning of range ({start}) beyond end of range ({end}): {term}"
            )));
        }
        let mut v = start;
        while v <= end {
            set |= 1 << v;
            v += step.unwrap_or(1);
        }
    }
    Ok((set, star))
}

fn value(text: &str, field: &Field) -> Result<u32, CronError> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = field.names.iter().position(|n| *n == lower) {
        return Ok(index as u32 + field.names_start);
    }
    let value: u32 = text
        .parse()
        .map_err(|_| CronError(format!("failed to parse int from {text}: invalid syntax")))?;
    if value < field.min || value > field.max {
        return Err(CronError(format!(
            "{} value {value} out of range [{}, {}]",
            field.name, field.min, field.max
        )));
    }
    Ok(value)
}

impl Schedule {
    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.days_restricted && self.weekdays_restricted {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The earliest whole minute strictly after `after` that matches, or `None` when
    /// nothing matches within five years (an impossible date such as 30 February).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.zone {
            Some(zone) => self.next_in(&zone, after),
            None => self.next_in(&Utc, after),
        }
    }

    fn next_in<Z: TimeZone>(&self, zone: &Z, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(zone).naive_local();
        let mut date = local.date();
        for _ in 0..SEARCH_DAYS {
            if self.day_matches(date) {
                for hour in (0..24).filter(|h| self.hours & (1 << h) != 0) {
                    for minute in (0..60).filter(|m| self.minutes & (1 << m) != 0) {
                        let Some(time) = NaiveTime::from_hms_opt(hour, minute, 0) else {
                            continue;
                        };
                        // A local time skipped by a DST change does not exist; an
                        // ambiguous one runs once, at its first occurrence.
                        let Some(candidate) =
                            zone.from_local_datetime(&date.and_time(time)).earliest()
                        else {
                            continue;
                        };
                        let candidate = candidate.with_timezone(&Utc);
                        if candidate > after {
                            return Some(candidate);
                        }
                    }
                }
            }
            date = date.succ_opt()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn next(expr: &str, after: &str) -> String {
        let schedule: Schedule = expr.parse().unwrap_or_else(|e| panic!("{expr}: {e}"));
        schedule
            .next_after(at(after))
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "never".into())
    }

    #[test]
    fn next_runs_table() {
        let cases = [
            (
                "* * * * *",
                "2025-01-01T00:00:00Z",
                "2025-01-01T00:01:00+00:00",
            ),
            (
                "* * * * *",
                "2025-01-01T00:00:30Z",
                "2025-01-01T00:01:00+00:00",
            ),
            (
                "0 * * * *",
                "2025-01-01T00:00:00Z",
                "2025-01-01T01:00:00+00:00",
            ),
            (
                "*/15 * * * *",
                "2025-01-01T00:07:00Z",
                "2025-01-01T00:15:00+00:00",
            ),
            (
                "5/20 * * * *",
                "2025-01-01T00:26:00Z",
                "2025-01-01T00:45:00+00:00",
            ),
            (
                "0 9-17/4 * * *",
                "2025-01-01T10:00:00Z",
                "2025-01-01T13:00:00+00:00",
            ),
            (
                "30 2 * * *",
                "2025-01-01T03:00:00Z",
                "2025-01-02T02:30:00+00:00",
            ),
            (
                "0 0 1 * *",
                "2025-01-15T00:00:00Z",
                "2025-02-01T00:00:00+00:00",
            ),
            (
                "0 0 31 * *",
                "2025-02-01T00:00:00Z",
                "2025-03-31T00:00:00+00:00",
            ),
            (
                "0 0 29 2 *",
                "2025-01-01T00:00:00Z",
                "2028-02-29T00:00:00+00:00",
            ),
            (
                "0 12 * * MON",
                "2025-01-01T00:00:00Z",
                "2025-01-06T12:00:00+00:00",
            ),
            (
                "0 12 * * mon-fri",
                "2025-01-04T00:00:00Z",
                "2025-01-06T12:00:00+00:00",
            ),
            (
                "0 0 * * 0",
                "2025-01-01T00:00:00Z",
                "2025-01-05T00:00:00+00:00",
            ),
            (
                "0 0 * * SAT,SUN",
                "2025-01-01T00:00:00Z",
                "2025-01-04T00:00:00+00:00",
            ),
            (
                "0 0 * JAN,jul *",
                "2025-02-01T00:00:00Z",
                "2025-07-01T00:00:00+00:00",
            ),
            (
                "0 0 1 DEC *",
                "2025-01-01T00:00:00Z",
                "2025-12-01T00:00:00+00:00",
            ),
            (
                "0 0 ? * *",
                "2025-01-01T00:00:00Z",
                "2025-01-02T00:00:00+00:00",
            ),
            // Vixie OR rule: the 13th, or any Friday.
            (
                "0 0 13 * 5",
                "2025-01-01T00:00:00Z",
                "2025-01-03T00:00:00+00:00",
            ),
            (
                "0 0 13 * 5",
                "2025-01-10T00:00:00Z",
                "2025-01-13T00:00:00+00:00",
            ),
            // One field unrestricted: both must match, i.e. the restricted one alone.
            (
                "0 0 13 * *",
                "2025-01-01T00:00:00Z",
                "2025-01-13T00:00:00+00:00",
            ),
            (
                "0 0 * * 5",
                "2025-01-04T00:00:00Z",
                "2025-01-10T00:00:00+00:00",
            ),
            (
                "0 0 */1 * 5",
                "2025-01-04T00:00:00Z",
                "2025-01-10T00:00:00+00:00",
            ),
            // `*/2` counts as restricted: the OR rule applies.
            (
                "0 0 */2 * 1",
                "2025-01-01T12:00:00Z",
                "2025-01-03T00:00:00+00:00",
            ),
            (
                "59 23 31 12 *",
                "2025-06-01T00:00:00Z",
                "2025-12-31T23:59:00+00:00",
            ),
            (
                "0,30 * * * *",
                "2025-01-01T00:10:00Z",
                "2025-01-01T00:30:00+00:00",
            ),
            // Time zones and DST (New York: 2025-03-09 02:00 -> 03:00, 2025-11-02 02:00 -> 01:00).
            (
                "TZ=America/New_York 0 9 * * *",
                "2025-01-01T00:00:00Z",
                "2025-01-01T14:00:00+00:00",
            ),
            (
                "CRON_TZ=Europe/Berlin 0 9 * * *",
                "2025-07-01T00:00:00Z",
                "2025-07-01T07:00:00+00:00",
            ),
            (
                "TZ=America/New_York 30 2 * * *",
                "2025-03-08T08:00:00Z",
                "2025-03-10T06:30:00+00:00",
            ),
            (
                "TZ=America/New_York 30 1 * * *",
                "2025-11-02T04:00:00Z",
                "2025-11-02T05:30:00+00:00",
            ),
            (
                "TZ=America/New_York 30 1 * * *",
                "2025-11-02T05:30:00Z",
                "2025-11-03T06:30:00+00:00",
            ),
            ("0 0 30 2 *", "2025-01-01T00:00:00Z", "never"),
        ];
        for (expr, after, expected) in cases {
            assert_eq!(next(expr, after), expected, "{expr} after {after}");
        }
    }

    #[test]
    fn invalid_forms_and_their_messages() {
        let cases = [
            ("@daily", "parser does not accept descriptors"),
            ("@every 5m", "parser does not accept descriptors"),
            ("* * * *", "expected exactly 5 fields, found 4"),
            ("0 * * * * *", "expected exactly 5 fields, found 6"),
            ("60 * * * *", "minute value 60 out of range"),
            ("* 24 * * *", "hour value 24 out of range"),
            ("* * 0 * *", "day of month value 0 out of range"),
            ("* * * 13 *", "month value 13 out of range"),
            ("* * * * 7", "day of week value 7 out of range"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1)",
            ),
            ("*/0 * * * *", "step of range should be a positive number"),
            ("L * * * *", "failed to parse int from L"),
            ("* * * * FOO", "failed to parse int from FOO"),
            (
                "TZ=Mars/Olympus 0 0 * * *",
                "unknown time zone Mars/Olympus",
            ),
        ];
        for (expr, needle) in cases {
            let error = expr.parse::<Schedule>().unwrap_err().to_string();
            assert!(error.contains(needle), "{expr}: {error}");
        }
    }
}
