//! The command line: every subcommand and flag, as clap reads them, and the help's
//! exit-status table.

use crate::{calendar, jobs, servers_cmd};
use clap::{Args, Parser, Subcommand};

pub const EXIT_HELP: &str = "\
Exit status:
  0  success (a booking waiting for approval is a success: its state says so)
  1  any other error
  2  usage error, or a request the agent found invalid (bad times, unknown options)
  3  refused: conflict with another booking, not allowed, or over the lab's policy; env and
     shell: another person's booking, or its slot has not started or is over
  4  not found: no such booking or GPU; wait and logs: the booking has no job
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

Times are read in your time zone: 14:00, 9am, \"tomorrow 9:00\", \"fri 14:00\",
\"next tuesday 9am\" (the coming Tuesday), \"in 2h\", +2h, -1h, now, 2026-11-27T14:00.
Dates with slashes (1/12) are refused: write 2026-12-01 or \"dec 1\".
Durations: 90m, 3h, 1d, 1h30m.

Servers: local, unix:PATH, a name from `gpubook servers`, an ssh alias, user@host[:port],
ssh://user@host[:port], a comma list of these, or any (every server in the list).";

/// Book lab GPUs on a calendar the servers enforce.
#[derive(Debug, Parser)]
#[command(name = "gpubook", version, about, after_help = EXIT_HELP)]
pub struct Cli {
    /// The server(s) to talk to: local, unix:PATH, a name from `gpubook servers`, an ssh
    /// alias, user@host[:port], ssh://user@host[:port], a comma list, or any (all of them).
    #[arg(long, global = true, default_value = "local", env = "GPUBOOK_SERVER")]
    pub server: String,
    /// Trust an SSH server's host key the first time it is seen (it is added to known_hosts);
    /// a changed key is refused regardless.
    #[arg(long, global = true)]
    pub accept_new_host_key: bool,
    /// Print JSON for programs instead of tables for people; errors (argument errors too) go
    /// to stderr as {"error": {"kind", "message", "conflicts"}}.
    #[arg(long, global = true)]
    pub json: bool,
    /// Whether `--server` was given on the command line (not from GPUBOOK_SERVER or the
    /// default): a flag that contradicts it is refused.
    #[arg(skip)]
    pub server_given: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
        #[arg(
            long,
            conflicts_with = "by",
            required_unless_present = "by",
            allow_hyphen_values = true
        )]
        to: Option<String>,
        /// How much longer.
        #[arg(long, allow_hyphen_values = true)]
        by: Option<String>,
    },
    /// Move or resize a booking.
    Move {
        /// The booking's number.
        id: u64,
        /// The new start [default: the current one, with --gpu alone].
        #[arg(long, required_unless_present = "gpu", allow_hyphen_values = true)]
        start: Option<String>,
        /// The new end [default: the current one, with --gpu alone].
        #[arg(long, conflicts_with = "for", allow_hyphen_values = true)]
        end: Option<String>,
        /// The new length.
        #[arg(long = "for", allow_hyphen_values = true)]
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
    /// A booking's job log (yours, or anyone's for admins); exit 4 if the booking has no job.
    /// With --json: {"id", "log", "done"}; with -f, {"id", "log"} lines as the job writes.
    Logs {
        /// The booking's number.
        id: u64,
        /// Keep printing as the job writes, until it ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Wait until a booking's job ends; exit with the job's status (for pipelines); exit 4 if
    /// the booking has no job.
    Wait {
        /// The booking's number.
        id: u64,
    },
    /// Book, wait for the slot, stream the job's log, and exit with the job's status:
    /// `gpubook run --count 1 --for 2h --asap -- ./train.sh`.
    Run(BookArgs),
    /// A started booking's variables (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER, GPUBOOK_*) as
    /// export lines, for your own shell: eval "$(gpubook env 12)". Yours only, while the slot
    /// is on.
    Env {
        /// The booking's number.
        id: u64,
    },
    /// A login shell on the booking's server with its GPUs (as `env`), or the command after
    /// --: gpubook shell 12 -- jupyter lab --no-browser. Exits with the shell's status.
    Shell {
        /// The booking's number.
        id: u64,
        /// What to run instead of an interactive shell.
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// How booked GPUs were used: booked against used GPU-hours, utilisation, peak memory.
    Usage {
        /// One booking; all with a recorded usage when absent.
        id: Option<u64>,
        /// Only your own bookings.
        #[arg(long)]
        mine: bool,
        /// The booking's GPU utilisation and memory over its slot (its owner and admins).
        #[arg(long, requires = "id")]
        series: bool,
    },
    /// Your bookings as an iCalendar file on stdout: `gpubook ics > bookings.ics`.
    Ics(calendar::IcsArgs),
    /// Serve your bookings on 127.0.0.1 as a calendar subscription that follows changes.
    Feed(calendar::FeedArgs),
    /// Sync your bookings to a CalDAV calendar: login, sync, logout.
    Caldav(calendar::CaldavArgs),
    /// Your servers (shared with the desktop app): ls, add NAME SPEC, rm NAME.
    Servers(servers_cmd::ServersArgs),
    /// GPU-hours booked, used, idle-held and released early per user (--by user) or per GPU
    /// (--by gpu) over a window [default: the last 7 days]; yours alone unless you are an admin.
    Report(crate::report::ReportArgs),
    /// News while away: the server mails your events or POSTs them to a webhook, even when
    /// no app runs (notify set --email A --webhook URL --kinds job_finished,...; show; clear).
    Notify(crate::notify::NotifyArgs),
    /// Take GPUs out of service (admins): gpubook maintenance --gpu 2,3 --start "sat 8:00"
    /// --for 4h --reason "driver 570" (or --all for the whole server). Bookings in the way
    /// move to the earliest free time or are cancelled; their owners are told. Also
    /// `maintenance ls` and `maintenance end ID`.
    Maintenance(crate::maintenance::MaintenanceArgs),
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only your own bookings.
    #[arg(long)]
    pub mine: bool,
    /// Include ended, cancelled and denied bookings.
    #[arg(long)]
    pub past: bool,
    /// Only bookings overlapping from this time...
    #[arg(long, allow_hyphen_values = true)]
    pub from: Option<String>,
    /// ...to this time.
    #[arg(long, allow_hyphen_values = true)]
    pub to: Option<String>,
    /// On every server in your list (as --server any), with a server column.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct BookArgs {
    /// GPUs by index or UUID (repeat, or comma-separate).
    #[arg(long = "gpu", value_delimiter = ',', conflicts_with = "count")]
    pub gpus: Vec<String>,
    /// Any N GPUs (the agent picks).
    #[arg(long, required_unless_present = "gpus")]
    pub count: Option<u32>,
    /// With --count: at least this much memory per GPU (40G, 80000M).
    #[arg(long, requires = "count", conflicts_with = "gpus")]
    pub min_mem: Option<String>,
    /// With --count on a Slurm cluster: the node to take them from (as `gpubook gpus` names
    /// it); Slurm picks which of its GPUs.
    #[arg(long, requires = "count", conflicts_with_all = ["gpus", "min_mem"])]
    pub node: Option<String>,
    /// Start, in your time zone: 14:00, 9am, "fri 14:00", "next tuesday 9am", "in 2h", now,
    /// 2026-11-27T14:00.
    #[arg(
        long,
        conflicts_with = "asap",
        required_unless_present = "asap",
        allow_hyphen_values = true
    )]
    pub start: Option<String>,
    /// End (written as --start).
    #[arg(long, conflicts_with_all = ["for", "asap"], allow_hyphen_values = true)]
    pub end: Option<String>,
    /// Length: 90m, 3h, 1d, 1h30m; or auto (with a command): the server suggests it from
    /// your past runs of that command there, and says what it rests on.
    #[arg(long = "for", allow_hyphen_values = true)]
    pub r#for: Option<String>,
    /// As soon as the GPUs are free (needs --for); moved earlier if capacity frees. With
    /// several servers (and --count): on the one where the start is soonest.
    #[arg(long, requires = "for")]
    pub asap: bool,
    /// What it is for; everyone sees it.
    #[arg(long, default_value = "")]
    pub title: String,
    #[command(flatten)]
    pub job: jobs::JobArgs,
}
