//! `gpubook servers`: the person's server list, shared with the desktop app.

use crate::{output, print_json, Failure};
use anyhow::anyhow;
use clap::{Args, Subcommand};
use gpubook_client::servers::{ServerList, ServersError};
use gpubook_proto::ErrorKind;

/// `gpubook servers [ls|add|rm]`.
#[derive(Debug, Args)]
pub struct ServersArgs {
    #[command(subcommand)]
    command: Option<ServersCommand>,
}

#[derive(Debug, Subcommand)]
enum ServersCommand {
    /// List the servers ("local", this computer, is always first).
    Ls,
    /// Add a server: `gpubook servers add lab1 alice@lab1.example.org`.
    Add {
        /// What to call it (letters, digits, '-', '_', '.').
        name: String,
        /// Where it is: an ssh alias, user@host[:port], ssh://user@host[:port], unix:PATH.
        spec: String,
    },
    /// Remove a server from the list (nothing on the server changes).
    Rm {
        /// Its name.
        name: String,
    },
}

/// Runs `gpubook servers ...`.
pub fn run(a: &ServersArgs, json: bool) -> Result<(), Failure> {
    let mut list = ServerList::load_default().map_err(failure)?;
    match a.command.as_ref().unwrap_or(&ServersCommand::Ls) {
        ServersCommand::Ls => {
            let all = list.all();
            if json {
                print_json(&all);
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|s| {
                        let spec = if s.name == "local" {
                            "local (this computer)".to_string()
                        } else {
                            s.spec.clone()
                        };
                        vec![s.name.clone(), spec]
                    })
                    .collect();
                println!("{}", output::table(&["NAME", "WHERE"], &rows));
                eprintln!("(from {})", list.path().display());
            }
        }
        ServersCommand::Add { name, spec } => {
            list.add(name, spec).map_err(failure)?;
            if json {
                print_json(&list.get(name));
            } else {
                println!("Added {name} ({spec}). Try it: gpubook --server {name} gpus");
            }
        }
        ServersCommand::Rm { name } => {
            let removed = list.remove(name).map_err(failure)?;
            if json {
                print_json(&removed);
            } else {
                println!("Removed {name} ({}).", removed.spec);
            }
        }
    }
    Ok(())
}

fn failure(e: ServersError) -> Failure {
    let (code, kind) = match &e {
        ServersError::BadName { .. } | ServersError::BadSpec { .. } => (2, ErrorKind::Invalid),
        ServersError::Exists(_) => (3, ErrorKind::Conflict),
        ServersError::NotFound(_) => (4, ErrorKind::NotFound),
        ServersError::NoConfigDir | ServersError::Io { .. } | ServersError::Malformed { .. } => {
            (1, ErrorKind::Invalid)
        }
    };
    Failure {
        code,
        error: anyhow!(e),
        kind: Some(kind),
    }
}
