//! `--for auto`: the length of a booking that runs a command, suggested by the server's agent
//! from the person's own past runs of that command there (`Request::Suggest`, protocol 1.3).
//!
//! The request is built with no length yet (see [`placeholder`]); once connected, each server
//! is asked and the length it suggests is filled in. With several servers (`--server any`)
//! each one is asked about its own history: runs on one server say nothing about another's
//! GPUs.

use crate::{usage, Failure};
use anyhow::anyhow;
use chrono::Duration;
use gpubook_client::Connection;
use gpubook_core::duration::format_duration;
use gpubook_proto::{
    ErrorKind, GpuChoice, Request, Response, SuggestRequest, SuggestionResponse, Welcome,
    WhenChoice,
};

/// The value of `--for` that asks for a suggested length.
pub const AUTO: &str = "auto";

/// The first protocol minor whose agents answer `Request::Suggest`.
pub const SUGGEST_MINOR: u32 = 3;

/// Whether `--for` asks for a suggested length.
pub fn is_auto(r#for: Option<&str>) -> bool {
    r#for.is_some_and(|f| f.trim().eq_ignore_ascii_case(AUTO))
}

/// The length a request carries until the suggestion replaces it: none (an "as soon as
/// possible" of zero seconds, or an end equal to the start), which no agent would take, so a
/// request whose length was never filled in is refused rather than booked.
pub fn placeholder() -> Duration {
    Duration::zero()
}

/// What to ask about a booking request: its command, GPU count and the data it stages (whose
/// size the agent counts on the server, so a grown dataset scales the length); `None` when it
/// runs no command.
pub fn ask_for(req: &Request) -> Option<SuggestRequest> {
    let Request::Book(b) = req else {
        return None;
    };
    let job = b.job.as_ref()?;
    let gpus = match &b.gpus {
        GpuChoice::Count { count, .. } | GpuChoice::OnNode { count, .. } => *count,
        GpuChoice::Named { gpus } => gpus.len() as u32,
    };
    Some(SuggestRequest {
        command: job.command.clone(),
        gpus,
        staged_bytes: None,
        stage: job.stage.clone(),
        s3: job.s3.clone(),
    })
}

/// Sets the length of a booking request.
pub fn set_length(req: &mut Request, length: Duration) {
    if let Request::Book(b) = req {
        match &mut b.when {
            WhenChoice::Asap { duration_secs } => *duration_secs = length.num_seconds(),
            WhenChoice::At { start, end } => *end = *start + length,
        }
    }
}

/// A length suggested by one server, and the sentence that says what it rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggested {
    /// The length to book.
    pub length: Duration,
    /// "your last 6 runs of this took 2h 41m – 3h 5m; booking 3h 15m".
    pub says: String,
}

/// Refuses an agent too old to suggest a length, saying what to do instead.
pub fn require_suggest(welcome: &Welcome, server: &str) -> Result<(), Failure> {
    if welcome.minor >= SUGGEST_MINOR {
        return Ok(());
    }
    Err(Failure {
        code: crate::exit_code(ErrorKind::Incompatible),
        error: anyhow!(
            "the agent on {server} (gpubook-agent {}, protocol {}.{}) is too old to suggest a \
             length: --for auto needs protocol {}.{SUGGEST_MINOR}; give the length (--for 3h) or \
             upgrade gpubook-agent there",
            welcome.agent_version,
            welcome.major,
            welcome.minor,
            welcome.major,
        ),
        kind: Some(ErrorKind::Incompatible),
    })
}

/// The sentence for a suggestion, or the usage error that says there is none.
pub fn read_answer(s: &SuggestionResponse, server: &str) -> Result<Suggested, Failure> {
    let Some(secs) = s.length_secs.filter(|s| *s > 0) else {
        return Err(usage(format!(
            "--for auto on {server}: {}, e.g. --for 3h",
            s.says
        )));
    };
    let length = Duration::seconds(secs);
    let says = format!(
        "your last {} run{} of this took {} – {}{}; booking {}",
        s.runs,
        if s.runs == 1 { "" } else { "s" },
        format_duration(Duration::seconds(s.shortest_secs)),
        format_duration(Duration::seconds(s.longest_secs)),
        if s.scaled {
            " (scaled to the data's size)"
        } else {
            ""
        },
        format_duration(length)
    );
    Ok(Suggested { length, says })
}

/// Asks the agent behind `conn` (called `server` in messages) for the length of `ask`.
pub async fn suggest(
    conn: &Connection,
    server: &str,
    ask: SuggestRequest,
) -> Result<Suggested, Failure> {
    require_suggest(conn.welcome(), server)?;
    match conn
        .request(Request::Suggest(ask))
        .await
        .map_err(anyhow::Error::from)?
    {
        Response::Suggestion(s) => read_answer(&s, server),
        other => Err(anyhow!("unexpected answer {other:?}").into()),
    }
}

/// Fills in the length of `req` (a booking with `--for auto`) from the agent behind `conn`,
/// and says on stderr what it rests on (not in `--json`: stderr then carries only errors).
pub async fn fill(
    conn: &Connection,
    server: &str,
    req: &mut Request,
    json: bool,
) -> Result<(), Failure> {
    let ask = ask_for(req).ok_or_else(|| usage(needs_command()))?;
    let s = suggest(conn, server, ask).await?;
    if !json {
        eprintln!("gpubook: {server}: {}", s.says);
    }
    set_length(req, s.length);
    Ok(())
}

/// Why `--for auto` was refused without a command.
pub fn needs_command() -> String {
    "--for auto suggests a length from your past runs of the command, so it needs the \
     command after --: gpubook book --count 1 --asap --for auto -- python train.py"
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpubook_core::Role;

    fn welcome(minor: u32) -> Welcome {
        Welcome {
            major: 1,
            minor,
            agent_version: "0.1.0".into(),
            server: "lab1".into(),
            user: "ana".into(),
            uid: 1000,
            role: Role::User,
            simulated: true,
            slurm: false,
        }
    }

    #[test]
    fn an_agent_before_1_3_is_refused_with_what_to_do() {
        assert!(require_suggest(&welcome(3), "lab1").is_ok());
        let f = require_suggest(&welcome(2), "lab1").unwrap_err();
        assert_eq!(f.code, 6);
        let text = f.error.to_string();
        assert!(
            text.contains("protocol 1.2") && text.contains("--for 3h"),
            "{text}"
        );
    }

    #[test]
    fn a_suggestion_reads_as_a_sentence_and_none_is_a_usage_error() {
        let s = SuggestionResponse {
            length_secs: Some(3 * 3600 + 15 * 60),
            runs: 6,
            shortest_secs: 2 * 3600 + 41 * 60,
            longest_secs: 3 * 3600 + 5 * 60,
            scaled: false,
            says: String::new(),
        };
        let got = read_answer(&s, "lab1").unwrap();
        assert_eq!(got.length, Duration::minutes(195));
        assert_eq!(
            got.says,
            "your last 6 runs of this took 2h 41m – 3h 5m; booking 3h 15m"
        );
        let none = SuggestionResponse {
            length_secs: None,
            runs: 0,
            shortest_secs: 0,
            longest_secs: 0,
            scaled: false,
            says: "no past run of this command with 1 GPU(s) on this server to go by: give a \
                   length"
                .into(),
        };
        let f = read_answer(&none, "lab1").unwrap_err();
        assert_eq!(f.code, 2);
        assert!(f.error.to_string().contains("no past run"), "{:#}", f.error);
    }
}
