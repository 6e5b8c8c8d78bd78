//! `gpubook maintenance`: an admin takes GPUs (`--gpu 2,3`) or the whole server (`--all`) out
//! of service for a period; `maintenance ls` lists the periods, `maintenance end ID` ends one
//! now (or withdraws one that has not started; also how a GPU the agent took out for a fault
//! is put back). Bookings in the way are moved or cancelled by the agent, and each is printed.

use crate::print::print_json;
use crate::targets::Server;
use crate::{output, usage, when, Failure};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use gpubook_core::{Gpu, Maintenance, MaintenanceCause, MaintenanceId};
use gpubook_proto::{MaintenanceRequest, MaintenanceResponse, Request, Response};

/// The protocol minor that has maintenance.
const MINOR: u32 = 4;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MaintenanceArgs {
    #[command(subcommand)]
    pub action: Option<Action>,
    #[command(flatten)]
    pub create: CreateArgs,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// The periods that have not ended.
    Ls {
        /// Also the ones that have.
        #[arg(long)]
        past: bool,
    },
    /// End one now, or withdraw it if it has not started (admins): its GPUs can be booked
    /// again. Puts back a GPU the agent took out of service for a fault.
    End {
        /// Its number, as `ls` shows it (m3, or 3).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// GPUs by index or UUID (repeat, or comma-separate).
    #[arg(long = "gpu", value_delimiter = ',', conflicts_with = "all")]
    pub gpus: Vec<String>,
    /// The whole server.
    #[arg(long)]
    pub all: bool,
    /// Start, as for book: "sat 8:00", 14:00, "in 2h", now, 2026-11-27T14:00.
    #[arg(long, allow_hyphen_values = true)]
    pub start: Option<String>,
    /// End (written as --start).
    #[arg(long, conflicts_with = "for", allow_hyphen_values = true)]
    pub end: Option<String>,
    /// Length: 90m, 4h, 1d.
    #[arg(long = "for", allow_hyphen_values = true)]
    pub r#for: Option<String>,
    /// Why, for the people whose bookings move ("driver 570").
    #[arg(long)]
    pub reason: Option<String>,
}

/// The request `a` asks for, read before any connection: a typo is a usage error.
pub fn request(a: &MaintenanceArgs, now: DateTime<Utc>) -> Result<MaintenanceRequest, Failure> {
    match &a.action {
        Some(Action::Ls { past }) => Ok(MaintenanceRequest::List {
            include_past: *past,
        }),
        Some(Action::End { id }) => {
            let n = id.trim().trim_start_matches(['m', 'M']);
            let n: u64 = n.parse().map_err(|_| {
                usage(format!(
                    "{id:?} is not a maintenance number (as `gpubook maintenance ls` shows it: \
                     m3, or 3)"
                ))
            })?;
            Ok(MaintenanceRequest::End {
                id: MaintenanceId(n),
            })
        }
        None => {
            let c = &a.create;
            if c.gpus.is_empty() && !c.all {
                return Err(usage(
                    "name the GPUs (--gpu 2,3) or the whole server (--all); or list the \
                     periods with `gpubook maintenance ls`"
                        .into(),
                ));
            }
            let start = c
                .start
                .as_deref()
                .ok_or_else(|| usage("maintenance needs --start (\"sat 8:00\", now)".into()))?;
            let start = when::parse_time(start, now).map_err(usage)?;
            let end = match (&c.end, &c.r#for) {
                (Some(e), _) => when::parse_time(e, now).map_err(usage)?,
                (None, Some(d)) => start + when::parse_positive_duration(d).map_err(usage)?,
                (None, None) => return Err(usage("maintenance needs --for 4h or --end".into())),
            };
            if end <= start {
                return Err(usage(format!(
                    "the end ({}) must be after the start ({})",
                    output::when(end),
                    output::when(start)
                )));
            }
            let reason = c.reason.clone().unwrap_or_default();
            if reason.trim().is_empty() {
                return Err(usage(
                    "maintenance needs --reason: the people whose bookings move are told it".into(),
                ));
            }
            Ok(MaintenanceRequest::Create {
                gpus: (!c.all).then(|| c.gpus.clone()),
                start,
                end,
                reason,
            })
        }
    }
}

/// Runs `gpubook maintenance` against `target`.
pub async fn run(a: &MaintenanceArgs, target: &Server, json: bool) -> Result<(), Failure> {
    let req = request(a, Utc::now())?;
    let conn = target.connect().await?;
    let minor = conn.welcome().minor;
    if minor < MINOR {
        return Err(Failure {
            code: 6,
            error: anyhow!(
                "the agent on {} speaks protocol 1.{minor}, which has no maintenance (1.{MINOR} \
                 on): upgrade gpubook-agent there",
                conn.welcome().server
            ),
            kind: Some(gpubook_proto::ErrorKind::Incompatible),
        });
    }
    let known = crate::commands::gpus(&conn).await.unwrap_or_default();
    let listing = matches!(req, MaintenanceRequest::List { .. });
    let ending = matches!(req, MaintenanceRequest::End { .. });
    let resp = conn
        .request(Request::Maintenance(req))
        .await
        .map_err(anyhow::Error::from)?;
    let Response::Maintenance(r) = resp else {
        return Err(anyhow!("unexpected answer {resp:?}").into());
    };
    if json {
        print_json(&r);
    } else if listing {
        print_list(&r, &known);
    } else {
        print_change(&r, &known, ending);
    }
    Ok(())
}

fn print_list(r: &MaintenanceResponse, known: &[Gpu]) {
    if r.maintenance.is_empty() {
        println!("No maintenance on {}.", r.server);
        return;
    }
    let rows: Vec<Vec<String>> = r
        .maintenance
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                gpus(m, known),
                output::when(m.interval.start),
                until(m),
                m.by.clone(),
                m.reason.clone(),
            ]
        })
        .collect();
    println!(
        "{}",
        output::table(&["ID", "GPUS", "FROM", "UNTIL", "BY", "REASON"], &rows)
    );
}

fn print_change(r: &MaintenanceResponse, known: &[Gpu], ending: bool) {
    match (r.maintenance.first(), ending) {
        (Some(m), false) => println!(
            "Maintenance {} on {}: {} out of service from {} until {} ({}).",
            m.id,
            r.server,
            gpus(m, known),
            output::when(m.interval.start),
            until(m),
            m.reason
        ),
        (Some(m), true) => println!(
            "Maintenance {} on {} ended at {}: {} can be booked again.",
            m.id,
            r.server,
            output::when(m.interval.end),
            gpus(m, known)
        ),
        (None, _) => println!("Maintenance withdrawn on {}.", r.server),
    }
    for b in &r.changed {
        let what = match b.state {
            gpubook_core::BookingState::Cancelled => "cancelled (nothing fitted in time)",
            gpubook_core::BookingState::Active => "now ends at the maintenance's start",
            gpubook_core::BookingState::Ended => "ended",
            _ => "moved",
        };
        println!(
            "  booking {} by {} {what}: {}",
            b.id,
            b.owner,
            output::booking_line(b, known)
        );
    }
}

fn gpus(m: &Maintenance, known: &[Gpu]) -> String {
    if m.whole_server {
        "all GPUs".into()
    } else {
        format!("GPU {}", output::gpu_list(&m.gpus, known))
    }
}

fn until(m: &Maintenance) -> String {
    if m.cause == MaintenanceCause::Fault {
        "an admin ends it (fault)".into()
    } else {
        output::when(m.interval.end)
    }
}
