//! `gpubook notify`: news while away. The agent itself mails a person's events, or POSTs
//! them to a webhook, whether or not any app is connected: `notify set` chooses where and
//! which kinds, `notify show` lists them with how the latest deliveries went, `notify clear`
//! stops them. Protocol 1.4.

use crate::print::print_json;
use crate::targets::Server;
use crate::{output, usage, Failure};
use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};
use gpubook_proto::notify::{check_targets, DEFAULT_KINDS};
use gpubook_proto::{
    Channel, DeliveryState, EventKind, NotifyClearRequest, NotifyResponse, NotifySetRequest,
    NotifyShowRequest, NotifyTarget, Request, Response, WebhookFormat,
};

/// The first protocol minor whose agents keep notification targets.
const FIRST_MINOR: u32 = 4;

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub command: NotifyCommand,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send your events also by e-mail and/or to a webhook. Replaces what you had, unless
    /// --add: then these are added (or replace the same address or URL) and the rest kept.
    Set(SetArgs),
    /// Your targets on this server and how your latest notifications went.
    Show,
    /// Send nothing more by e-mail or webhook (notifications not yet sent are dropped).
    Clear,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// An e-mail address (repeat for several); the lab's admin sets up the mail server.
    #[arg(long = "email")]
    pub emails: Vec<String>,
    /// A webhook URL (repeat for several): a Slack or Mattermost incoming webhook, or any
    /// URL that takes a JSON POST (see --webhook-format). Only you can see it.
    #[arg(long = "webhook")]
    pub webhooks: Vec<String>,
    /// The body of the webhook's POST: slack ({"text": ...}) or json (the event itself).
    #[arg(long, value_enum, default_value_t = Format::Slack)]
    pub webhook_format: Format,
    /// Which kinds of event, comma-separated (job_finished, job_failed, slot_ending,
    /// intruder, ...) [default: job endings, approvals, denials, cancellations, moves,
    /// intruders, the slot-end warning, failed staging and saving].
    #[arg(long, value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// Keep your other targets.
    #[arg(long)]
    pub add: bool,
}

/// The webhook body's format, as the flag reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `{"text": "..."}`
    Slack,
    /// `{"server", "text", "event"}`
    Json,
}

/// The targets `a` asks for, read before any connection.
pub fn targets(a: &SetArgs) -> Result<Vec<NotifyTarget>, Failure> {
    if a.emails.is_empty() && a.webhooks.is_empty() {
        return Err(usage(
            "give --email ADDRESS and/or --webhook URL (gpubook notify clear removes them all)"
                .into(),
        ));
    }
    let kinds = if a.kinds.is_empty() {
        DEFAULT_KINDS.to_vec()
    } else {
        a.kinds.iter().map(|k| kind(k)).collect::<Result<_, _>>()?
    };
    let format = match a.webhook_format {
        Format::Slack => WebhookFormat::Slack,
        Format::Json => WebhookFormat::Json,
    };
    let mut out: Vec<NotifyTarget> = a
        .emails
        .iter()
        .map(|e| Channel::Email {
            address: e.trim().to_string(),
        })
        .chain(a.webhooks.iter().map(|u| Channel::Webhook {
            url: u.trim().to_string(),
            format,
        }))
        .map(|channel| NotifyTarget {
            channel,
            kinds: kinds.clone(),
        })
        .collect();
    out.dedup();
    check_targets(&out).map_err(usage)?;
    Ok(out)
}

/// An event kind by its name.
fn kind(name: &str) -> Result<EventKind, Failure> {
    let k: EventKind = serde_json::from_value(serde_json::Value::String(name.trim().to_string()))
        .unwrap_or(EventKind::Unknown);
    if k == EventKind::Unknown {
        return Err(usage(format!(
            "unknown kind of event {:?}; known: {}",
            name.trim(),
            all_kinds().join(", ")
        )));
    }
    Ok(k)
}

/// Every kind's name.
fn all_kinds() -> Vec<String> {
    EventKind::KNOWN.iter().copied().map(kind_name).collect()
}

fn kind_name(k: EventKind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Runs `gpubook notify ...` against `target`.
pub async fn run(a: &NotifyArgs, target: &Server, json: bool) -> Result<(), Failure> {
    let wanted = match &a.command {
        NotifyCommand::Set(s) => Some(targets(s)?),
        _ => None,
    };
    let conn = target.connect().await?;
    let minor = conn.welcome().minor;
    if minor < FIRST_MINOR {
        return Err(Failure {
            code: 6,
            error: anyhow!(
                "the agent on {} speaks protocol 1.{minor}, which cannot send notifications \
                 (1.{FIRST_MINOR} on): upgrade gpubook-agent there",
                conn.welcome().server
            ),
            kind: Some(gpubook_proto::ErrorKind::Incompatible),
        });
    }
    let ask = |req: Request| {
        let conn = &conn;
        async move {
            match conn.request(req).await.map_err(anyhow::Error::from)? {
                Response::Notify(n) => Ok::<_, Failure>(n),
                other => Err(anyhow!("unexpected answer {other:?}").into()),
            }
        }
    };
    let answer = match (&a.command, wanted) {
        (NotifyCommand::Set(s), Some(mut wanted)) => {
            if s.add {
                let now = ask(Request::NotifyShow(NotifyShowRequest {})).await?;
                let mut kept: Vec<NotifyTarget> = now
                    .targets
                    .into_iter()
                    .filter(|t| !wanted.iter().any(|w| w.channel == t.channel))
                    .collect();
                kept.append(&mut wanted);
                wanted = kept;
                check_targets(&wanted).map_err(usage)?;
            }
            ask(Request::NotifySet(NotifySetRequest { targets: wanted })).await?
        }
        (NotifyCommand::Clear, _) => ask(Request::NotifyClear(NotifyClearRequest {})).await?,
        _ => ask(Request::NotifyShow(NotifyShowRequest {})).await?,
    };
    if json {
        print_json(&answer);
    } else {
        print!("{}", table(&answer, &conn.welcome().server));
    }
    Ok(())
}

/// `notify show` for people.
pub fn table(n: &NotifyResponse, server: &str) -> String {
    let mut out = String::new();
    if n.targets.is_empty() {
        out.push_str(&format!(
            "No e-mail or webhook notifications from {server} (gpubook notify set adds some).\n"
        ));
    } else {
        out.push_str(&format!("Notifications from {server}:\n"));
        for t in &n.targets {
            let what = match &t.channel {
                Channel::Email { address } => format!("mail to {address}"),
                Channel::Webhook { url, format } => format!(
                    "webhook {url} ({})",
                    match format {
                        WebhookFormat::Slack => "slack",
                        WebhookFormat::Json => "json",
                    }
                ),
            };
            let kinds: Vec<String> = t.kinds.iter().map(|k| kind_name(*k)).collect();
            out.push_str(&format!("  {what}\n    {}\n", kinds.join(", ")));
        }
    }
    if !n.mail {
        out.push_str(&format!(
            "{server} does not send mail (its admin has not set up [mail]); webhooks work.\n"
        ));
    }
    if !n.deliveries.is_empty() {
        out.push_str("Latest deliveries:\n");
        for d in &n.deliveries {
            let state = match d.state {
                DeliveryState::Sent => {
                    format!("sent {}", d.sent_at.map(output::when).unwrap_or_default())
                }
                DeliveryState::Pending if d.attempts == 0 => "waiting".to_string(),
                DeliveryState::Pending => format!(
                    "failed {} time{}, next try {}",
                    d.attempts,
                    if d.attempts == 1 { "" } else { "s" },
                    d.next_attempt.map(output::when).unwrap_or_default()
                ),
                DeliveryState::Failed => {
                    format!(
                        "given up after {} tr{}",
                        d.attempts,
                        if d.attempts == 1 { "y" } else { "ies" }
                    )
                }
            };
            let error = d
                .last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  event {} {} (booking {}) -> {}: {state}{error}\n",
                d.event,
                kind_name(d.kind),
                d.booking.0,
                d.target
            ));
        }
    }
    out
}
