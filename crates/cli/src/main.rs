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
mod multi;
mod output;
mod print;
mod prompt;
mod requests;
mod servers_cmd;
mod targets;
mod watch;
mod when;

use clap::Parser;
use commands::gpus;
use failure::{exit_code, usage, Failure};
use gpubook_client::ClientError;
use print::{print_json, print_response};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
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
