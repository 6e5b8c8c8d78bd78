//! Every argument read into the request it asks for, before any connection: a typo is a
//! usage error, never half a request.

use crate::args::{BookArgs, Command};
use crate::{suggest, usage, when, Failure};
use chrono::{DateTime, Utc};
use gpubook_core::BookingId;
use gpubook_proto::{
    ApproveRequest, BookRequest, CancelRequest, DenyRequest, ExtendRequest, GpuChoice, GpusRequest,
    ListRequest, MoveRequest, PolicyRequest, ReleaseRequest, Request, WhenChoice,
};

pub fn build_request(cmd: &Command, now: DateTime<Utc>) -> Result<Option<Request>, Failure> {
    let t = |s: &str| when::parse_time(s, now).map_err(usage);
    let d = |s: &str| when::parse_positive_duration(s).map_err(usage);
    Ok(Some(match cmd {
        Command::Whoami
        | Command::Servers(_)
        | Command::Watch { .. }
        | Command::Logs { .. }
        | Command::Wait { .. }
        | Command::Usage { .. }
        | Command::Env { .. }
        | Command::Shell { .. }
        | Command::Ics(_)
        | Command::Feed(_)
        | Command::Caldav(_) => return Ok(None),
        // Read by report::run, which prints by its own flags.
        Command::Report(a) => return crate::report::request(a, now).map(|_| None),
        // Read by notify::run, which may ask twice (set --add).
        Command::Notify(a) => {
            if let crate::notify::NotifyCommand::Set(s) = &a.command {
                crate::notify::targets(s)?;
            }
            return Ok(None);
        }
        // Read by maintenance::run, which prints by its own action.
        Command::Maintenance(a) => return crate::maintenance::request(a, now).map(|_| None),
        Command::Run(a) => {
            if a.job.command.is_empty() {
                return Err(usage("gpubook run needs a command after --".into()));
            }
            book_request(a, now)?
        }
        Command::Gpus { .. } => Request::Gpus(GpusRequest {}),
        Command::Policy => Request::Policy(PolicyRequest {}),
        Command::Ls(a) => {
            let range = match (&a.from, &a.to) {
                (None, None) => None,
                (from, to) => {
                    let start = from.as_deref().map(t).transpose()?.unwrap_or(now);
                    let end = match to {
                        Some(s) => t(s)?,
                        None => start + chrono::Duration::days(3650),
                    };
                    Some(
                        gpubook_core::Interval::new(start, end)
                            .ok_or_else(|| usage("--to must be after --from".into()))?,
                    )
                }
            };
            Request::List(ListRequest {
                range,
                mine: a.mine,
                include_past: a.past,
                after: None,
            })
        }
        Command::Book(a) => book_request(a, now)?,
        Command::Cancel { id } => Request::Cancel(CancelRequest { id: BookingId(*id) }),
        Command::Release { id } => Request::Release(ReleaseRequest { id: BookingId(*id) }),
        Command::Approve { id, rev } => Request::Approve(ApproveRequest {
            id: BookingId(*id),
            rev: *rev,
        }),
        Command::Deny { id, reason, rev } => Request::Deny(DenyRequest {
            id: BookingId(*id),
            reason: reason.clone(),
            rev: *rev,
        }),
        Command::Extend { id, to, by } => Request::Extend(ExtendRequest {
            id: BookingId(*id),
            end: match (to, by) {
                (Some(to), _) => t(to)?,
                // "--by" counts from the booking's current end, which `run` looks up; here
                // the duration is only checked.
                (None, Some(by)) => DateTime::<Utc>::UNIX_EPOCH + d(by)?,
                (None, None) => return Err(usage("give --to or --by".into())),
            },
        }),
        Command::Move {
            id,
            start,
            end,
            r#for,
            gpu,
        } => {
            if suggest::is_auto(r#for.as_deref()) {
                return Err(usage(
                    "move takes the new length you give (--for 3h, or --end): --for auto is \
                     for book and run, where the command it runs is known"
                        .into(),
                ));
            }
            // Only new GPUs: the times stay, which `run` looks up (the epoch marks them here).
            let (start, end) = match (start, end, r#for) {
                (None, None, None) if gpu.is_some() => {
                    (DateTime::<Utc>::UNIX_EPOCH, DateTime::<Utc>::UNIX_EPOCH)
                }
                (None, _, _) => return Err(usage("give --start with --end or --for".into())),
                (Some(s), Some(e), _) => (t(s)?, t(e)?),
                (Some(s), None, Some(f)) => {
                    let s = t(s)?;
                    (s, s + d(f)?)
                }
                (Some(_), None, None) => return Err(usage("give --end or --for".into())),
            };
            Request::Move(MoveRequest {
                id: BookingId(*id),
                start,
                end,
                gpus: gpu.clone(),
            })
        }
    }))
}

pub fn book_request(a: &BookArgs, now: DateTime<Utc>) -> Result<Request, Failure> {
    let t = |s: &str| when::parse_time(s, now).map_err(usage);
    let auto = suggest::is_auto(a.r#for.as_deref());
    if auto && a.job.command.is_empty() {
        return Err(usage(suggest::needs_command()));
    }
    // `--for auto`: no length yet; the server's suggestion fills it in once connected.
    let d = |s: &str| {
        if auto {
            Ok(suggest::placeholder())
        } else {
            when::parse_positive_duration(s).map_err(usage)
        }
    };
    let gpus = match a.count {
        Some(count) if a.node.is_some() => GpuChoice::OnNode {
            node: a.node.clone().unwrap_or_default(),
            count,
        },
        Some(count) => GpuChoice::Count {
            count,
            min_memory: a
                .min_mem
                .as_deref()
                .map(when::parse_memory)
                .transpose()
                .map_err(usage)?,
        },
        None => GpuChoice::Named {
            gpus: a.gpus.clone(),
        },
    };
    let when = if a.asap {
        let dur = d(a.r#for.as_deref().unwrap_or_default())?;
        WhenChoice::Asap {
            duration_secs: dur.num_seconds(),
        }
    } else {
        let start = t(a.start.as_deref().unwrap_or_default())?;
        let end = match (&a.end, &a.r#for) {
            (Some(e), _) => t(e)?,
            (None, Some(f)) => start + d(f)?,
            (None, None) => return Err(usage("give --end or --for".into())),
        };
        WhenChoice::At { start, end }
    };
    Ok(Request::Book(BookRequest {
        gpus,
        when,
        title: a.title.clone(),
        job: a.job.spec().map_err(usage)?,
    }))
}
