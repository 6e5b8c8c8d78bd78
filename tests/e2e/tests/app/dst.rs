//! The timeline across a DST change, in the real app started in a zone that has one
//! (TZ=Europe/Berlin: the app shows times in the zone of its process, as a person's desktop
//! session sets it). The app has no clock to set, so the test books, through the CLI, a slot
//! on the next change in Berlin (the last Sunday of March, 01:00 UTC) and goes to that day
//! with the calendar's own "Go to date" field, as a person would:
//! - 00:00–04:00 UTC is 01:00 CET – 06:00 CEST: the block reads "01:00–06:00" and is 4 hours
//!   of pixels wide (not the 5 its wall-clock times span);
//! - the day of the change is 23 hours wide, and its 06 mark is 5 hours after its 00 mark;
//! - the block's tooltip gives the same local times. A screenshot: dst-berlin.png.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc, Weekday};
use gpubook_e2e::*;
use serde_json::{json, Value};

/// The next start of summer time in the EU after `now`: the last Sunday of March, 01:00 UTC.
pub fn next_eu_spring_forward(now: DateTime<Utc>) -> DateTime<Utc> {
    for year in now.year()..now.year() + 2 {
        let mut d = NaiveDate::from_ymd_opt(year, 3, 31).unwrap();
        while d.weekday() != Weekday::Sun {
            d = d.pred_opt().unwrap();
        }
        let t = Utc.from_utc_datetime(&d.and_hms_opt(1, 0, 0).unwrap());
        if t > now + chrono::Duration::days(1) {
            return t;
        }
    }
    unreachable!("a last Sunday of March within two years")
}

/// Checks the calendar of the session `d` (the app started with TZ=Europe/Berlin) around the
/// DST change `change`, where booking `id` holds GPU 0 of "local" from an hour before it for
/// four hours. Screenshots go to `shots`.
pub fn check_timeline_across_dst(d: &Driver, change: DateTime<Utc>, id: u64, shots: &Path) {
    let zone = d.exec(
        "return Intl.DateTimeFormat().resolvedOptions().timeZone",
        json!([]),
    );
    assert_eq!(zone, "Europe/Berlin", "the app's zone");
    // The Saturday before, in Berlin: the 72-hour view then holds Saturday to Tuesday.
    let saturday = (change - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    d.exec(
        "const i = document.querySelector('[data-testid=go-to-date]'); i.value = arguments[0]; i.dispatchEvent(new Event('change', {bubbles: true}));",
        json!([saturday]),
    );
    d.click(&d.wait_for("[data-testid=\"zoom-fit\"]", 5));
    let block = format!("[data-testid=\"booking\"][data-booking-id=\"{id}\"]");
    d.wait_for(&block, 20);
    std::thread::sleep(Duration::from_millis(500));
    let v = until("the block across the DST change", 10, || {
        let v = d.exec(
            "const b = document.querySelector(arguments[0]); if (!b) return null;
             const outer = b.closest('.tl-block').getBoundingClientRect();
             const px = Number(document.querySelector('[data-px-per-hour]').dataset.pxPerHour);
             const day = [...document.querySelectorAll('[data-testid=day-head]')].find(e => Number(e.dataset.start) <= arguments[1] && arguments[1] < Number(e.dataset.end));
             const marks = [...document.querySelectorAll('[data-testid=hour-mark]')].filter(e => day && Number(e.dataset.t) >= Number(day.dataset.start) && Number(e.dataset.t) < Number(day.dataset.end));
             const at = (l) => { const m = marks.find(e => e.textContent === l); return m ? m.getBoundingClientRect().left : null; };
             return {px, width: outer.width, time: b.querySelector('.ev-time')?.textContent ?? null, aria: b.getAttribute('aria-label'),
                     title: document.querySelector('[data-testid=range-title]').textContent,
                     day: day ? {label: day.textContent.trim(), hours: (Number(day.dataset.end) - Number(day.dataset.start)) / 3600000, width: day.getBoundingClientRect().width} : null,
                     marks: marks.map(e => e.textContent), m00: at('00'), m06: at('06')};",
            json!([block, change.timestamp_millis()]),
        );
        (!v.is_null() && !v["day"].is_null()).then_some(v)
    });
    println!("across the DST change in Europe/Berlin: {v}");
    let px = v["px"].as_f64().unwrap();
    let near = |a: &Value, b: f64, what: &str| {
        let a = a.as_f64().unwrap_or_else(|| panic!("{what}: {v}"));
        assert!((a - b).abs() <= 1.5, "{what}: {a} px, not {b} px: {v}");
    };
    assert_eq!(
        v["time"], "01:00\u{2013}06:00",
        "the block's local times: {v}"
    );
    near(
        &v["width"],
        4.0 * px - 1.0,
        "the block is its 4 real hours wide",
    );
    assert_eq!(v["day"]["hours"], 23.0, "{v}");
    near(
        &v["day"]["width"],
        23.0 * px,
        "the day of the change is 23 hours wide",
    );
    let gap = v["m06"].as_f64().unwrap() - v["m00"].as_f64().unwrap();
    assert!(
        (gap - 5.0 * px).abs() <= 1.5,
        "06:00 is 5 real hours after 00:00 that day: {gap} px at {px} px/h: {v}"
    );
    // The tooltip (the block is narrow when fitted) says the same local times.
    d.exec(
        "document.querySelector(arguments[0]).dispatchEvent(new PointerEvent('pointerover', {bubbles: true}));",
        json!([block]),
    );
    let tip = until("the tooltip of the block across the change", 5, || {
        d.exec(
            "const t = document.querySelector('[data-testid=block-tip]'); return t && t.textContent;",
            json!([]),
        )
        .as_str()
        .map(str::to_string)
    });
    assert!(tip.contains("01:00\u{2013}06:00"), "the tooltip: {tip}");
    println!("its tooltip: {tip}");
    d.screenshot(&shots.join("dst-berlin.png"));
}
