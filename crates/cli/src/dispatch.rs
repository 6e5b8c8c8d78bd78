//! Which servers a command goes to and how: one server (a connection, then the command's
//! handler), several (`gpus`, `ls`, `book --asap --count` across them), or none (`servers`).

use crate::args::{Cli, Command};
use crate::Failure;
use crate::{
    calendar, commands, jobs, multi, requests, servers_cmd, shell, suggest, targets, usage, watch,
};
use chrono::Utc;
use gpubook_client::servers::asap::AsapAsk;
use gpubook_proto::{BookRequest, Request};

/// Runs the command the arguments name.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let all = match &cli.command {
        Command::Gpus { all } => *all,
        Command::Ls(a) => a.all,
        _ => false,
    };
    refuse_contradictions(&cli, all)?;
    if let Command::Servers(a) = &cli.command {
        return servers_cmd::run(a, cli.json);
    }
    #[cfg(unix)]
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    // No uids (nor local agents) on Windows; the uid names only a local socket.
    #[cfg(not(unix))]
    let uid = 0;
    let opts = targets::ssh_options(cli.accept_new_host_key);
    let targets = targets::resolve(&cli.server, all, uid, &opts)?;
    let now = Utc::now();
    // Read every argument before connecting: a typo is a usage error, never half a request.
    let mut request = requests::build_request(&cli.command, now)?;
    if let Some(Request::Book(BookRequest { job: Some(job), .. })) = &mut request {
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        jobs::place_cwd(job, &targets, std::env::current_dir, home).map_err(usage)?;
    }
    // Several servers asked for (a list, any, --all) keep the many-server output even when the
    // list holds one, so that scripts see one shape; a command for one server is refused
    // there (by `several`), however many the list holds.
    if targets.len() != 1 || all || names_several(&cli.server) {
        return several(&cli, &targets, request).await;
    }
    let target = &targets[0];
    match &cli.command {
        Command::Ics(a) => return calendar::ics(a, target, cli.json).await,
        Command::Feed(a) => return calendar::feed(a, target, cli.json).await,
        Command::Caldav(a) => return calendar::caldav(a, target, cli.json).await,
        Command::Watch {
            after,
            readings,
            count,
        } => return watch::watch(target, *after, *readings, *count, cli.json).await,
        Command::Report(a) => return crate::report::run(a, target, cli.json).await,
        Command::Notify(a) => return crate::notify::run(a, target, cli.json).await,
        Command::Maintenance(a) => return crate::maintenance::run(a, target, cli.json).await,
        _ => {}
    }
    let conn = target.connect().await?;
    if let Command::Shell { id, command } = &cli.command {
        return shell::shell(target, &conn, gpubook_core::BookingId(*id), command).await;
    }
    if let (true, Some(req)) = (auto_length(&cli.command), request.as_mut()) {
        suggest::fill(&conn, &target.name, req, cli.json).await?;
    }
    commands::one_server(&cli.command, conn, request, cli.json).await
}

/// Whether the command books with `--for auto`: its length comes from the server.
fn auto_length(command: &Command) -> bool {
    match command {
        Command::Book(a) | Command::Run(a) => suggest::is_auto(a.r#for.as_deref()),
        _ => false,
    }
}

/// Whether `--server` asks for several servers: a comma list, `any` or `all`.
fn names_several(server: &str) -> bool {
    server.split(',').count() > 1 || matches!(server.trim(), "any" | "all")
}

/// Refuses flags that contradict a `--server` given on the command line, rather than let one
/// of them quietly win: `--all` (every server in the list) with a server named, and the
/// commands that talk to no gpubook server (`servers`, `caldav login`, `caldav logout`).
/// (A command for one server given several is refused by `several`.)
fn refuse_contradictions(cli: &Cli, all: bool) -> Result<(), Failure> {
    if !cli.server_given {
        return Ok(());
    }
    if all && !names_several(&cli.server) {
        return Err(usage(format!(
            "--all asks every server in your list, but --server names {}: give one or the \
             other",
            cli.server
        )));
    }
    if matches!(cli.command, Command::Servers(_)) {
        return Err(usage(format!(
            "gpubook servers edits your list on this computer and talks to no server, so \
             --server {} means nothing here: leave it out",
            cli.server
        )));
    }
    if matches!(&cli.command, Command::Caldav(a) if !a.talks_to_a_server()) {
        return Err(usage(format!(
            "caldav login and logout talk to the CalDAV server and your keyring, not to a \
             gpubook server, so --server {} means nothing here: leave it out",
            cli.server
        )));
    }
    Ok(())
}

/// A command given several servers: `gpus`, `ls` and `book --asap --count` work across them;
/// the others talk to one server.
async fn several(
    cli: &Cli,
    targets: &[targets::Server],
    request: Option<Request>,
) -> Result<(), Failure> {
    let json = cli.json;
    match (&cli.command, request) {
        (Command::Gpus { .. }, _) => multi::gpus(targets, json).await,
        (Command::Ls(_), Some(Request::List(l))) => multi::ls(targets, l, json).await,
        (Command::Book(a), Some(req)) if a.asap && a.count.is_some() && a.node.is_none() => {
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
            let auto = auto_length(&cli.command)
                .then(|| suggest::ask_for(&req))
                .flatten();
            multi::book_asap(targets, ask, auto, req, json).await
        }
        (Command::Book(_), _) => Err(usage(format!(
            "with several servers ({}), book takes --asap --count N --for D and books where the \
             start is soonest; name one server to book named GPUs or at a time",
            names(targets)
        ))),
        _ => Err(usage(format!(
            "this command talks to one server, but --server {} asks for several ({}): name one",
            cli.server,
            names(targets)
        ))),
    }
}

fn names(targets: &[targets::Server]) -> String {
    if targets.is_empty() {
        return "none".into();
    }
    targets
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
