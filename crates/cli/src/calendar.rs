//! `gpubook ics`, `gpubook feed` and `gpubook caldav`: bookings in the person's own calendar
//! (an exported file, a live subscription URL, CalDAV sync). The work is crates/client's;
//! this file reads arguments, the terminal and the keyring, and prints.

use crate::targets::Server;
use crate::{print_json, Failure};
use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use gpubook_client::caldav::{self, CaldavError, FollowOptions, SyncNote, Syncer};
use gpubook_client::feed::{self, Feed, FeedServer};
use gpubook_client::ical::{self, CalendarContext, Scope};
use gpubook_client::live::{LiveOptions, LiveSession};
use gpubook_client::secrets::{self, Secret, SecretError};
use gpubook_proto::ErrorKind;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

mod discover;
mod terminal;

use terminal::{ask, read_stdin_password, read_terminal_password};

/// Which bookings, and whether one's own commands show.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// Only your own bookings (the default).
    #[arg(long, conflicts_with = "all")]
    mine: bool,
    /// Every booking on the server, each with its owner's name.
    #[arg(long)]
    all: bool,
    /// Show your own bookings' commands in the events (other people's never show).
    #[arg(long)]
    with_commands: bool,
}

impl ScopeArgs {
    fn scope(&self) -> Scope {
        if self.all {
            Scope::All
        } else {
            Scope::Mine
        }
    }
}

/// `gpubook ics`.
#[derive(Debug, Args)]
pub struct IcsArgs {
    #[command(flatten)]
    scope: ScopeArgs,
}

/// `gpubook feed`.
#[derive(Debug, Args)]
pub struct FeedArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// The port on 127.0.0.1 (keep it, with the token, for a subscription to keep working).
    #[arg(long, default_value_t = 8731)]
    port: u16,
    /// Make a new token: the old URL stops working.
    #[arg(long)]
    new_token: bool,
}

/// `gpubook caldav`.
#[derive(Debug, Args)]
pub struct CaldavArgs {
    #[command(subcommand)]
    command: CaldavCommand,
}

#[derive(Debug, Subcommand)]
enum CaldavCommand {
    /// List your calendars from the CalDAV server's address (and make one with --create).
    Discover(discover::DiscoverArgs),
    /// Check a CalDAV account and store its password in your keyring.
    Login {
        #[command(flatten)]
        account: Account,
        /// When --url is the server's address: the calendar to use, by name or URL.
        #[arg(long, value_name = "NAME", conflicts_with = "create")]
        calendar: Option<String>,
        /// When --url is the server's address: make a calendar with this name, e.g. "GPU
        /// bookings", and use it (one with that name already is used instead).
        #[arg(long, value_name = "NAME")]
        create: Option<String>,
        /// Read the password from standard input instead of asking on the terminal.
        #[arg(long)]
        password_stdin: bool,
        /// Store it without asking (scripts).
        #[arg(long)]
        yes: bool,
        /// Do not check it against the server first.
        #[arg(long)]
        no_check: bool,
    },
    /// Remove an account's password from your keyring.
    Logout {
        #[command(flatten)]
        account: Account,
    },
    /// Push your bookings to a CalDAV calendar and keep them there as they change.
    Sync {
        #[command(flatten)]
        account: Account,
        /// Also push every booking on the server to this second calendar (same account).
        #[arg(long)]
        all_url: Option<String>,
        /// One reconcile, then exit (for cron and tests).
        #[arg(long)]
        once: bool,
        /// Time between full reconciles while following.
        #[arg(long, default_value = "15m")]
        every: String,
        /// Show your own bookings' commands in the events.
        #[arg(long)]
        with_commands: bool,
        /// Keep cancelled and denied bookings as cancelled events instead of deleting them.
        #[arg(long)]
        keep_cancelled: bool,
        /// Read the password from standard input instead of the keyring.
        #[arg(long)]
        password_stdin: bool,
    },
}

impl CaldavArgs {
    /// Whether the command talks to a gpubook server: `sync` does; `login` and `logout` only
    /// talk to the CalDAV server and the keyring.
    pub fn talks_to_a_server(&self) -> bool {
        matches!(self.command, CaldavCommand::Sync { .. })
    }
}

/// A CalDAV account: the calendar collection and the user.
#[derive(Debug, Args)]
struct Account {
    /// The calendar collection's URL, e.g. https://dav.example.org/calendars/alice/gpu/ (for
    /// `login`, the server's address also does: your calendars are then found).
    #[arg(long)]
    url: String,
    /// The user name on the CalDAV server.
    #[arg(long)]
    user: String,
}

/// `gpubook ics`: the calendar on stdout; with `--json`, as `{"calendar": "BEGIN:VCALENDAR..."}`.
pub async fn ics(a: &IcsArgs, target: &Server, json: bool) -> Result<(), Failure> {
    let conn = target.connect().await?;
    let text = ical::export(&conn, a.scope.scope(), a.scope.with_commands)
        .await
        .map_err(anyhow::Error::from)?;
    if json {
        print_json(&serde_json::json!({ "calendar": text }));
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        crate::output::stdout_failed(&e);
    }
    Ok(())
}

/// `gpubook feed`: serves the subscription until Ctrl-C.
pub async fn feed(a: &FeedArgs, target: &Server, json: bool) -> Result<(), Failure> {
    let conn = target.connect().await?;
    let ctx = CalendarContext::load(&conn, a.scope.scope(), a.scope.with_commands)
        .await
        .map_err(anyhow::Error::from)?;
    let bookings = ctx.bookings(&conn).await.map_err(anyhow::Error::from)?;
    let dir = state_dir()?;
    // The token file is read on every request: `feed --new-token` elsewhere revokes this
    // feed's URL at once.
    let server = FeedServer::bind_stored(([127, 0, 0, 1], a.port).into(), &dir, a.new_token)
        .await
        .with_context(|| {
            format!(
                "cannot serve the feed on 127.0.0.1:{} with its token in {} (try another --port)",
                a.port,
                dir.display()
            )
        })?;
    let url = server.url().context("the feed's address")?;
    if json {
        print_json(&serde_json::json!({ "url": url }));
    } else {
        println!("{url}");
        eprintln!(
            "Subscribe to that URL in your calendar app (read-only; it follows changes as they \
             happen). Keep it private: the token is the only key. Ctrl-C to stop."
        );
    }
    let mut feed = Feed::new(ctx, bookings);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stop_server = stop_rx.clone();
    let serving = tokio::spawn(server.run(feed.body(), async move {
        let _ = stop_server.changed().await;
    }));
    let (_session, events) = LiveSession::start_with(conn, target.dialer(), LiveOptions::default());
    let mut stop_feed = stop_rx;
    tokio::select! {
        _ = feed::keep_current(events, &mut feed, async move {
            let _ = stop_feed.changed().await;
        }) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = stop_tx.send(true);
    let _ = serving.await;
    Ok(())
}

/// `gpubook caldav ...`.
pub async fn caldav(a: &CaldavArgs, target: &Server, json: bool) -> Result<(), Failure> {
    match &a.command {
        CaldavCommand::Discover(d) => discover::discover(d, json).await,
        CaldavCommand::Login {
            account,
            calendar,
            create,
            password_stdin,
            yes,
            no_check,
        } => {
            let choice = discover::Choice {
                calendar: calendar.as_deref(),
                create: create.as_deref(),
                ask: !*password_stdin,
            };
            let url = login(account, choice, *password_stdin, *yes, *no_check, json).await?;
            if json {
                print_json(
                    &serde_json::json!({ "url": url, "user": account.user, "stored": true }),
                );
            }
            Ok(())
        }
        CaldavCommand::Logout { account } => {
            let (url, user) = (account.url.clone(), account.user.clone());
            let removed =
                tokio::task::spawn_blocking(move || secrets::forget_caldav_password(&url, &user))
                    .await
                    .map_err(|e| anyhow!(e))?
                    .map_err(|e| caldav_failure(e.into()))?;
            if json {
                print_json(
                    &serde_json::json!({ "url": account.url, "user": account.user, "removed": removed }),
                );
            } else if removed {
                eprintln!(
                    "Removed the password of {} at {} from your keyring.",
                    account.user, account.url
                );
            } else {
                eprintln!(
                    "Your keyring held no password of {} at {}.",
                    account.user, account.url
                );
            }
            Ok(())
        }
        CaldavCommand::Sync {
            account,
            all_url,
            once,
            every,
            with_commands,
            keep_cancelled,
            password_stdin,
        } => {
            let every = crate::when::parse_positive_duration(every)
                .map_err(crate::usage)?
                .to_std()
                .map_err(|e| crate::usage(e.to_string()))?;
            if all_url
                .as_deref()
                .is_some_and(|u| same_url(u, &account.url))
            {
                return Err(crate::usage(
                    "--all-url must be another calendar than --url: the lab's bookings and yours \
                     cannot share one"
                        .into(),
                ));
            }
            let password = if *password_stdin {
                read_stdin_password()?
            } else {
                let (url, user) = (account.url.clone(), account.user.clone());
                tokio::task::spawn_blocking(move || secrets::caldav_password(&url, &user))
                    .await
                    .map_err(|e| anyhow!(e))?
                    .map_err(|e| caldav_failure(e.into()))?
            };
            let conn = target.connect().await?;
            let mut syncers = Vec::new();
            let dir = state_dir()?;
            for (url, scope) in std::iter::once((&account.url, Scope::Mine))
                .chain(all_url.iter().map(|u| (u, Scope::All)))
            {
                let ctx = CalendarContext::load(&conn, scope, *with_commands)
                    .await
                    .map_err(anyhow::Error::from)?;
                let target = caldav::Collection {
                    url: url.clone(),
                    user: account.user.clone(),
                    keep_cancelled: *keep_cancelled,
                };
                syncers.push(
                    Syncer::open(&target, password.clone(), ctx, &dir).map_err(caldav_failure)?,
                );
            }
            if *once {
                let reports = caldav::sync_once(&conn, &mut syncers)
                    .await
                    .map_err(caldav_failure)?;
                for (s, r) in syncers.iter().zip(&reports) {
                    if json {
                        print_json(&serde_json::json!({
                            "url": s.url(), "created": r.created, "updated": r.updated,
                            "deleted": r.deleted, "unchanged": r.unchanged,
                            "foreign": r.foreign, "rejected": r.rejected,
                        }));
                    } else {
                        println!("{}: {}", s.url(), report_line(r));
                        for why in &r.rejected {
                            eprintln!("gpubook: refused, will be tried again: {why}");
                        }
                    }
                }
                return Ok(());
            }
            follow(conn, target, syncers, every, json).await
        }
    }
}

/// Follows the agent over a live session that begins with `conn`, until Ctrl-C.
async fn follow(
    conn: gpubook_client::Connection,
    target: &Server,
    mut syncers: Vec<Syncer>,
    every: std::time::Duration,
    json: bool,
) -> Result<(), Failure> {
    let (notes_tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    let printer = tokio::spawn(async move {
        while let Some(n) = notes.recv().await {
            print_note(&n, json);
        }
    });
    let (_session, events) = LiveSession::start_with(conn, target.dialer(), LiveOptions::default());
    if !json {
        eprintln!("Following the agent's events; Ctrl-C to stop.");
    }
    let r = caldav::follow(
        events,
        &mut syncers,
        FollowOptions {
            reconcile_every: every,
            ..FollowOptions::default()
        },
        notes_tx,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await;
    let _ = printer.await;
    r.map_err(caldav_failure)
}

fn print_note(n: &SyncNote, json: bool) {
    if json {
        let v = match n {
            SyncNote::Reconciled { url, report } => serde_json::json!({
                "note": "reconciled", "url": url, "created": report.created,
                "updated": report.updated, "deleted": report.deleted,
                "unchanged": report.unchanged, "foreign": report.foreign,
            }),
            SyncNote::Sent { url, uid } => {
                serde_json::json!({"note": "sent", "url": url, "uid": uid})
            }
            SyncNote::Rejected { url, uid, error } => {
                serde_json::json!({"note": "rejected", "url": url, "uid": uid, "error": error})
            }
            SyncNote::Waiting {
                url,
                error,
                pending,
                retry_in,
            } => serde_json::json!({
                "note": "waiting", "url": url, "error": error, "pending": pending,
                "retry_in_secs": retry_in.as_secs_f64(),
            }),
            SyncNote::AgentLost { error } => {
                serde_json::json!({"note": "agent_lost", "error": error})
            }
        };
        println!("{v}");
        return;
    }
    match n {
        SyncNote::Reconciled { url, report } => eprintln!("{url}: {}", report_line(report)),
        SyncNote::Sent { url, uid } => eprintln!("{url}: sent {uid}"),
        SyncNote::Rejected { url, uid, error } => {
            eprintln!("{url}: {uid} refused, will be tried again at the next reconcile: {error}")
        }
        SyncNote::Waiting {
            url,
            error,
            pending,
            retry_in,
        } => eprintln!(
            "{url}: {error}; {pending} change(s) kept until it is back, next try in {}s",
            retry_in.as_secs()
        ),
        SyncNote::AgentLost { error } => eprintln!("agent: {error}; reconnecting"),
    }
}

fn report_line(r: &caldav::Report) -> String {
    format!(
        "{} created, {} updated, {} deleted, {} unchanged; {} other event(s) left alone",
        r.created, r.updated, r.deleted, r.unchanged, r.foreign
    )
}

async fn login(
    a: &Account,
    choice: discover::Choice<'_>,
    password_stdin: bool,
    yes: bool,
    no_check: bool,
    json: bool,
) -> Result<String, Failure> {
    let password = if password_stdin {
        read_stdin_password()?
    } else {
        Secret::new(read_terminal_password(&format!(
            "CalDAV password of {} at {}: ",
            a.user, a.url
        ))?)
    };
    if password.expose().is_empty() {
        return Err(crate::usage("the password is empty".into()));
    }
    let url = calendar_url(a, choice, &password, no_check, json).await?;
    let a = &Account {
        url,
        user: a.user.clone(),
    };
    let consent = yes
        || (!password_stdin
            && std::io::stdin().is_terminal()
            && ask(&format!(
                "Store the password of {} at {} in your keyring, for `gpubook caldav sync`? [y/N] ",
                a.user, a.url
            ))?);
    if !consent {
        return Err(Failure {
            code: 1,
            error: anyhow!("nothing was stored: give --yes (or answer y) to store the password in your keyring"),
            kind: None,
        });
    }
    let (url, user) = (a.url.clone(), a.user.clone());
    tokio::task::spawn_blocking(move || secrets::store_caldav_password(&url, &user, &password))
        .await
        .map_err(|e| anyhow!(e))?
        .map_err(|e| caldav_failure(e.into()))?;
    if !json {
        eprintln!(
            "Stored in your keyring. Sync with: gpubook caldav sync --url {} --user {}",
            a.url, a.user
        );
    }
    Ok(a.url.clone())
}

/// The calendar `login` stores the password for, checked unless `no_check`: `--url` itself
/// when it is a calendar; else, `--url` being the server's address, the one `choice` picks.
async fn calendar_url(
    a: &Account,
    choice: discover::Choice<'_>,
    password: &Secret,
    no_check: bool,
    json: bool,
) -> Result<String, Failure> {
    let nothing = |f: Failure| f.context_msg("nothing was stored");
    let url = if choice.calendar.is_some() || choice.create.is_some() {
        discover::choose(&a.url, &a.user, password, choice)
            .await
            .map_err(nothing)?
    } else if no_check {
        return Ok(a.url.clone());
    } else {
        match caldav::check_account(&a.url, &a.user, password.clone()).await {
            Ok(()) => a.url.clone(),
            Err(CaldavError::NotACalendar { .. } | CaldavError::NotFound { .. }) => {
                discover::choose(&a.url, &a.user, password, choice)
                    .await
                    .map_err(nothing)?
            }
            Err(e) => return Err(nothing(caldav_failure(e))),
        }
    };
    if !no_check {
        caldav::check_account(&url, &a.user, password.clone())
            .await
            .map_err(|e| nothing(caldav_failure(e)))?;
        if !json {
            eprintln!("{url} is a calendar that {} may use.", a.user);
        }
    }
    Ok(url)
}

fn state_dir() -> Result<PathBuf, Failure> {
    caldav::state_dir().ok_or_else(|| {
        Failure::from(anyhow!(
            "no place for gpubook's state: set HOME or XDG_STATE_HOME"
        ))
    })
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// A CalDAV error with its exit status: 3 refused (password, rights), 2 a URL that cannot
/// be used, 4 nothing there, 5 the server is away, 1 anything else.
fn caldav_failure(e: CaldavError) -> Failure {
    if let CaldavError::Agent(c) = e {
        return Failure::from(anyhow::Error::from(c));
    }
    let (code, kind) = match &e {
        CaldavError::Unauthorized { .. } | CaldavError::Forbidden { .. } => {
            (3, Some(ErrorKind::NotAllowed))
        }
        CaldavError::BadUrl { .. } | CaldavError::NotACalendar { .. } => {
            (2, Some(ErrorKind::Invalid))
        }
        CaldavError::NotFound { .. } => (4, Some(ErrorKind::NotFound)),
        CaldavError::Unreachable { .. } | CaldavError::Server { .. } => {
            (5, Some(ErrorKind::Unavailable))
        }
        CaldavError::Secret(SecretError::Missing { .. }) => (1, Some(ErrorKind::NotFound)),
        _ => (1, None),
    };
    Failure {
        code,
        error: anyhow::Error::from(e),
        kind,
    }
}

impl Failure {
    /// The same failure, its message prefixed.
    fn context_msg(self, msg: &'static str) -> Self {
        Failure {
            error: self.error.context(msg),
            ..self
        }
    }
}
