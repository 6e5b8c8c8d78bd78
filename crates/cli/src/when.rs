//! Times and sizes as people write them, read in the local time zone and turned into UTC.

use chrono::{
    DateTime, Duration, Local, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use gpubook_core::duration::parse_duration;

/// How to write a time, for error messages and the help.
pub const TIME_FORMS: &str = "14:00, 9am, \"tomorrow 9:00\", \"fri 14:00\", \"next tuesday 9am\", \
                              \"in 2h\", +2h, -1h, now, or 2026-11-27T14:00";

/// Reads a time. Kept exactly as before: "now", "14:00", "9:30", "tomorrow 9:00",
/// "today 18:00", "+2h", "+90m", ISO 8601 ("2026-11-27T14:00Z", "2026-11-27T14:00:00+01:00"),
/// and "2026-11-27 14:00" (local). Added: "-1h" (that long ago), "in 2h", and the phrases
/// people type, read by `interim`: "9am", "fri 14:00", "next tuesday 9am" (the coming Tuesday,
/// as "tuesday"), "monday at 9:30pm", "dec 3 10:00", "1h ago". Times without a zone are local.
/// Refused: clock times that do not exist ("25:00" is not 1:00 tomorrow) and dates with
/// slashes ("1/12" is a different day in different countries).
pub fn parse_time(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = input.trim();
    let bad =
        |why: &str| format!("cannot read {input:?} as a time: {why} (write e.g. {TIME_FORMS})");
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
    if let Some(rest) = s.strip_prefix('-') {
        return parse_duration(rest)
            .map(|d| now - d)
            .map_err(|e| bad(&e.to_string()));
    }
    let lower = s.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("in ") {
        if let Ok(d) = parse_duration(rest.trim()) {
            return Ok(now + d);
        }
    }
    if let Some(t) = iso(s).map_err(&bad)? {
        return Ok(t);
    }
    if s.contains('/') {
        return Err(bad(
            "a date with slashes is read differently from country to country; write \
             2026-12-01 or \"dec 1\"",
        ));
    }
    if let Some(t) = day_and_clock(&lower, now) {
        return t.ok_or_else(|| bad("that local time does not exist (clock change)"));
    }
    // A clock time that is not one ("25:00") is refused, not carried into the next day.
    for word in lower.split_whitespace() {
        let clock = word.trim_end_matches("am").trim_end_matches("pm");
        if clock.contains(':') && clock_time(clock).is_none() {
            return Err(bad("not a time of day"));
        }
    }
    let phrase = lower.replace(" at ", " ");
    interim::parse_date_string(&phrase, now.with_timezone(&Local), interim::Dialect::Us)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| bad(&e.to_string()))
}

/// ISO 8601 and "2026-11-27 14:00": `Ok(None)` when `s` is not written so.
fn iso(s: &str) -> Result<Option<DateTime<Utc>>, &'static str> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Ok(Some(t.with_timezone(&Utc)));
        }
    }
    if let Some(rest) = s.strip_suffix('Z') {
        for fmt in ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(rest, fmt) {
                return Ok(Some(t.and_utc()));
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
            return local(t)
                .map(Some)
                .ok_or("that local time does not exist (clock change)");
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return local(d.and_time(NaiveTime::MIN))
            .map(Some)
            .ok_or("no such local time");
    }
    Ok(None)
}

/// "14:00", "9", "today 18:00", "tomorrow 9:00", "tomorrow" (midnight): `None` when `lower`
/// is not written so; `Some(None)` for a local time a clock change skips.
fn day_and_clock(lower: &str, now: DateTime<Utc>) -> Option<Option<DateTime<Utc>>> {
    let today = now.with_timezone(&Local).date_naive();
    let (day, clock) = if let Some(rest) = lower.strip_prefix("tomorrow") {
        (today.succ_opt().unwrap_or(today), rest.trim())
    } else if let Some(rest) = lower.strip_prefix("today") {
        (today, rest.trim())
    } else {
        (today, lower)
    };
    let clock = if clock.is_empty() { "00:00" } else { clock };
    let time = clock_time(clock).or_else(|| clock_time(&format!("{clock}:00")))?;
    Some(local(day.and_time(time)))
}

/// "14:00" or "14:00:30".
fn clock_time(clock: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(clock, "%H:%M")
        .or_else(|_| NaiveTime::parse_from_str(clock, "%H:%M:%S"))
        .ok()
}

fn local(t: NaiveDateTime) -> Option<DateTime<Utc>> {
    match Local.from_local_datetime(&t) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        // In the hour repeated when clocks go back, take the first.
        LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
        LocalResult::None => None,
    }
}

/// Reads a length ("90m", "3h", "1d"), refusing zero or negative ones with what is wrong.
pub fn parse_positive_duration(input: &str) -> Result<Duration, String> {
    if let Some(rest) = input.trim().strip_prefix('-') {
        if parse_duration(rest).is_ok() {
            return Err(format!(
                "the length {input:?} is negative: give how long, e.g. 1h or 90m"
            ));
        }
    }
    let d = parse_duration(input).map_err(|e| e.to_string())?;
    if d <= Duration::zero() {
        return Err(format!("the length {input:?} must be more than zero"));
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

    /// `t` in the local zone: its weekday, its clock, and how many days after today it falls.
    fn local_day(t: DateTime<Utc>) -> (chrono::Weekday, String, i64) {
        use chrono::Datelike;
        let t = t.with_timezone(&Local);
        let today = now().with_timezone(&Local).date_naive();
        (
            t.weekday(),
            t.format("%H:%M").to_string(),
            (t.date_naive() - today).num_days(),
        )
    }

    #[test]
    fn reads_the_phrases_people_type_in_local_time() {
        use chrono::Weekday::*;
        let at = |s: &str| local_day(parse_time(s, now()).unwrap_or_else(|e| panic!("{e}")));
        // "next tuesday" is the coming one, as "tuesday" is: within the next seven days (today
        // when that time is still to come).
        for (phrase, day, clock) in [
            ("next tuesday 9am", Tue, "09:00"),
            ("tuesday 9am", Tue, "09:00"),
            ("fri 14:00", Fri, "14:00"),
            ("Friday 2pm", Fri, "14:00"),
            ("monday at 9:30pm", Mon, "21:30"),
        ] {
            let (d, c, ahead) = at(phrase);
            assert_eq!((d, c.as_str()), (day, clock), "{phrase}");
            assert!((0..=7).contains(&ahead), "{phrase} is {ahead} days ahead");
        }
        let (_, clock, ahead) = at("tomorrow 9am");
        assert_eq!((clock.as_str(), ahead), ("09:00", 1));
        let (_, clock, ahead) = at("tomorrow 9:00");
        assert_eq!((clock.as_str(), ahead), ("09:00", 1));
        let (_, clock, ahead) = at("9am");
        assert_eq!((clock.as_str(), ahead), ("09:00", 0));
        let t = parse_time("dec 3 10:00", now())
            .unwrap()
            .with_timezone(&Local);
        assert_eq!(t.format("%m-%d %H:%M").to_string(), "12-03 10:00");
        // Lengths from now, either way.
        let h = Duration::hours;
        assert_eq!(parse_time("in 2h", now()).unwrap(), now() + h(2));
        assert_eq!(
            parse_time("in 1h30m", now()).unwrap(),
            now() + Duration::minutes(90)
        );
        assert_eq!(parse_time("-1h", now()).unwrap(), now() - h(1));
        assert_eq!(parse_time("1h ago", now()).unwrap(), now() - h(1));
        // Refused, with what to write instead.
        for (wrong, why) in [
            ("1/12 9:00", "slashes"),
            ("fri 25:00", "not a time of day"),
            ("25:00", "not a time of day"),
            ("next blursday", "write e.g."),
            ("-forever", "write e.g."),
        ] {
            let e = parse_time(wrong, now()).unwrap_err();
            assert!(e.contains(why) && e.contains(wrong), "{wrong}: {e}");
        }
    }

    #[test]
    fn a_negative_length_says_so() {
        let e = parse_positive_duration("-1h").unwrap_err();
        assert!(e.contains("negative"), "{e}");
        assert!(parse_positive_duration("0m")
            .unwrap_err()
            .contains("more than zero"));
        assert_eq!(
            parse_positive_duration("1h30m").unwrap(),
            Duration::minutes(90)
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
