//! Durations as people write them: "90m", "3h", "1d", "1h30m", "45s"; and as people read
//! them, in the same style: `human_duration` is the one format the tray, the notifications,
//! the UI (its twin `formatDuration` in ui/src/lib/time.ts) and the CLI show.

use chrono::Duration;
use thiserror::Error;

/// A duration that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot read {input:?} as a duration: {why} (write it like 90m, 3h, 1d or 1h30m)")]
pub struct DurationError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Reads "90m", "3h", "1d", "2w", "1h30m", "45s"; a bare number is minutes.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |why| DurationError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    if let Ok(minutes) = s.parse::<i64>() {
        return Duration::try_minutes(minutes).ok_or(err("it is too large"));
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        let unit: i64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(err("unknown unit (use s, m, h, d or w)")),
        };
        if number.is_empty() {
            return Err(err("a unit without a number"));
        }
        let n: i64 = number.parse().map_err(|_| err("the number is too large"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or(err("it is too large"))?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(err("a number without a unit at the end"));
    }
    Duration::try_seconds(total).ok_or(err("it is too large"))
}

/// Writes a duration the way people read it: "3h", "1h 30m", "2d 4h", "45s".
pub fn format_duration(d: Duration) -> String {
    let mut s = d.num_seconds();
    if s == 0 {
        return "0m".into();
    }
    let mut parts = Vec::new();
    let neg = s < 0;
    s = s.abs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= size {
            parts.push(format!("{}{unit}", s / size));
            s %= size;
        }
    }
    format!("{}{}", if neg { "-" } else { "" }, parts.join(" "))
}

/// A duration as a person reads it: "2d 4h", "1h 35m", "45m", "42s". Rounded to the nearest
/// minute from 59.5 s on (a countdown or a booking's length; seconds would only flicker), to
/// the nearest second below; nothing negative ("0s"). Parts that are zero are left out.
/// ui/src/lib/time.ts's `formatDuration` is its twin; tests/fixtures/durations.json holds the
/// cases both are checked against.
pub fn human_duration(d: Duration) -> String {
    let ms = d.num_milliseconds().max(0);
    if ms < 59_500 {
        return format!("{}s", (ms + 500) / 1000);
    }
    let mins = (ms + 30_000) / 60_000;
    let (days, hours, rest) = (mins / 1440, mins % 1440 / 60, mins % 60);
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (rest, "m")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_people_write() {
        assert_eq!(parse_duration("90m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("3h").unwrap(), Duration::hours(3));
        assert_eq!(parse_duration("1d").unwrap(), Duration::days(1));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_duration("45").unwrap(), Duration::minutes(45));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("1h30").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn writes_what_people_read() {
        assert_eq!(format_duration(Duration::minutes(90)), "1h 30m");
        assert_eq!(format_duration(Duration::hours(52)), "2d 4h");
        assert_eq!(format_duration(Duration::zero()), "0m");
    }

    #[test]
    fn durations_read_the_same_as_in_the_ui() {
        // The cases ui/src/lib/tests/time.test.ts checks formatDuration against.
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/durations.json")).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() > 10);
        for case in cases {
            let ms = case[0].as_i64().unwrap();
            let want = case[1].as_str().unwrap();
            assert_eq!(human_duration(Duration::milliseconds(ms)), want, "{ms} ms");
        }
    }
}
