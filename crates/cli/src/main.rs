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

mod args;
mod calendar;
mod commands;
mod decide;
mod dispatch;
mod failure;
mod jobs;
mod maintenance;
mod multi;
mod notify;
mod output;
mod print;
mod prompt;
mod report;
mod requests;
mod saved;
mod series;
mod servers_cmd;
mod shell;
mod suggest;
mod targets;
mod transfers;
mod usage_report;
mod watch;
mod when;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use commands::gpus;
use failure::{exit_code, usage, Failure};
use gpubook_client::ClientError;
use print::{print_json, print_response};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match args::Cli::command().try_get_matches().and_then(|m| {
        let mut cli = args::Cli::from_arg_matches(&m)?;
        cli.server_given = m.value_source("server") == Some(ValueSource::CommandLine);
        Ok(cli)
    }) {
        Ok(cli) => cli,
        Err(e) => return argument_error(e),
    };
    let json = cli.json;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    match rt.block_on(dispatch::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if json {
                let (kind, conflicts, revision) = match f.error.downcast_ref::<ClientError>() {
                    Some(ClientError::Agent(e)) => (Some(e.kind), e.conflicts.clone(), e.revision),
                    _ => (None, Vec::new(), None),
                };
                let kind = kind
                    .map(|k| k.as_str())
                    .unwrap_or_else(|| targets::kind_name(&f));
                let mut v = error_json(kind, &format!("{:#}", f.error), conflicts);
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

/// The one shape of an error in `--json`, on stderr: `{"error": {"kind", "message",
/// "conflicts"}}`.
fn error_json<C: serde::Serialize>(kind: &str, message: &str, conflicts: C) -> serde_json::Value {
    serde_json::json!({
        "error": { "kind": kind, "message": message, "conflicts": conflicts }
    })
}

/// The arguments could not be read: clap's message and status, as JSON when `--json` was
/// among them (before a `--`), so a script reads every failure one way. Help and the version
/// are printed as asked.
fn argument_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind as Clap;
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if !json || matches!(e.kind(), Clap::DisplayHelp | Clap::DisplayVersion) {
        e.exit();
    }
    let text = e.render().to_string();
    // The first paragraph says what is wrong; the rest is usage and a pointer to --help.
    let message = text
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .trim()
        .trim_start_matches("error: ");
    eprintln!("{}", error_json("invalid", message, [(); 0]));
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}
