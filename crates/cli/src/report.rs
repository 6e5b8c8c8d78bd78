//! `gpubook report`: GPU-hours booked, used, idle-held and released early per user (or booked,
//! used and in maintenance per GPU) over a window, as a table, JSON or CSV.

use crate::print::print_json;
use crate::targets::Server;
use crate::{output, usage, when, Failure};
use anyhow::anyhow;
use chrono::{DateTime, Duration, Utc};
use clap::{Args, ValueEnum};
use gpubook_core::report::{GpuLine, UserLine};
use gpubook_proto::{ReportRequest, ReportResponse, Request, Response};

/// The window when no --from is given: the 7 days before --to.
const DEFAULT_DAYS: i64 = 7;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// One line per user, or per GPU.
    #[arg(long, value_enum, default_value_t = By::User)]
    pub by: By,
    /// From this time (as for book's --start) [default: 7 days before --to].
    #[arg(long, allow_hyphen_values = true)]
    pub from: Option<String>,
    /// To this time [default: now].
    #[arg(long, allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Comma-separated values for spreadsheets: a header row, then one line per user or GPU,
    /// hours as decimals. (--json prints the whole report, users and GPUs, in GPU-seconds.)
    #[arg(long)]
    pub csv: bool,
}

/// What one line of the report stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum By {
    /// Per user.
    User,
    /// Per GPU.
    Gpu,
}

/// The request `a` asks for, read before any connection.
pub fn request(a: &ReportArgs, now: DateTime<Utc>) -> Result<ReportRequest, Failure> {
    let t = |s: &str| when::parse_time(s, now).map_err(usage);
    let to = a.to.as_deref().map(t).transpose()?.unwrap_or(now);
    let from = match &a.from {
        Some(s) => t(s)?,
        None => to - Duration::days(DEFAULT_DAYS),
    };
    if to <= from {
        return Err(usage(format!(
            "--to ({}) must be after --from ({})",
            output::when(to),
            output::when(from)
        )));
    }
    Ok(ReportRequest { from, to })
}

/// Runs `gpubook report` against `target`.
pub async fn run(a: &ReportArgs, target: &Server, json: bool) -> Result<(), Failure> {
    if a.csv && json {
        return Err(usage("give --csv or --json, not both".into()));
    }
    let req = request(a, Utc::now())?;
    let conn = target.connect().await?;
    let minor = conn.welcome().minor;
    if minor < 3 {
        return Err(Failure {
            code: 6,
            error: anyhow!(
                "the agent on {} speaks protocol 1.{minor}, which has no reports (1.3 on): \
                 upgrade gpubook-agent there",
                conn.welcome().server
            ),
            kind: Some(gpubook_proto::ErrorKind::Incompatible),
        });
    }
    let resp = conn
        .request(Request::Report(req))
        .await
        .map_err(anyhow::Error::from)?;
    let Response::Report(r) = resp else {
        return Err(anyhow!("unexpected answer {resp:?}").into());
    };
    if json {
        print_json(&r);
    } else if a.csv {
        print!("{}", csv(&r, a.by));
    } else {
        println!("{}", table(&r, a.by));
    }
    Ok(())
}

/// Hours from seconds, two decimals.
fn hours(secs: i64) -> String {
    format!("{:.2}", secs as f64 / 3600.0)
}

/// `used` as a percentage of `booked`, or "-" when nothing was booked.
fn percent(used: i64, booked: i64) -> String {
    if booked <= 0 {
        return "-".into();
    }
    format!("{:.0}%", used as f64 * 100.0 / booked as f64)
}

const USER_COLUMNS: [&str; 11] = [
    "USER",
    "BOOKINGS",
    "BOOKED GPU-h",
    "USED GPU-h",
    "USED",
    "IDLE-HELD GPU-h",
    "RELEASED EARLY GPU-h",
    "CANCELLED LATE",
    "NEVER USED",
    "INTRUDED ON",
    "INTRUDED",
];

const GPU_COLUMNS: [&str; 6] = ["GPU", "NAME", "BOOKED h", "USED h", "USED", "MAINTENANCE h"];

/// A user's figures, hours written by `h`.
fn user_fields(l: &UserLine, h: fn(i64) -> String) -> Vec<String> {
    vec![
        l.user.clone(),
        l.bookings.to_string(),
        h(l.booked_gpu_secs),
        h(l.used_gpu_secs),
        h(l.idle_held_gpu_secs),
        h(l.released_early_gpu_secs),
        l.cancelled_late.to_string(),
        l.never_used.to_string(),
        l.intruder_events.to_string(),
        l.intrusions_caused.to_string(),
    ]
}

/// A GPU's figures, hours written by `h`.
fn gpu_fields(g: &GpuLine, h: fn(i64) -> String) -> Vec<String> {
    vec![
        g.index.to_string(),
        g.name.clone(),
        h(g.booked_secs),
        h(g.used_secs),
        h(g.maintenance_secs),
    ]
}

/// A table row: the figures with used as a share of booked after USED.
fn user_row(l: &UserLine) -> Vec<String> {
    let mut row = user_fields(l, hours);
    row.insert(4, percent(l.used_gpu_secs, l.booked_gpu_secs));
    row
}

fn gpu_row(g: &GpuLine) -> Vec<String> {
    let mut row = gpu_fields(g, hours);
    row.insert(4, percent(g.used_secs, g.booked_secs));
    row
}

/// The sum of several users' lines, as a line named "TOTAL".
fn total(lines: &[UserLine]) -> UserLine {
    lines.iter().fold(
        UserLine {
            user: "TOTAL".into(),
            ..UserLine::default()
        },
        |mut t, l| {
            t.bookings += l.bookings;
            t.booked_gpu_secs += l.booked_gpu_secs;
            t.used_gpu_secs += l.used_gpu_secs;
            t.idle_held_gpu_secs += l.idle_held_gpu_secs;
            t.released_early_gpu_secs += l.released_early_gpu_secs;
            t.cancelled_late += l.cancelled_late;
            t.never_used += l.never_used;
            t.intruder_events += l.intruder_events;
            t.intrusions_caused += l.intrusions_caused;
            t
        },
    )
}

/// The report for people: what it covers, then the table.
pub fn table(r: &ReportResponse, by: By) -> String {
    let w = &r.report.window;
    let mut out = format!(
        "{} from {} to {}{}\n",
        r.server,
        output::when(w.start),
        output::when(w.end),
        if r.everyone {
            ""
        } else {
            " (your bookings only)"
        }
    );
    let rows: Vec<Vec<String>> = match by {
        By::User if r.report.users.is_empty() => {
            out.push_str("No GPU-hours booked in this window.");
            return out;
        }
        By::User => {
            let mut rows: Vec<_> = r.report.users.iter().map(user_row).collect();
            if r.report.users.len() > 1 {
                rows.push(user_row(&total(&r.report.users)));
            }
            rows
        }
        By::Gpu => r.report.gpus.iter().map(gpu_row).collect(),
    };
    let header: &[&str] = match by {
        By::User => &USER_COLUMNS,
        By::Gpu => &GPU_COLUMNS,
    };
    out.push_str(&output::table(header, &rows));
    if by == By::User {
        out.push_str(&format!(
            "\nGPU-h: GPU-hours. CANCELLED LATE: under {} h before the start. INTRUDED ON: \
             others' processes seen on the user's bookings; INTRUDED: the user's on others'.",
            r.report.late_cancel_hours
        ));
    }
    out
}

/// One CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV hours: four decimals, so sums in a spreadsheet stay within a second.
fn csv_hours(secs: i64) -> String {
    format!("{:.4}", secs as f64 / 3600.0)
}

/// The report as CSV: a header row, one line per user or GPU (CRLF line ends, RFC 4180).
pub fn csv(r: &ReportResponse, by: By) -> String {
    let (header, rows): (&str, Vec<Vec<String>>) = match by {
        By::User => (
            "user,bookings,booked_gpu_hours,used_gpu_hours,idle_held_gpu_hours,\
             released_early_gpu_hours,cancelled_late,never_used,intruder_events,\
             intrusions_caused",
            r.report
                .users
                .iter()
                .map(|l| user_fields(l, csv_hours))
                .collect(),
        ),
        By::Gpu => (
            "gpu,uuid,name,booked_hours,used_hours,maintenance_hours",
            r.report
                .gpus
                .iter()
                .map(|g| {
                    let mut row = gpu_fields(g, csv_hours);
                    row.insert(1, g.uuid.0.clone());
                    row
                })
                .collect(),
        ),
    };
    let mut out = format!("{header}\r\n");
    for r in rows {
        let fields: Vec<String> = r.iter().map(|f| csv_field(f)).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
