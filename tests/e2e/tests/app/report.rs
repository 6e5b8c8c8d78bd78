//! The Reports page and "News while away", in the real app against the real agent:
//! - the page draws GPU-hours per user and per GPU per week; the series read back from the
//!   drawn bars (their `data-secs`) equal what `gpubook report --json` answers for each week,
//!   and the table's lines what it answers for the whole window; screenshots of both charts;
//! - the person's webhook target set through the app's command is what `gpubook notify show`
//!   reads from the agent, a bad address is refused typed, the Settings section shows it
//!   (screenshot), and clearing removes it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use gpubook_e2e::*;
use serde_json::{json, Value};

/// One drawn chart: its series key and, per week `(start, end)`, its bars' GPU-seconds.
type Drawn = BTreeMap<String, Vec<((String, String), [i64; 3])>>;

/// What the page shows for `by` ("user" or "gpu"): the window and every chart's bars.
fn drawn(d: &Driver, by: &str) -> Option<(String, String, Drawn)> {
    let v = d.exec(
        "const r = document.querySelector('[data-testid=report]');
         if (!r || r.dataset.loading !== 'false' || r.dataset.server !== 'local' || !r.dataset.from) return null;
         const charts = [...document.querySelectorAll('[data-testid=report-chart]')];
         if (charts.some(c => c.dataset.by !== arguments[0])) return null;
         const secs = (g, k) => { const e = g.querySelector(`[data-kind=${k}]`); return e ? Number(e.dataset.secs) : 0; };
         return {from: r.dataset.from, to: r.dataset.to, charts: charts.map(c => ({key: c.dataset.series,
           points: [...c.querySelectorAll('g[data-start]')].map(g => [g.dataset.start, g.dataset.end,
             secs(g, 'booked'), secs(g, 'used'), secs(g, 'maintenance')])}))};",
        json!([by]),
    );
    if v.is_null() {
        return None;
    }
    let mut out = Drawn::new();
    for c in v["charts"].as_array()? {
        let pts = c["points"]
            .as_array()?
            .iter()
            .map(|p| {
                let s = |i: usize| p[i].as_str().unwrap_or_default().to_string();
                let n = |i: usize| p[i].as_i64().unwrap_or(-1);
                ((s(0), s(1)), [n(2), n(3), n(4)])
            })
            .collect();
        out.insert(c["key"].as_str()?.to_string(), pts);
    }
    Some((
        v["from"].as_str()?.to_string(),
        v["to"].as_str()?.to_string(),
        out,
    ))
}

/// The same series computed from the CLI's reports, one per week of `weeks`.
fn expected(report: &dyn Fn(&str, &str) -> Value, weeks: &[(String, String)], by: &str) -> Drawn {
    let mut out = Drawn::new();
    let per_week: Vec<Value> = weeks.iter().map(|(a, b)| report(a, b)).collect();
    let keys: std::collections::BTreeSet<String> = per_week
        .iter()
        .flat_map(|r| {
            let lines = r["report"][if by == "user" { "users" } else { "gpus" }]
                .as_array()
                .cloned()
                .unwrap_or_default();
            lines.into_iter().map(|l| {
                l[if by == "user" { "user" } else { "uuid" }]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
        })
        .collect();
    for key in keys {
        let pts = weeks
            .iter()
            .zip(&per_week)
            .map(|(w, r)| {
                let n = |l: &Value, f: &str| l[f].as_i64().unwrap_or(0);
                let figures = if by == "user" {
                    let l = r["report"]["users"]
                        .as_array()
                        .and_then(|a| a.iter().find(|l| l["user"] == key.as_str()).cloned())
                        .unwrap_or(Value::Null);
                    [n(&l, "booked_gpu_secs"), n(&l, "used_gpu_secs"), 0]
                } else {
                    let l = r["report"]["gpus"]
                        .as_array()
                        .and_then(|a| a.iter().find(|l| l["uuid"] == key.as_str()).cloned())
                        .unwrap_or(Value::Null);
                    [
                        n(&l, "booked_secs"),
                        n(&l, "used_secs"),
                        n(&l, "maintenance_secs"),
                    ]
                };
                (w.clone(), figures)
            })
            .collect();
        out.insert(key, pts);
    }
    out
}

/// Opens the Reports page on server "local" and checks both charts against `report`, the
/// CLI's `report --from A --to B --json` on the same agent. Screenshots go to `shots`.
pub fn check_report_page(d: &Driver, report: &dyn Fn(&str, &str) -> Value, shots: &Path) {
    // A job's use is recorded when its slot ends: wait for one (the ticker ends in about
    // 30 s), so the "used" series is drawn with something in it, not only zeros.
    let around = |days: i64| {
        (chrono::Utc::now() + chrono::Duration::days(days))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    until("a booking's recorded use in the report", 120, || {
        let r = report(&around(-30), &around(30));
        r["report"]["users"]
            .as_array()?
            .iter()
            .any(|u| u["used_gpu_secs"].as_i64() > Some(0))
            .then_some(())
    });
    d.click(&d.wait_for("[data-testid=\"nav-report\"]", 5));
    d.wait_for("[data-testid=\"report-server\"]", 10);
    d.exec(
        "const s = document.querySelector('[data-testid=report-server]'); s.value = 'local';
         s.dispatchEvent(new Event('change'));",
        json!([]),
    );
    for by in ["user", "gpu"] {
        d.click(&d.wait_for(&format!("[data-testid=\"report-by-{by}\"]"), 5));
        // The figures may move while a job ends (a release gives back the rest of its slot):
        // what is drawn must equal the CLI's answer for the same weeks at some reading.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let (from, to, got) = loop {
            let now = drawn(d, by);
            let (from, to, got) = match now {
                Some(x) => x,
                None if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(300));
                    continue;
                }
                None => panic!("the {by} charts were never drawn"),
            };
            let weeks: Vec<(String, String)> = got
                .values()
                .next()
                .map(|p| p.iter().map(|(w, _)| w.clone()).collect())
                .unwrap_or_default();
            let want = expected(report, &weeks, by);
            if got == want && !got.is_empty() {
                break (from, to, got);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the {by} charts differ from the CLI:\ndrawn {got:?}\nCLI   {want:?}"
            );
            // Read again: leave the page and come back.
            d.click(&d.wait_for("[data-testid=\"nav-gpus\"]", 5));
            d.click(&d.wait_for("[data-testid=\"nav-report\"]", 5));
            d.exec(
                "const s = document.querySelector('[data-testid=report-server]'); if (s) { s.value = 'local'; s.dispatchEvent(new Event('change')); }",
                json!([]),
            );
            d.click(&d.wait_for(&format!("[data-testid=\"report-by-{by}\"]"), 5));
            std::thread::sleep(Duration::from_millis(500));
        };
        // The weeks cover the window without a gap, four of them by default.
        let weeks: Vec<(String, String)> = got
            .values()
            .next()
            .unwrap()
            .iter()
            .map(|(w, _)| w.clone())
            .collect();
        assert_eq!(weeks.len(), 4, "{weeks:?}");
        assert_eq!(weeks[0].0, from);
        assert_eq!(weeks[3].1, to);
        assert!(weeks.windows(2).all(|w| w[0].1 == w[1].0), "{weeks:?}");
        let sum = |i: usize| -> i64 { got.values().flatten().map(|(_, f)| f[i]).sum() };
        eprintln!(
            "report by {by} drawn as the CLI reports it: {} series over {} weeks, {} GPU-s booked, {} used",
            got.len(),
            got.values().next().map_or(0, Vec::len),
            sum(0),
            sum(1)
        );
        assert!(
            sum(0) > 0 && sum(1) > 0,
            "nothing booked or used drawn: {got:?}"
        );
        if by == "gpu" {
            assert_eq!(got.len(), 4, "one chart per simulated GPU: {got:?}");
        } else {
            assert!(got.contains_key("root"), "the admin's own line: {got:?}");
        }
        // The table: the whole window, as the CLI reports it.
        let whole = report(&from, &to);
        let rows = d.exec(
            "return [...document.querySelectorAll('[data-testid=report-table] tbody tr[data-booked-secs]')]
               .map(r => [r.dataset.user || r.dataset.gpu, Number(r.dataset.bookedSecs), Number(r.dataset.usedSecs)])",
            json!([]),
        );
        let lines = &whole["report"][if by == "user" { "users" } else { "gpus" }];
        let want: Vec<Value> = lines
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                if by == "user" {
                    json!([l["user"], l["booked_gpu_secs"], l["used_gpu_secs"]])
                } else {
                    json!([l["uuid"], l["booked_secs"], l["used_secs"]])
                }
            })
            .collect();
        assert_eq!(
            rows,
            json!(want),
            "the table against the CLI's whole window"
        );
        assert_eq!(
            whole["everyone"], true,
            "root is the agent's admin: {whole}"
        );
        std::thread::sleep(Duration::from_millis(300));
        d.screenshot(&shots.join(format!("report-by-{by}.png")));
    }
}

/// Sets a webhook through the app's command, reads it back with `notify_show` (the CLI's
/// `notify show --json` through `show`), shows it in Settings and clears it.
pub fn check_news_while_away(
    d: &Driver,
    invoke: &dyn Fn(&str, Value) -> Value,
    show: &dyn Fn() -> Value,
    shots: &Path,
) {
    let url = "http://127.0.0.1:9/hooks/e2e-secret";
    let target = json!({"channel": "webhook", "url": url, "format": "json", "kinds": ["job_finished", "job_failed"]});
    let set = invoke(
        "notify_set",
        json!({"server": "local", "targets": [target]}),
    );
    assert_eq!(set["ok"]["targets"][0]["url"], url, "{set}");
    let cli = show();
    assert_eq!(cli["targets"][0]["url"], url, "the agent keeps it: {cli}");
    assert_eq!(
        cli["targets"][0]["kinds"],
        json!(["job_finished", "job_failed"])
    );
    // A bad address is refused, typed, and what was kept stays.
    let bad = invoke(
        "notify_set",
        json!({"server": "local", "targets": [{"channel": "email", "address": "me@", "kinds": ["job_finished"]}]}),
    );
    assert_eq!(bad["err"]["kind"], "invalid", "{bad}");
    assert_eq!(show()["targets"][0]["url"], url);
    // Settings shows it for "local".
    d.click(&d.wait_for("[data-testid=\"nav-settings\"]", 5));
    d.wait_for("[data-testid=\"away-server\"]", 10);
    d.exec(
        "const s = document.querySelector('[data-testid=away-server]'); s.value = 'local';
         s.dispatchEvent(new Event('change'));",
        json!([]),
    );
    until("the webhook in Settings", 10, || {
        let v = d.exec(
            "return [...document.querySelectorAll('[data-testid=away-target] [data-testid=away-to]')].map(i => i.value)",
            json!([]),
        );
        (v == json!([url])).then_some(())
    });
    d.exec(
        "document.querySelector('[data-testid=news-away]').scrollIntoView()",
        json!([]),
    );
    std::thread::sleep(Duration::from_millis(300));
    d.screenshot(&shots.join("settings-news-while-away.png"));
    let cleared = invoke("notify_clear", json!({"server": "local"}));
    assert_eq!(cleared["ok"]["targets"], json!([]), "{cleared}");
    assert_eq!(show()["targets"], json!([]));
}
