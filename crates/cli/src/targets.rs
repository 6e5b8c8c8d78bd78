//! Which servers a command talks to: `--server` read through the person's server list, and
//! how each is reached (its socket, or SSH with the terminal to ask on).

use crate::{usage, Failure};
use anyhow::anyhow;
use gpubook_client::endpoint::{dial, DialError};
use gpubook_client::servers::{ServerList, LOCAL};
use gpubook_client::ssh::{self, SshErrorKind};
use gpubook_client::{ClientError, Connection, Endpoint};
use gpubook_proto::ErrorKind;
use std::future::Future;
use std::sync::Arc;

/// How the CLI names itself to agents.
pub const CLIENT: &str = concat!("gpubook-cli ", env!("CARGO_PKG_VERSION"));

/// Exit status: SSH refused the login (keys, password, passphrase).
pub const EXIT_AUTH: u8 = 7;
/// Exit status: the server's host key is unknown (not accepted) or has changed.
pub const EXIT_HOST_KEY: u8 = 8;

/// One server a command talks to.
#[derive(Debug, Clone)]
pub struct Server {
    /// What to call it in output: its name in the list, or the address as given.
    pub name: String,
    /// Where it is.
    pub endpoint: Endpoint,
    /// How to connect over SSH.
    pub opts: ssh::Options,
}

/// Reads `--server` (`local`, `unix:PATH`, a name from the server list, an ssh alias,
/// `user@host[:port]`, `ssh://...`, `any`, or a comma list of those); `all` (from `--all`)
/// means every server in the list. The list file is read only when a name needs it.
pub fn resolve(
    server: &str,
    all: bool,
    uid: u32,
    opts: &ssh::Options,
) -> Result<Vec<Server>, Failure> {
    let mut list: Option<ServerList> = None;
    let mut load = || -> Result<ServerList, Failure> {
        if list.is_none() {
            list = Some(ServerList::load_default().map_err(|e| Failure {
                code: 2,
                error: anyhow!(e),
                kind: Some(ErrorKind::Invalid),
            })?);
        }
        Ok(list.clone().expect("just loaded"))
    };
    let items: Vec<&str> = if all {
        vec!["any"]
    } else {
        server.split(',').map(str::trim).collect()
    };
    let mut out: Vec<Server> = Vec::new();
    let mut push = |name: String, spec: &str| -> Result<(), Failure> {
        if out.iter().any(|t| t.name == name) {
            return Ok(());
        }
        let endpoint = Endpoint::parse(spec, uid).map_err(|e| usage(e.to_string()))?;
        out.push(Server {
            name,
            endpoint,
            opts: opts.clone(),
        });
        Ok(())
    };
    for item in items {
        match item {
            "" => return Err(usage(format!("--server {server:?} names an empty server"))),
            LOCAL => push(LOCAL.into(), LOCAL)?,
            "any" | "all" => {
                for e in load()?.all() {
                    push(e.name, &e.spec)?;
                }
            }
            s if s.starts_with("unix:") => push(s.into(), s)?,
            s => match load()?.get(s) {
                Some(e) => push(e.name, &e.spec)?,
                None => push(s.into(), s)?,
            },
        }
    }
    Ok(out)
}

/// SSH options for this run: `--accept-new-host-key`, the terminal to ask on when there is
/// one, and the OS keyring for passphrases and passwords.
pub fn ssh_options(accept_new_host_key: bool) -> ssh::Options {
    ssh::Options {
        accept_new_host_key,
        prompt: crate::prompt::TerminalPrompt::if_interactive()
            .map(|p| Arc::new(p) as Arc<dyn ssh::Prompt>),
        keyring: true,
        ..ssh::Options::default()
    }
}

impl Server {
    /// A connection to the agent, or a failure that names the server and carries the exit
    /// status (see `EXIT_HELP`).
    pub async fn connect(&self) -> Result<Connection, Failure> {
        dial(&self.endpoint, &self.opts, CLIENT)
            .await
            .map_err(|e| dial_failure(&self.name, e))
    }

    /// The dial of a live session (`watch`, `feed`, `caldav sync`): its errors stay typed,
    /// so that a refused login is retried only every few minutes (gpubook_client::live).
    pub fn dialer(
        &self,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Result<Connection, DialError>> + Send>>
           + Send
           + Sync
           + 'static {
        let t = self.clone();
        move || {
            let t = t.clone();
            Box::pin(async move { dial(&t.endpoint, &t.opts, CLIENT).await })
        }
    }
}

/// A failed dial as a failure: its exit status, kind and a message naming the server.
pub fn dial_failure(server: &str, e: DialError) -> Failure {
    let (code, kind) = match &e {
        DialError::Client(c) => (crate::exit_code(c.kind()), c.kind()),
        DialError::Deploy(d) => match d.ssh_kind() {
            Some(SshErrorKind::Config) => (2, ErrorKind::Invalid),
            Some(SshErrorKind::Unreachable) => (5, ErrorKind::Unavailable),
            Some(SshErrorKind::Auth) => (EXIT_AUTH, ErrorKind::NotAllowed),
            Some(SshErrorKind::HostKeyUnknown) | Some(SshErrorKind::HostKeyChanged) => {
                (EXIT_HOST_KEY, ErrorKind::NotAllowed)
            }
            Some(SshErrorKind::Deploy) => (1, ErrorKind::Unavailable),
            None => {
                let k = d.kind();
                (crate::exit_code(k), k)
            }
        },
    };
    // A local socket's message already says where; an SSH one names the server itself.
    let error = match &e {
        DialError::Client(ClientError::Unreachable { .. }) | DialError::Deploy(_) => anyhow!(e),
        _ => anyhow!(e).context(format!("server {server}")),
    };
    Failure {
        code,
        error,
        kind: Some(kind),
    }
}

/// The string form of a failure's kind for `--json`, SSH kinds included.
pub fn kind_name(f: &Failure) -> &'static str {
    match f.error.downcast_ref::<DialError>() {
        Some(DialError::Deploy(d)) => match d.ssh_kind() {
            Some(k) => k.as_str(),
            None => d.kind().as_str(),
        },
        _ => f.kind.map(|k| k.as_str()).unwrap_or("other"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &[Server]) -> Vec<String> {
        t.iter().map(|t| t.name.clone()).collect()
    }

    #[test]
    fn server_lists_resolve_names_specs_and_any() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("servers.toml");
        std::env::set_var("GPUBOOK_SERVERS", &file);
        let mut list = ServerList::load(&file).unwrap();
        list.add("lab1", "alice@lab1.example.org:2222").unwrap();
        list.add("sock", "unix:/tmp/x.sock").unwrap();
        let o = ssh::Options::default();
        let t = resolve("lab1", false, 0, &o).unwrap();
        assert_eq!(
            t[0].endpoint,
            Endpoint::Ssh("alice@lab1.example.org:2222".into())
        );
        assert_eq!(
            names(&resolve("any", false, 0, &o).unwrap()),
            ["local", "lab1", "sock"]
        );
        assert_eq!(
            names(&resolve("local", true, 0, &o).unwrap()),
            ["local", "lab1", "sock"]
        );
        let t = resolve("sock, bob@other,lab1,sock", false, 0, &o).unwrap();
        assert_eq!(names(&t), ["sock", "bob@other", "lab1"]);
        assert_eq!(t[1].endpoint, Endpoint::Ssh("bob@other".into()));
        assert_eq!(resolve("a,,b", false, 0, &o).unwrap_err().code, 2);
        assert_eq!(resolve("a b", false, 0, &o).unwrap_err().code, 2);
        // A broken list is an error only where a name needs it.
        std::fs::write(&file, "[[server]\n").unwrap();
        assert!(resolve("local", false, 0, &o).is_ok());
        assert!(resolve("unix:/x", false, 0, &o).is_ok());
        let e = resolve("lab1", false, 0, &o).unwrap_err();
        assert!(
            e.error.to_string().contains("servers.toml:1"),
            "{:#}",
            e.error
        );
        std::env::remove_var("GPUBOOK_SERVERS");
    }
}
