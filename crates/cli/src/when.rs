//! Times and sizes as people write them, read in the local time zone and turned into UTC.

use chrono::{
    DateTime, Duration, Local, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use gpubook_core::duration::parse_duration;

/// Reads a time: "now", "14:00", "9:30", "tomorrow 9:00", "today 18:00", "+2h", "+90m",
/// ISO 8601 ("2026-11-27T14:00Z", "2026-11-27T14:00:00+01:00"), or "2026-11-27 14:00"
/// (local). Times without a zone are local.
pub fn parse_time(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = input.trim();
    let bad = |why: &str| {
        format!(
            "cannot read {input:?} as a time: {why} (write e.g. 14:00, \"tomorrow 9:00\", +2h, \
             now, or 2026-11-27T14:00)"
        )
    };
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(rest) = s.strip_prefix('+') {
        return parse_duration(rest)
            .map(|d| now + d)
            .map_err(|e| bad(&e.to_string()));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    if let Some(rest) = s.strip_suffix('Z') {
        for fmt in ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(rest, fmt) {
                return Ok(t.and_utc());
            }
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return local(t).ok_or_else(|| bad("that local time does not exist (clock change)"));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return local(d.and_time(NaiveTime::MIN)).ok_or_else(|| bad("no such local time"));
    }
    let today = now.with_timezone(&Local).date_naive();
    let lower = s.to_ascii_lowercase();
    let (day, clock) = if let Some(rest) = lower.strip_prefix("tomorrow") {
        (today.succ_opt().unwrap_or(today), rest.trim())
    } else if let Some(rest) = lower.strip_prefix("today") {
        (today, rest.trim())
    } else {
        (today, lower.as_str())
    };
    let clock = if clock.is_empty() { "00:00" } else { clock };
    let time = NaiveTime::parse_from_str(clock, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(clock, "%H:%M:%S"))
        .or_else(|_| NaiveTime::parse_from_str(&format!("{clock}:00"), "%H:%M"))
        .map_err(|_| bad("not a time of day"))?;
    local(day.and_time(time)).ok_or_else(|| bad("that local time does not exist (clock change)"))
}

fn local(t: NaiveDateTime) -> Option<DateTime<Utc>> {
    match Local.from_local_datetime(&t) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        // In the hour repeated when clocks go back, take the first.
        LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
        LocalResult::None => None,
    }
}

/// Reads a duration ("90m", "3h", "1d"), refusing zero or negative ones.
pub fn parse_positive_duration(input: &str) -> Result<Duration, String> {
    let d = parse_duration(input).map_err(|e| e.to_string())?;
    if d <= Duration::zero() {
        return Err(format!("the duration {input:?} must be more than zero"));
    }
    Ok(d)
}

/// Reads a memory size: "40G", "40GiB", "80000M", "1T"; a bare number is GiB.
pub fn parse_memory(input: &str) -> Result<u64, String> {
    let s = input.trim().to_ascii_uppercase();
    let s = s.trim_end_matches("IB").trim_end_matches('B');
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "G"),
    };
    let shift = match unit {
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => {
            return Err(format!(
                "cannot read {input:?} as memory: use e.g. 40G or 80000M"
            ))
        }
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("cannot read {input:?} as memory: use e.g. 40G or 80000M"))?;
    if !(n > 0.0 && n < 1e6) {
        return Err(format!("memory {input:?} is out of range"));
    }
    Ok((n * (1u64 << shift) as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-26T13:07:00Z".parse().unwrap()
    }

    #[test]
    fn reads_what_people_write() {
        assert_eq!(parse_time("now", now()).unwrap(), now());
        assert_eq!(
            parse_time("+2h", now()).unwrap(),
            "2026-11-26T15:07:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_time("2026-11-27T14:00Z", now()).unwrap(),
            "2026-11-27T14:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_time("2026-11-27T14:00:00+01:00", now()).unwrap(),
            "2026-11-27T13:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_time("yesterday-ish", now()).is_err());
        assert!(parse_time("25:00", now()).is_err());
        assert!(parse_time("+forever", now()).is_err());
        // Empty is not midnight today.
        let e = parse_time("", now()).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        assert!(parse_time("  ", now()).is_err());
    }

    #[test]
    fn local_times_are_local() {
        // Whatever the zone, "tomorrow 9:00" is 9:00 on the local clock, one day on.
        let t = parse_time("tomorrow 9:00", now())
            .unwrap()
            .with_timezone(&Local);
        assert_eq!(t.format("%H:%M").to_string(), "09:00");
        let today = now().with_timezone(&Local).date_naive();
        assert_eq!(t.date_naive(), today.succ_opt().unwrap());
        let t = parse_time("14:00", now()).unwrap().with_timezone(&Local);
        assert_eq!(
            (t.date_naive(), t.format("%H:%M").to_string()),
            (today, "14:00".into())
        );
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("40G").unwrap(), 40 << 30);
        assert_eq!(parse_memory("40GiB").unwrap(), 40 << 30);
        assert_eq!(parse_memory("80000M").unwrap(), 80000 << 20);
        assert_eq!(parse_memory("80").unwrap(), 80 << 30);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("-5G").is_err());
    }
}
