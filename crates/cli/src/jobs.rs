//! The job commands: a booking's command line from the arguments after `--`, and `logs`,
//! `wait`, `run` and `usage`.

use crate::output;
use crate::targets::Server;
use clap::Args;
use gpubook_client::{ClientError, Connection, Endpoint, Pushed};
use gpubook_core::{Booking, BookingId, JobSpec, JobState};
use gpubook_proto::{EventKind, ListRequest, LogsRequest, Request, Response};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// What a booking's job is; the command comes after `--`.
#[derive(Debug, Args, Default)]
pub struct JobArgs {
    /// The job's working directory [default: the owner's home]. With the local agent a
    /// relative path (and ~/) is read from where you are; on a server over SSH give an
    /// absolute path there.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Extra environment for the job, NAME=VALUE (repeat).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// The signal sent at the slot's end [default: SIGTERM]; e.g. SIGUSR1 to checkpoint.
    #[arg(long)]
    pub end_signal: Option<String>,
    /// Seconds between that signal and SIGKILL [default: 30].
    #[arg(long)]
    pub grace: Option<u32>,
    /// Keep the rest of the slot if the job ends early (default: give it back to the lab).
    #[arg(long)]
    pub keep_slot: bool,
    /// Data copied to the server's local scratch before the slot starts, as you (repeat):
    /// SOURCE is a path on the server you can read, or s3://bucket/prefix with your
    /// ~/.aws/credentials there; the job finds it in $GPUBOOK_STAGE/NAME.
    #[arg(long = "stage", value_name = "NAME=SOURCE")]
    pub stage: Vec<String>,
    /// Files to keep when the job ends, a glob relative to its working directory (repeat),
    /// e.g. 'runs/**/best.pt'; needs --save-to.
    #[arg(long = "save", value_name = "GLOB")]
    pub save: Vec<String>,
    /// Where --save copies them, as you: a directory on the server or s3://bucket/prefix;
    /// {server}, {id} and {owner} are filled in, e.g. s3://b/yolo/{server}-{id}/.
    #[arg(long = "save-to", value_name = "DEST")]
    pub save_to: Option<String>,
    /// For s3:// in --stage and --save-to: the profile of your ~/.aws/credentials on the
    /// server to use [default: default].
    #[arg(long = "s3-profile", value_name = "NAME")]
    pub s3_profile: Option<String>,
    /// For s3://: an environment file of yours on the server (AWS_ACCESS_KEY_ID=...,
    /// AWS_SECRET_ACCESS_KEY=..., AWS_ENDPOINT_URL=..., AWS_REGION=...), an absolute path
    /// there or ~/...; its values win over the profile's. gpubook never reads it on this
    /// computer or stores the keys.
    #[arg(long = "s3-env-file", value_name = "PATH")]
    pub s3_env_file: Option<String>,
    /// The command, run through your login shell at the slot's start. One argument is taken
    /// as a shell command line; several are quoted one by one.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl JobArgs {
    /// The job these arguments describe, if a command was given.
    pub fn spec(&self) -> Result<Option<JobSpec>, String> {
        if self.command.is_empty() {
            if self.cwd.is_some()
                || !self.env.is_empty()
                || self.end_signal.is_some()
                || self.grace.is_some()
                || self.keep_slot
                || !self.stage.is_empty()
                || !self.save.is_empty()
                || self.save_to.is_some()
                || self.s3_profile.is_some()
                || self.s3_env_file.is_some()
            {
                return Err("job options need a command after --".into());
            }
            return Ok(None);
        }
        let mut env = BTreeMap::new();
        for e in &self.env {
            let (k, v) = e
                .split_once('=')
                .ok_or_else(|| format!("--env {e:?}: write NAME=VALUE"))?;
            if !is_variable_name(k) {
                return Err(format!(
                    "--env {e:?}: {k:?} is not a variable name (letters, digits and _, not \
                     starting with a digit)"
                ));
            }
            env.insert(k.to_string(), v.to_string());
        }
        let mut stage = BTreeMap::new();
        for e in &self.stage {
            let (name, source) = e
                .split_once('=')
                .ok_or_else(|| format!("--stage {e:?}: write NAME=SOURCE"))?;
            if stage.insert(name.to_string(), source.to_string()).is_some() {
                return Err(format!("--stage {name}: given twice"));
            }
        }
        let s3 = gpubook_core::S3Access {
            profile: self.s3_profile.clone(),
            env_file: self.s3_env_file.clone(),
        };
        gpubook_core::transfer::check_transfers(&stage, &self.save, self.save_to.as_deref(), &s3)
            .map_err(|e| e.to_string())?;
        Ok(Some(JobSpec {
            command: command_line(&self.command),
            cwd: self.cwd.clone(),
            env,
            end_signal: self.end_signal.clone(),
            grace_secs: self.grace,
            keep_slot: self.keep_slot,
            stage,
            save: self.save.clone(),
            save_to: self.save_to.clone(),
            s3,
        }))
    }
}

/// A POSIX environment variable name: letters, digits and `_`, not starting with a digit.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Makes a job's working directory absolute before it is sent. The agent runs the job where
/// it is told and takes only absolute paths: for the local agent (a socket on this computer) a
/// relative path is read from `here` and `~` or `~/...` from `home`, as a shell would; on a
/// server over SSH neither means anything this side, so they are refused with what to give
/// instead. `targets` are the servers the request may go to (several for `book --asap`).
pub fn place_cwd(
    job: &mut JobSpec,
    targets: &[Server],
    here: impl FnOnce() -> std::io::Result<PathBuf>,
    home: Option<PathBuf>,
) -> Result<(), String> {
    let Some(cwd) = job.cwd.as_deref() else {
        return Ok(());
    };
    if cwd.is_empty() {
        return Err("--cwd is empty: give a directory, or leave it out for your home".into());
    }
    if cwd.starts_with('/') {
        return Ok(());
    }
    if let Some(remote) = targets
        .iter()
        .find(|t| !matches!(t.endpoint, Endpoint::Unix(_)))
    {
        return Err(format!(
            "--cwd must be an absolute path on {}: {cwd:?} is read on this computer only, \
             so give an absolute path on the server (starting with /)",
            remote.name
        ));
    }
    let placed = match cwd.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let home = home.ok_or_else(|| {
                format!("--cwd {cwd:?}: HOME is not set, so ~ means nothing; give an absolute path")
            })?;
            match rest.trim_start_matches('/') {
                "" => home,
                rest => home.join(rest),
            }
        }
        Some(_) => {
            return Err(format!(
                "--cwd {cwd:?}: ~user is not read here; give an absolute path"
            ))
        }
        None => {
            let here = here().map_err(|e| {
                format!("--cwd {cwd:?} is relative, but the current directory is unknown ({e})")
            })?;
            here.join(cwd)
        }
    };
    // Lexically: "." goes, ".." stays (it may cross a symbolic link, as it does for the shell).
    let placed = std::path::absolute(&placed).unwrap_or(placed);
    job.cwd = Some(
        placed
            .to_str()
            .ok_or_else(|| format!("--cwd {cwd:?} leads to a path that is not UTF-8"))?
            .to_string(),
    );
    Ok(())
}

/// One argument: a command line as written. Several: each quoted for the shell, so an
/// argument with spaces or quotes arrives as one argument.
pub fn command_line(args: &[String]) -> String {
    if args.len() == 1 {
        return args[0].clone();
    }
    args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

fn quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// One booking, by id, whatever its state.
pub async fn booking(conn: &Connection, id: BookingId) -> Result<Booking, anyhow::Error> {
    let list = conn
        .list_all(ListRequest {
            include_past: true,
            ..ListRequest::default()
        })
        .await?;
    list.bookings
        .into_iter()
        .find(|b| b.id == id)
        .ok_or_else(|| {
            ClientError::Agent(gpubook_proto::ErrorBody::new(
                gpubook_proto::ErrorKind::NotFound,
                format!("there is no booking {id} on {}", list.server),
            ))
            .into()
        })
}

/// The exit status a finished job gives `wait` and `run`: its own exit code, 128 + the signal
/// that ended it, 127 when it could not start, 1 when it was lost.
pub fn job_status(b: &Booking) -> Option<u8> {
    let run = b.run.as_ref()?;
    if !run.state.is_over() {
        return None;
    }
    Some(match run.state {
        JobState::FailedToStart => 127,
        JobState::Lost => 1,
        _ => match (run.exit_code, run.signal) {
            (Some(c), _) => c.clamp(0, 255) as u8,
            (None, Some(s)) => (128 + s).clamp(0, 255) as u8,
            (None, None) => 1,
        },
    })
}

/// A booking with a job whose slot passed without a run is over too: nothing will start.
pub(crate) fn never_ran(b: &Booking) -> bool {
    b.run.is_none() && b.state.is_final()
}

/// Where a job's log goes: as it is to stdout (people), one JSON line per piece read
/// (`--json` while the job writes: `{"id", "log"}`), or kept, to print as one JSON document.
pub enum LogOut {
    /// The bytes as the job wrote them.
    Raw,
    /// `{"id": N, "log": "..."}` a line.
    JsonLines,
    /// Everything read so far.
    Collect(String),
}

impl LogOut {
    fn put(&mut self, id: BookingId, data: &str) {
        match self {
            LogOut::Raw => {
                let mut out = std::io::stdout();
                if let Err(e) = out.write_all(data.as_bytes()).and_then(|()| out.flush()) {
                    crate::output::stdout_failed(&e);
                }
            }
            LogOut::JsonLines if data.is_empty() => {}
            LogOut::JsonLines => println!("{}", serde_json::json!({ "id": id, "log": data })),
            LogOut::Collect(all) => all.push_str(data),
        }
    }
}

/// Prints the log from `offset`; returns the next offset and whether the job is over.
async fn print_log(
    conn: &Connection,
    id: BookingId,
    offset: u64,
    out: &mut LogOut,
) -> Result<(u64, bool), anyhow::Error> {
    let mut offset = offset;
    loop {
        match conn
            .request(Request::Logs(LogsRequest {
                id,
                offset,
                follow: None,
            }))
            .await?
        {
            Response::Logs(l) => {
                out.put(id, &l.data);
                let more = l.next > offset;
                offset = l.next;
                if !more {
                    return Ok((offset, l.done));
                }
            }
            other => anyhow::bail!("unexpected answer {other:?}"),
        }
    }
}

/// `gpubook logs ID [-f]`. With `--json`: one document `{"id", "log", "done"}`, or with
/// `-f` one `{"id", "log"}` line per piece as the job writes.
pub async fn logs(
    conn: &Connection,
    id: BookingId,
    follow: bool,
    json: bool,
) -> Result<(), anyhow::Error> {
    let mut out = match (json, follow) {
        (false, _) => LogOut::Raw,
        (true, true) => LogOut::JsonLines,
        (true, false) => LogOut::Collect(String::new()),
    };
    let mut offset = 0;
    loop {
        let (next, done) = print_log(conn, id, offset, &mut out).await?;
        offset = next;
        if !follow || done {
            // One last read: the job may have written its last lines as it ended.
            if follow {
                print_log(conn, id, offset, &mut out).await?;
            }
            if let LogOut::Collect(log) = out {
                crate::print_json(&serde_json::json!({ "id": id, "log": log, "done": done }));
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until booking `id`'s job is over; streams its log on the way if `stream` (with
/// `json`, as `{"id", "log"}` lines); then, if `until_saved` and the job saves files, until
/// the agent says they were saved or could not be (at most [`crate::saved::SAVE_WAIT`]). A booking without
/// a job is "not found" (exit 4), as `logs` finds no log for it.
pub async fn wait(
    conn: &Connection,
    id: BookingId,
    stream: bool,
    json: bool,
    until_saved: bool,
) -> Result<crate::saved::Ended, anyhow::Error> {
    // Listen first, then look: an end between the two is not missed.
    let (_, mut events) = conn.subscribe(None, false).await?;
    let mut b = booking(conn, id).await?;
    let Some(job) = b.job.clone() else {
        anyhow::bail!(ClientError::Agent(gpubook_proto::ErrorBody::new(
            gpubook_proto::ErrorKind::NotFound,
            format!("booking {id} has no job to wait for"),
        )));
    };
    let saves = until_saved && !job.save.is_empty() && job.save_to.is_some();
    let mut saved = None;
    let mut out = if json { LogOut::JsonLines } else { LogOut::Raw };
    let mut offset = 0;
    let mut announced_start = false;
    let mut save_deadline = None;
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    loop {
        if !announced_start && !json {
            if let Some(pid) = b.run.as_ref().and_then(|r| r.pid) {
                eprintln!("gpubook: booking {id}'s job runs (pid {pid})");
                announced_start = true;
            }
        }
        let over = job_status(&b).is_some() || never_ran(&b);
        if stream && b.run.is_some() && save_deadline.is_none() {
            offset = print_log(conn, id, offset, &mut out).await?.0;
        }
        if over {
            if !saves || saved.is_some() || never_ran(&b) {
                return Ok(crate::saved::Ended { booking: b, saved });
            }
            match save_deadline {
                None => {
                    save_deadline = Some(tokio::time::Instant::now() + crate::saved::SAVE_WAIT);
                    if !json {
                        eprintln!("gpubook: saving booking {id}'s results");
                    }
                }
                Some(d) if tokio::time::Instant::now() >= d => {
                    return Ok(crate::saved::Ended { booking: b, saved });
                }
                Some(_) => {}
            }
        }
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Pushed::Event(e)) if e.booking.id == id => {
                    if !json && matches!(e.kind, EventKind::BookingMovedEarlier | EventKind::SlotStarting) {
                        eprintln!("gpubook: {}", output::booking_line(&e.booking, &[]));
                    }
                    // The copy of its data before the slot: a progress line as it goes.
                    if !json && matches!(e.kind, EventKind::StageProgress | EventKind::StageReady | EventKind::StageFailed) {
                        eprintln!("gpubook: {}", output::event_line(&e, &[]));
                    }
                    if matches!(e.kind, EventKind::JobSaved | EventKind::SaveFailed) {
                        saved = e.note.clone();
                    }
                    b = e.booking;
                }
                Some(Pushed::Error(e)) => anyhow::bail!(ClientError::Agent(e)),
                Some(_) => {}
                None => anyhow::bail!(ClientError::ConnectionLost),
            },
            _ = tick.tick(), if stream && save_deadline.is_none() => {}
            _ = tokio::time::sleep_until(save_deadline.unwrap_or_else(tokio::time::Instant::now)),
                if save_deadline.is_some() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_survive_the_shell() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&args(&["python train.py --epochs 50"])),
            "python train.py --epochs 50"
        );
        assert_eq!(
            command_line(&args(&["python", "train.py", "--name", "my run", "it's"])),
            "python train.py --name 'my run' 'it'\\''s'"
        );
        assert_eq!(command_line(&args(&["echo", ""])), "echo ''");
    }

    #[test]
    fn env_names_follow_the_shell_s_rules_and_job_options_need_a_command() {
        let with_env = |e: &str| JobArgs {
            env: vec![e.into()],
            command: vec!["true".into()],
            ..JobArgs::default()
        };
        assert!(with_env("WANDB_MODE=offline").spec().is_ok());
        assert!(with_env("_x1=").spec().is_ok());
        for bad in ["1BAD=x", "A-B=x", "=x", "A B=x", "É=x"] {
            let e = with_env(bad).spec().unwrap_err();
            assert!(e.contains("is not a variable name"), "{bad}: {e}");
        }
        let grace_only = JobArgs {
            grace: Some(5),
            ..JobArgs::default()
        };
        assert!(grace_only.spec().unwrap_err().contains("need a command"));
        let keep_only = JobArgs {
            keep_slot: true,
            ..JobArgs::default()
        };
        assert!(keep_only.spec().is_err());
    }

    #[test]
    fn stage_and_save_flags_become_the_job_s_and_are_checked_here() {
        let with = |stage: &[&str], save: &[&str], to: Option<&str>| JobArgs {
            stage: stage.iter().map(|s| s.to_string()).collect(),
            save: save.iter().map(|s| s.to_string()).collect(),
            save_to: to.map(String::from),
            command: vec!["true".into()],
            ..JobArgs::default()
        };
        let job = with(
            &["coco=/nfs/coco"],
            &["runs/**/best.pt"],
            Some("s3://b-1/{id}/"),
        )
        .spec()
        .unwrap()
        .unwrap();
        assert_eq!(job.stage["coco"], "/nfs/coco");
        assert_eq!(job.save, vec!["runs/**/best.pt"]);
        assert_eq!(job.save_to.as_deref(), Some("s3://b-1/{id}/"));
        let e = with(&["coco"], &[], None).spec().unwrap_err();
        assert!(e.contains("NAME=SOURCE"), "{e}");
        let e = with(&["coco=nfs/coco"], &[], None).spec().unwrap_err();
        assert!(e.contains("absolute path"), "{e}");
        let e = with(&[], &["*.pt"], None).spec().unwrap_err();
        assert!(e.contains("--save-to"), "{e}");
        let e = with(&["a=/x", "a=/y"], &[], None).spec().unwrap_err();
        assert!(e.contains("twice"), "{e}");
        // Which of your S3 credentials on the server: a profile and/or an environment file.
        let mut s3 = with(&["coco=s3://b-1/coco"], &[], None);
        s3.s3_profile = Some("lab".into());
        s3.s3_env_file = Some("~/.config/s3.env".into());
        let job = s3.spec().unwrap().unwrap();
        assert_eq!(job.s3.profile.as_deref(), Some("lab"));
        assert_eq!(job.s3.env_file.as_deref(), Some("~/.config/s3.env"));
        s3.s3_env_file = Some("s3.env".into());
        let e = s3.spec().unwrap_err();
        assert!(e.contains("absolute path on the server or ~/"), "{e}");
        let alone = JobArgs {
            s3_profile: Some("lab".into()),
            ..JobArgs::default()
        };
        assert!(alone.spec().unwrap_err().contains("need a command"));
    }

    fn target(name: &str, spec: &str) -> Server {
        Server {
            name: name.into(),
            endpoint: Endpoint::parse(spec, 0).unwrap(),
            opts: gpubook_client::ssh::Options::default(),
        }
    }

    fn placed(cwd: &str, targets: &[Server]) -> Result<Option<String>, String> {
        let mut job = JobSpec {
            command: "true".into(),
            cwd: Some(cwd.into()),
            env: BTreeMap::new(),
            end_signal: None,
            grace_secs: None,
            keep_slot: false,
            ..Default::default()
        };
        place_cwd(
            &mut job,
            targets,
            || Ok(PathBuf::from("/work/here")),
            Some(PathBuf::from("/home/ada")),
        )?;
        Ok(job.cwd)
    }

    #[test]
    fn a_relative_cwd_is_read_from_here_for_the_local_agent_only() {
        let local = [target("local", "unix:/tmp/a.sock")];
        let ok = |cwd: &str, t: &[Server]| placed(cwd, t).unwrap().unwrap();
        assert_eq!(ok("runs/7", &local), "/work/here/runs/7");
        assert_eq!(ok("./runs/../x", &local), "/work/here/runs/../x");
        assert_eq!(ok(".", &local), "/work/here");
        assert_eq!(ok("~", &local), "/home/ada");
        assert_eq!(ok("~/data", &local), "/home/ada/data");
        assert_eq!(ok("/abs/path", &local), "/abs/path");
        assert!(placed("~bob/x", &local).is_err());
        assert!(placed("", &local).is_err());

        let remote = [
            target("local", "unix:/tmp/a.sock"),
            target("lab1", "alice@lab1.example.org"),
        ];
        assert_eq!(ok("/data/run7", &remote), "/data/run7");
        for rel in ["runs/7", "~/data", "~"] {
            let e = placed(rel, &remote).unwrap_err();
            assert!(
                e.contains("--cwd must be an absolute path on lab1")
                    && e.contains("give an absolute path on the server"),
                "{e}"
            );
        }
    }
}
