//! `gpubook`: book lab GPUs from a shell or a CI pipeline.

// `println!` and `print!` for the whole crate (defined before the modules, so they see these):
// when whoever reads stdout has gone (`gpubook ics | head`), the program ends as any Unix tool
// does, by SIGPIPE and quietly, instead of std's panic on a failed print.
macro_rules! println {
    () => {
        $crate::output::out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::output::out(format_args!($($arg)*))
    };
}

mod calendar;
mod decide;
mod jobs;
mod multi;
mod output;
mod prompt;
mod servers_cmd;
mod targets;
mod watch;
mod when;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use gpubook_client::servers::asap::AsapAsk;
use gpubook_client::{ClientError, Connection};
use gpubook_core::{BookingId, Gpu};
use gpubook_proto::{
    ApproveRequest, BookRequest, BookingResponse, CancelRequest, DenyRequest, ErrorKind,
    ExtendRequest, GpuChoice, GpusRequest, ListRequest, MoveRequest, PolicyRequest, ReleaseRequest,
    Request, Response, WhenChoice,
};
use std::process::ExitCode;

const EXIT_HELP: &str = "\
Exit status:
  0  success (a booking waiting for approval is a success: its state says so)
  1  any other error
  2  usage error, or a request the agent found invalid (bad times, unknown options)
  3  refused: conflict with another booking, not allowed, or over the lab's policy
  4  not found: no such booking or GPU
  5  the agent or its server is unreachable (SSH included: refused, timed out), unavailable,
     or the connection was lost; with several servers: none of them answered
  6  the agent speaks another protocol version
  7  SSH login refused: no key, password or passphrase was accepted
  8  SSH host key not trusted: unknown (not accepted) or CHANGED (refused)
  9  approve/deny: the booking changed since you looked (--rev, or what was shown); nothing
     was decided: look at it again
With several servers (--server a,b, --server any, --all) a command succeeds when at least one
answers; each one that did not is reported on stderr (in --json as its \"error\").
`gpubook wait` and `gpubook run` exit with the job's own status instead: its exit code,
128 + the signal that ended it, 127 if it could not start, 1 if it was lost.

Times are read in your time zone: 14:00, \"tomorrow 9:00\", +2h, now, 2026-11-27T14:00.
Durations: 90m, 3h, 1d, 1h30m.

Servers: local, unix:PATH, a name from `gpubook servers`, an ssh alias, user@host[:port],
ssh://user@host[:port], a comma list of these, or any (every server in the list).";

/// Book lab GPUs on a calendar the servers enforce.
#[derive(Debug, Parser)]
#[command(name = "gpubook", version, about, after_help = EXIT_HELP)]
struct Cli {
    /// The server(s) to talk to: local, unix:PATH, a name from `gpubook servers`, an ssh
    /// alias, user@host[:port], ssh://user@host[:port], a comma list, or any (all of them).
    #[arg(long, global = true, default_value = "local", env = "GPUBOOK_SERVER")]
    server: String,
    /// Trust an SSH server's host key the first time it is seen (it is added to known_hosts);
    /// a changed key is refused regardless.
    #[arg(long, global = true)]
    accept_new_host_key: bool,
    /// Print JSON for programs instead of tables for people.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Who you are on the server, as the agent sees you.
    Whoami,
    /// The server's GPUs with their latest readings.
    Gpus {
        /// On every server in your list (as --server any).
        #[arg(long)]
        all: bool,
    },
    /// List bookings (current and future; --past adds ended and cancelled ones).
    Ls(LsArgs),
    /// Book GPUs: named ones (--gpu), or a count (--count), at a time or as soon as possible.
    Book(BookArgs),
    /// Cancel a booking that has not started.
    Cancel {
        /// The booking's number.
        id: u64,
    },
    /// Give a booking a later end.
    Extend {
        /// The booking's number.
        id: u64,
        /// The new end.
        #[arg(long, conflicts_with = "by", required_unless_present = "by")]
        to: Option<String>,
        /// How much longer.
        #[arg(long)]
        by: Option<String>,
    },
    /// Move or resize a booking.
    Move {
        /// The booking's number.
        id: u64,
        /// The new start [default: the current one, with --gpu alone].
        #[arg(long, required_unless_present = "gpu")]
        start: Option<String>,
        /// The new end [default: the current one, with --gpu alone].
        #[arg(long, conflicts_with = "for")]
        end: Option<String>,
        /// The new length.
        #[arg(long = "for")]
        r#for: Option<String>,
        /// New GPUs, by index or UUID (comma-separated).
        #[arg(long, value_delimiter = ',')]
        gpu: Option<Vec<String>>,
    },
    /// End a started booking now and give the rest of its slot back.
    Release {
        /// The booking's number.
        id: u64,
    },
    /// Approve a booking that waits for approval (admins). On a terminal, without --rev, the
    /// booking is shown and you are asked first.
    Approve {
        /// The booking's number.
        id: u64,
        /// The revision you looked at (`gpubook ls`, REV): refused (exit 9) if it changed since.
        #[arg(long)]
        rev: Option<u32>,
    },
    /// Deny a booking that waits for approval (admins). On a terminal, without --rev, the
    /// booking is shown and you are asked first.
    Deny {
        /// The booking's number.
        id: u64,
        /// Why, for its owner.
        #[arg(long)]
        reason: Option<String>,
        /// The revision you looked at (`gpubook ls`, REV): refused (exit 9) if it changed since.
        #[arg(long)]
        rev: Option<u32>,
    },
    /// Print events as they happen: bookings made, changed, slots starting and ending.
    Watch {
        /// Print events after this number first (0: the whole history), then live ones.
        #[arg(long)]
        after: Option<u64>,
        /// Also print live GPU readings.
        #[arg(long)]
        readings: bool,
        /// Stop after this many events (for scripts).
        #[arg(long)]
        count: Option<u64>,
    },
    /// The lab's policy, your role, and your GPU-hours this week.
    Policy,
    /// A booking's job log (yours, or anyone's for admins).
    Logs {
        /// The booking's number.
        id: u64,
        /// Keep printing as the job writes, until it ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Wait until a booking's job ends; exit with the job's status (for pipelines).
    Wait {
        /// The booking's number.
        id: u64,
    },
    /// Book, wait for the slot, stream the job's log, and exit with the job's status:
    /// `gpubook run --count 1 --for 2h --asap -- ./train.sh`.
    Run(BookArgs),
    /// How booked GPUs were used: booked against used GPU-hours, utilisation, peak memory.
    Usage {
        /// One booking; all with a recorded usage when absent.
        id: Option<u64>,
        /// Only your own bookings.
        #[arg(long)]
        mine: bool,
    },
    /// Your bookings as an iCalendar file on stdout: `gpubook ics > bookings.ics`.
    Ics(calendar::IcsArgs),
    /// Serve your bookings on 127.0.0.1 as a calendar subscription that follows changes.
    Feed(calendar::FeedArgs),
    /// Sync your bookings to a CalDAV calendar: login, sync, logout.
    Caldav(calendar::CaldavArgs),
    /// Your servers (shared with the desktop app): ls, add NAME SPEC, rm NAME.
    Servers(servers_cmd::ServersArgs),
}

#[derive(Debug, Args)]
struct LsArgs {
    /// Only your own bookings.
    #[arg(long)]
    mine: bool,
    /// Include ended, cancelled and denied bookings.
    #[arg(long)]
    past: bool,
    /// Only bookings overlapping from this time...
    #[arg(long)]
    from: Option<String>,
    /// ...to this time.
    #[arg(long)]
    to: Option<String>,
    /// On every server in your list (as --server any), with a server column.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Args)]
struct BookArgs {
    /// GPUs by index or UUID (repeat, or comma-separate).
    #[arg(long = "gpu", value_delimiter = ',', conflicts_with = "count")]
    gpus: Vec<String>,
    /// Any N GPUs (the agent picks).
    #[arg(long, required_unless_present = "gpus")]
    count: Option<u32>,
    /// With --count: at least this much memory per GPU (40G, 80000M).
    #[arg(long, requires = "count")]
    min_mem: Option<String>,
    /// Start time.
    #[arg(long, conflicts_with = "asap", required_unless_present = "asap")]
    start: Option<String>,
    /// End time.
    #[arg(long, conflicts_with_all = ["for", "asap"])]
    end: Option<String>,
    /// Length.
    #[arg(long = "for")]
    r#for: Option<String>,
    /// As soon as the GPUs are free (needs --for); moved earlier if capacity frees. With
    /// several servers (and --count): on the one where the start is soonest.
    #[arg(long, requires = "for")]
    asap: bool,
    /// What it is for; everyone sees it.
    #[arg(long, default_value = "")]
    title: String,
    #[command(flatten)]
    job: jobs::JobArgs,
}

/// An error that knows its exit status.
#[derive(Debug)]
struct Failure {
    /// The exit status.
    code: u8,
    /// What to print.
    error: anyhow::Error,
    /// The typed error, for --json.
    kind: Option<ErrorKind>,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        match error.downcast_ref::<ClientError>() {
            Some(c) => {
                let kind = c.kind();
                Failure {
                    code: exit_code(kind),
                    kind: Some(kind),
                    error,
                }
            }
            None => Failure {
                code: 1,
                error,
                kind: None,
            },
        }
    }
}

/// Exit status: an approval or denial named a revision the booking no longer has.
const EXIT_CHANGED: u8 = 9;

fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Invalid | ErrorKind::UnknownRequest | ErrorKind::Malformed => 2,
        ErrorKind::Conflict | ErrorKind::NotAllowed | ErrorKind::OverPolicy => 3,
        ErrorKind::NotFound => 4,
        ErrorKind::Unavailable | ErrorKind::ConnectionLost => 5,
        ErrorKind::Incompatible => 6,
        ErrorKind::Changed => EXIT_CHANGED,
        _ => 1,
    }
}

fn usage(msg: String) -> Failure {
    Failure {
        code: 2,
        error: anyhow!(msg),
        kind: Some(ErrorKind::Invalid),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if json {
                let (kind, conflicts, revision) = match f.error.downcast_ref::<ClientError>() {
                    Some(ClientError::Agent(e)) => (Some(e.kind), e.conflicts.clone(), e.revision),
                    _ => (None, Vec::new(), None),
                };
                let mut v = serde_json::json!({
                    "error": {
                        "kind": kind.map(|k| k.as_str()).unwrap_or_else(|| targets::kind_name(&f)),
                        "message": format!("{:#}", f.error),
                        "conflicts": conflicts,
                    }
                });
                // For `changed`: the booking's revision now.
                if let Some(r) = revision {
                    v["error"]["revision"] = r.into();
                }
                eprintln!("{v}");
            } else {
                eprintln!("gpubook: {:#}", f.error);
            }
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Servers(a) = &cli.command {
        return servers_cmd::run(a, cli.json);
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let all = match &cli.command {
        Command::Gpus { all } => *all,
        Command::Ls(a) => a.all,
        _ => false,
    };
    let opts = targets::ssh_options(cli.accept_new_host_key);
    let targets = targets::resolve(&cli.server, all, uid, &opts)?;
    let now = Utc::now();
    // Read every argument before connecting: a typo is a usage error, never half a request.
    let mut request = build_request(&cli.command, now)?;
    if let Some(Request::Book(BookRequest { job: Some(job), .. })) = &mut request {
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        jobs::place_cwd(job, &targets, std::env::current_dir, home).map_err(usage)?;
    }
    // Several servers asked for (a list, any, --all) keep the many-server output even when the
    // list holds one, so that scripts see one shape.
    let many = all || cli.server.split(',').count() > 1 || cli.server.trim() == "any";
    let across = match &cli.command {
        Command::Gpus { .. } | Command::Ls(_) => true,
        Command::Book(a) => a.asap && a.count.is_some(),
        _ => false,
    };
    if targets.len() != 1 || (many && across) {
        return several(&cli, &targets, request).await;
    }
    let target = &targets[0];
    match &cli.command {
        Command::Ics(a) => return calendar::ics(a, target).await,
        Command::Feed(a) => return calendar::feed(a, target, cli.json).await,
        Command::Caldav(a) => return calendar::caldav(a, target, cli.json).await,
        Command::Watch {
            after,
            readings,
            count,
        } => return watch::watch(target, *after, *readings, *count, cli.json).await,
        _ => {}
    }
    let conn = target.connect().await?;
    let json = cli.json;
    match (&cli.command, request) {
        (Command::Whoami, _) => {
            let w = conn.welcome();
            if json {
                print_json(w);
            } else {
                println!(
                    "{} (uid {}) is {} on {}{}",
                    w.user,
                    w.uid,
                    w.role,
                    w.server,
                    if w.simulated { " (simulated GPUs)" } else { "" }
                );
            }
        }
        (Command::Logs { id, follow }, _) => {
            jobs::logs(&conn, BookingId(*id), *follow).await?;
        }
        (Command::Wait { id }, _) => {
            let b = jobs::wait(&conn, BookingId(*id), false, json).await?;
            return finish_job(&b, json);
        }
        (Command::Usage { id, mine }, _) => {
            let mut list = conn
                .list_all(ListRequest {
                    include_past: true,
                    mine: *mine,
                    ..ListRequest::default()
                })
                .await
                .map_err(anyhow::Error::from)?;
            if let Some(id) = id {
                list.bookings.retain(|b| b.id.0 == *id);
                if list.bookings.is_empty() {
                    return Err(Failure {
                        code: 4,
                        error: anyhow!("there is no booking {id} on {}", list.server),
                        kind: Some(ErrorKind::NotFound),
                    });
                }
            }
            list.bookings.retain(|b| b.usage.is_some());
            if json {
                print_json(&list.bookings);
            } else {
                println!("{}", jobs::usage_table(&list.bookings));
            }
        }
        (Command::Run(_), Some(req)) => {
            let resp = conn.request(req).await.map_err(anyhow::Error::from)?;
            let Response::Booking(r) = resp else {
                return Err(anyhow!("unexpected answer {resp:?}").into());
            };
            if !json {
                eprintln!("gpubook: {}", output::booking_line(&r.booking, &[]));
            }
            if r.booking.state == gpubook_core::BookingState::PendingApproval {
                eprintln!("gpubook: waiting for an admin's approval");
            }
            let b = jobs::wait(&conn, r.booking.id, !json, json).await?;
            return finish_job(&b, json);
        }
        (_, Some(mut req)) => {
            if let (Command::Extend { by: Some(_), .. }, Request::Extend(x)) =
                (&cli.command, &mut req)
            {
                let by = x.end - DateTime::<Utc>::UNIX_EPOCH;
                x.end = current_end(&conn, x.id).await? + by;
            }
            if let (Command::Move { start: None, .. }, Request::Move(m)) = (&cli.command, &mut req)
            {
                let b = jobs::booking(&conn, m.id).await?;
                (m.start, m.end) = (b.interval.start, b.interval.end);
            }
            decide::confirm(&conn, &mut req).await?;
            // What a booking that holds its GPUs after the request is said to be.
            let done = match &req {
                Request::Move(_) => "Moved",
                Request::Extend(_) => "Extended",
                Request::Approve(_) => "Approved",
                _ => "Booked",
            };
            let show = |known: &[Gpu], resp: &Response| print_response(resp, known, json, done);
            let resp = match req {
                // A listing may come in pages: read them all.
                Request::List(l) => conn.list_all(l).await.map(Response::Bookings),
                other => conn.request(other).await,
            }
            .map_err(anyhow::Error::from)?;
            let known = if json || matches!(resp, Response::Gpus(_)) {
                Vec::new()
            } else {
                gpus(&conn).await?
            };
            show(&known, &resp);
        }
        (_, None) => unreachable!("every command but whoami and watch builds a request"),
    }
    Ok(())
}

fn build_request(cmd: &Command, now: DateTime<Utc>) -> Result<Option<Request>, Failure> {
    let t = |s: &str| when::parse_time(s, now).map_err(usage);
    let d = |s: &str| when::parse_positive_duration(s).map_err(usage);
    Ok(Some(match cmd {
        Command::Whoami
        | Command::Servers(_)
        | Command::Watch { .. }
        | Command::Logs { .. }
        | Command::Wait { .. }
        | Command::Usage { .. }
        | Command::Ics(_)
        | Command::Feed(_)
        | Command::Caldav(_) => return Ok(None),
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

fn book_request(a: &BookArgs, now: DateTime<Utc>) -> Result<Request, Failure> {
    let t = |s: &str| when::parse_time(s, now).map_err(usage);
    let d = |s: &str| when::parse_positive_duration(s).map_err(usage);
    let gpus = match a.count {
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

async fn current_end(conn: &Connection, id: BookingId) -> Result<DateTime<Utc>, Failure> {
    let list = conn
        .list_all(ListRequest {
            include_past: true,
            ..ListRequest::default()
        })
        .await
        .map_err(anyhow::Error::from)?;
    list.bookings
        .iter()
        .find(|b| b.id == id)
        .map(|b| b.interval.end)
        .ok_or_else(|| Failure {
            code: 4,
            error: anyhow!("there is no booking {id} on {}", list.server),
            kind: Some(ErrorKind::NotFound),
        })
}

/// Ends `wait` and `run`: the job's status becomes gpubook's.
fn finish_job(b: &gpubook_core::Booking, json: bool) -> Result<(), Failure> {
    if json {
        print_json(b);
    }
    let status = jobs::job_status(b).unwrap_or(1);
    let what = b
        .run
        .as_ref()
        .and_then(|r| r.message.clone())
        .unwrap_or_else(|| format!("booking {} is {} and its job never ran", b.id, b.state));
    if status == 0 {
        if !json {
            eprintln!("gpubook: booking {}'s job: {what}", b.id);
        }
        Ok(())
    } else {
        Err(Failure {
            code: status,
            error: anyhow!("booking {}'s job: {what}", b.id),
            kind: None,
        })
    }
}

async fn gpus(conn: &Connection) -> Result<Vec<Gpu>, Failure> {
    match conn
        .request(Request::Gpus(GpusRequest {}))
        .await
        .map_err(anyhow::Error::from)?
    {
        Response::Gpus(g) => Ok(g.gpus),
        other => Err(anyhow!("unexpected answer {other:?}").into()),
    }
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn print_response(resp: &Response, known: &[Gpu], json: bool, done: &str) {
    if json {
        print_json(resp);
        return;
    }
    match resp {
        Response::Gpus(g) => {
            let label = match g.source.as_str() {
                "simulated" => " — SIMULATED GPUs, not real ones",
                "replay" => " — replayed readings",
                _ => "",
            };
            println!("{}{label}", g.server);
            println!("{}", output::gpus_table(&g.gpus, g.readings.as_ref()));
        }
        Response::Bookings(b) => {
            if b.bookings.is_empty() {
                println!("No bookings on {}.", b.server);
            } else {
                println!("{}", output::bookings_table(&b.bookings, known));
            }
        }
        Response::Booking(BookingResponse {
            booking,
            also_changed,
            ..
        }) => {
            let b = booking;
            let verb = match b.state {
                gpubook_core::BookingState::PendingApproval => "Waiting for an admin's approval",
                gpubook_core::BookingState::Cancelled => "Cancelled",
                gpubook_core::BookingState::Denied => "Denied",
                gpubook_core::BookingState::Ended => "Ended",
                _ => done,
            };
            println!("{verb}: {}", output::booking_line(b, known));
            for o in also_changed {
                println!("  and moved: {}", output::booking_line(o, known));
            }
        }
        Response::Policy(p) => {
            let pol = &p.policy;
            let fmt = |s: Option<i64>| {
                s.map(|s| gpubook_core::duration::format_duration(chrono::Duration::seconds(s)))
                    .unwrap_or_else(|| "no limit".into())
            };
            println!("Your role: {}", p.role);
            println!("Your GPU-hours this week: {:.1}", p.week_gpu_hours);
            println!(
                "Slot granularity: {}",
                gpubook_core::duration::format_duration(pol.granularity())
            );
            println!("Longest booking: {}", fmt(pol.max_booking_secs));
            println!("Furthest ahead: {}", fmt(pol.max_ahead_secs));
            println!(
                "Weekly quota: {}",
                pol.weekly_quota_gpu_hours
                    .map(|q| format!("{q} GPU-hours"))
                    .unwrap_or_else(|| "no limit".into())
            );
            println!(
                "GPUs at once: {}",
                pol.max_gpus_at_once
                    .map(|q| q.to_string())
                    .unwrap_or_else(|| "no limit".into())
            );
            println!(
                "Beyond these: {}",
                match pol.over_policy {
                    gpubook_core::policy::OverPolicy::Approval => "waits for an admin's approval",
                    gpubook_core::policy::OverPolicy::Refuse => "refused",
                }
            );
        }
        Response::Whoami(w) => println!("{} is {} on {}", w.user, w.role, w.server),
        Response::Subscribed(s) => println!("subscribed at event {}", s.latest),
        Response::Logs(l) => print!("{}", l.data),
        Response::Suggestion(s) => println!("{}", s.says),
    }
}

/// A command given several servers: `gpus`, `ls` and `book --asap --count` work across them;
/// the others talk to one server.
async fn several(
    cli: &Cli,
    targets: &[targets::Target],
    request: Option<Request>,
) -> Result<(), Failure> {
    let json = cli.json;
    match (&cli.command, request) {
        (Command::Gpus { .. }, _) => multi::gpus(targets, json).await,
        (Command::Ls(_), Some(Request::List(l))) => multi::ls(targets, l, json).await,
        (Command::Book(a), Some(req)) if a.asap && a.count.is_some() => {
            let Request::Book(b) = &req else {
                unreachable!("book builds a booking request")
            };
            let (
                gpubook_proto::GpuChoice::Count { count, min_memory },
                gpubook_proto::WhenChoice::Asap { duration_secs },
            ) = (&b.gpus, &b.when)
            else {
                unreachable!("--asap --count builds a count for a duration")
            };
            let ask = AsapAsk {
                count: *count,
                min_memory: *min_memory,
                duration: chrono::Duration::seconds(*duration_secs),
            };
            multi::book_asap(targets, ask, req, json).await
        }
        (Command::Book(_), _) => Err(usage(format!(
            "with several servers ({}), book takes --asap --count N --for D and books where the \
             start is soonest; name one server to book named GPUs or at a time",
            names(targets)
        ))),
        _ => Err(usage(format!(
            "this command talks to one server, and --server names {}: {}",
            targets.len(),
            names(targets)
        ))),
    }
}

fn names(targets: &[targets::Target]) -> String {
    if targets.is_empty() {
        return "none".into();
    }
    targets
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
