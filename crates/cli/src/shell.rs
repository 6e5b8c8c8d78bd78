//! `gpubook env N` and `gpubook shell N [-- CMD]`: the booked GPUs in one's own shell.
//!
//! The agent gives the booking's owner, while the slot is on, the variables its job would
//! have (`Request::JobEnv`, protocol 1.3): `CUDA_VISIBLE_DEVICES`, `CUDA_DEVICE_ORDER` and
//! `GPUBOOK_*`. `env` prints them as `export` lines for `eval`; `shell` opens a login shell
//! with them, on this computer for a local agent, else on the server through the person's own
//! `ssh` (a terminal when there is one), with what gpubook resolved for that server (host,
//! port, user, keys, the known_hosts files gpubook just checked the host key against).
//!
//! The shell does not carry the job's key (`GPUBOOK_JOB_KEY`): that key marks the job's
//! processes, so a shell carrying it would be adopted as the job after an agent restart and
//! swept when the job ends early. Its processes are the owner's (its uid), so the agent's
//! watch counts them as the booking's use and never as intruders; after the slot they are
//! like any other process left on the GPUs.

use crate::targets::Server;
use crate::{output, print_json, Failure};
use anyhow::anyhow;
use gpubook_client::ssh::SshHost;
use gpubook_client::{Connection, Endpoint};
use gpubook_core::BookingId;
use gpubook_proto::{ErrorKind, JobEnvRequest, JobEnvResponse, Request, Response};
use std::process::Command;

/// The first protocol minor whose agents answer `Request::JobEnv`.
pub const JOB_ENV_MINOR: u32 = 3;

/// The variables as `export NAME='value'` lines, for `eval "$(gpubook env N)"`.
pub fn exports(vars: &[(String, String)]) -> String {
    vars.iter()
        .map(|(k, v)| format!("export {k}={}\n", quote_always(v)))
        .collect()
}

/// `v` in single quotes, as every POSIX shell reads it back.
fn quote_always(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

/// Booking `id`'s job variables from the agent behind `conn`.
pub async fn job_env(conn: &Connection, id: BookingId) -> Result<JobEnvResponse, Failure> {
    let w = conn.welcome();
    if w.minor < JOB_ENV_MINOR {
        return Err(Failure {
            code: crate::exit_code(ErrorKind::Incompatible),
            error: anyhow!(
                "the agent on {} (gpubook-agent {}, protocol {}.{}) is too old to give a \
                 booking's variables: env and shell need protocol {}.{JOB_ENV_MINOR}; upgrade \
                 gpubook-agent there",
                w.server,
                w.agent_version,
                w.major,
                w.minor,
                w.major
            ),
            kind: Some(ErrorKind::Incompatible),
        });
    }
    match conn
        .request(Request::JobEnv(JobEnvRequest { id }))
        .await
        .map_err(anyhow::Error::from)?
    {
        Response::JobEnv(e) => Ok(e),
        other => Err(anyhow!("unexpected answer {other:?}").into()),
    }
}

/// `gpubook env N`: `export` lines (or, with `--json`, the answer).
pub async fn env(conn: &Connection, id: BookingId, json: bool) -> Result<(), Failure> {
    let e = job_env(conn, id).await?;
    if json {
        print_json(&e);
    } else {
        print!("{}", exports(&e.vars));
    }
    Ok(())
}

/// `gpubook shell N [-- CMD]`: replaces this process with a login shell (running `command`
/// when given) that has the booking's variables; its exit status is gpubook's.
pub async fn shell(
    target: &Server,
    conn: &Connection,
    id: BookingId,
    command: &[String],
) -> Result<(), Failure> {
    let e = job_env(conn, id).await?;
    let command = (!command.is_empty()).then(|| crate::jobs::command_line(command));
    let mut cmd = match &target.endpoint {
        Endpoint::Unix(_) => local_shell(&e.vars, command.as_deref()),
        Endpoint::Ssh(spec) => ssh_shell(target, spec, &e.vars, command.as_deref())?,
    };
    if command.is_none() {
        eprintln!(
            "gpubook: a shell on {} with booking {id}'s GPUs ({}); exit it when done",
            e.server,
            e.vars
                .iter()
                .find(|(k, _)| k == "GPUBOOK_SLOT_END")
                .and_then(|(_, v)| chrono::DateTime::parse_from_rfc3339(v).ok())
                .map(|end| format!("the slot ends {}", output::when(end.to_utc())))
                .unwrap_or_default()
        );
    }
    #[cfg(unix)]
    let err = std::os::unix::process::CommandExt::exec(&mut cmd);
    // No exec on Windows: the shell runs as a child, and its status becomes ours.
    #[cfg(windows)]
    let err = match cmd.status() {
        Ok(status) => std::process::exit(status.code().unwrap_or(1)),
        Err(e) => e,
    };
    Err(anyhow!("cannot start {:?}: {err}", cmd.get_program()).into())
}

/// The person's login shell here, with the variables added to this environment.
fn local_shell(vars: &[(String, String)], command: Option<&str>) -> Command {
    let shell = std::env::var("SHELL")
        .ok()
        .filter(|s| s.starts_with('/'))
        .unwrap_or_else(|| "/bin/sh".into());
    let mut cmd = Command::new(shell);
    cmd.arg("-l");
    if let Some(c) = command {
        cmd.arg("-c").arg(c);
    }
    cmd.envs(vars.iter().map(|(k, v)| (k, v)));
    cmd
}

/// What the server's shell runs: the variables set by `env`, then the person's login shell
/// (`$SHELL` there), which runs `command` when given. Written for `/bin/sh` and passed to it,
/// so a login shell of another family (fish, csh) on the server reads only plain words.
pub fn remote_command(vars: &[(String, String)], command: Option<&str>) -> String {
    let mut words = vec!["exec".to_string(), "env".to_string()];
    words.extend(vars.iter().map(|(k, v)| format!("{k}={}", quote_always(v))));
    words.push("/bin/sh".into());
    words.push("-c".into());
    match command {
        None => words.push(quote_always(r#"exec "${SHELL:-/bin/sh}" -l"#)),
        Some(c) => {
            words.push(quote_always(r#"exec "${SHELL:-/bin/sh}" -lc "$1""#));
            words.push("sh".into());
            words.push(quote_always(c));
        }
    }
    words.join(" ")
}

/// The person's `ssh`, told what gpubook resolved for `spec`: the host key was just checked
/// against these known_hosts files by gpubook's own connection, so any other key is refused.
fn ssh_shell(
    target: &Server,
    spec: &str,
    vars: &[(String, String)],
    command: Option<&str>,
) -> Result<Command, Failure> {
    let t = SshHost::resolve_with(spec, &target.opts.env)
        .map_err(|e| crate::usage(format!("cannot read how to reach {spec}: {e}")))?;
    let mut cmd = Command::new("ssh");
    if let Some(f) = target
        .opts
        .env
        .config
        .clone()
        .or_else(|| std::env::var_os("GPUBOOK_SSH_CONFIG").map(Into::into))
    {
        cmd.arg("-F").arg(f);
    }
    // A terminal only when there is one to give it.
    // SAFETY: isatty only reads the descriptor's state.
    let tty = unsafe { libc::isatty(0) } == 1;
    cmd.arg(if tty { "-t" } else { "-T" });
    let files = |fs: &[std::path::PathBuf]| {
        fs.iter()
            .map(|f| format!("\"{}\"", f.display()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    cmd.arg("-o").arg("StrictHostKeyChecking=yes");
    cmd.arg("-o")
        .arg(format!("UserKnownHostsFile={}", files(&t.user_known_hosts)));
    cmd.arg("-o").arg(format!(
        "GlobalKnownHostsFile={}",
        files(&t.global_known_hosts)
    ));
    if let Some(alias) = &t.host_key_alias {
        cmd.arg("-o").arg(format!("HostKeyAlias={alias}"));
    }
    for key in t.identity_files.iter().filter(|k| k.exists()) {
        cmd.arg("-i").arg(key);
    }
    if t.identities_only {
        cmd.arg("-o").arg("IdentitiesOnly=yes");
    }
    match (&t.identity_agent, t.use_agent) {
        (_, false) => {
            cmd.arg("-o").arg("IdentityAgent=none");
        }
        (Some(a), true) => {
            cmd.arg("-o").arg(format!("IdentityAgent={}", a.display()));
        }
        (None, true) => {
            if let Some(sock) = target.opts.env.agent_socket() {
                cmd.env("SSH_AUTH_SOCK", sock);
            }
        }
    }
    if let Some(timeout) = t.connect_timeout {
        cmd.arg("-o")
            .arg(format!("ConnectTimeout={}", timeout.as_secs().max(1)));
    }
    if !t.proxy_jump.is_empty() {
        let hops: Vec<String> = t
            .proxy_jump
            .iter()
            .map(|h| format!("{}@{}:{}", h.user, h.host, h.port))
            .collect();
        cmd.arg("-J").arg(hops.join(","));
    }
    cmd.arg("-p")
        .arg(t.port.to_string())
        .arg("-l")
        .arg(&t.user)
        .arg("--")
        .arg(&t.host)
        .arg(remote_command(vars, command));
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        vec![
            ("CUDA_VISIBLE_DEVICES".into(), "GPU-a,GPU-b".into()),
            ("GPUBOOK_ODD".into(), "it's $HOME".into()),
        ]
    }

    #[test]
    fn exports_read_back_exactly_in_a_shell() {
        let text = exports(&vars());
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{text}printf '%s|%s' \"$CUDA_VISIBLE_DEVICES\" \"$GPUBOOK_ODD\""
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "GPU-a,GPU-b|it's $HOME"
        );
    }

    #[test]
    fn the_remote_command_sets_the_variables_and_runs_the_login_shell() {
        let c = remote_command(&vars(), Some("printenv GPUBOOK_ODD; echo 'done'"));
        // As sshd would run it: through the account's shell.
        let out = Command::new("sh")
            .arg("-c")
            .arg(&c)
            .env("SHELL", "/bin/sh")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "it's $HOME\ndone\n",
            "{c}"
        );
    }
}
