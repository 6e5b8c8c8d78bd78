//! Protocol 1.4: news while away. A person asks the agent to send their notifications also by
//! e-mail or to a webhook (a Slack- or Mattermost-compatible incoming webhook, or a plain JSON
//! POST of the event), per kind of event. The agent sends them itself, so they arrive whether
//! or not any app is connected.
//!
//! Every request here is about the caller alone: none names a user, so no request can read
//! or change another person's targets (a webhook URL is a secret of its owner's).
//!
//! Bounds, checked by [`check_targets`] on both sides: at most [`MAX_TARGETS`] targets, a URL
//! at most [`MAX_URL`] bytes, an address at most [`MAX_ADDRESS`] bytes, no control characters.

use crate::event::EventKind;
use chrono::{DateTime, Utc};
use gpubook_core::BookingId;
use serde::{Deserialize, Serialize};

/// Most targets one person may have on one server.
pub const MAX_TARGETS: usize = 4;
/// Longest webhook URL, in bytes.
pub const MAX_URL: usize = 2048;
/// Longest e-mail address, in bytes (RFC 5321's path limit).
pub const MAX_ADDRESS: usize = 254;
/// Most recent deliveries [`NotifyResponse::deliveries`] lists.
pub const MAX_LISTED_DELIVERIES: usize = 20;

/// The kinds sent when a target names none: what a person away from their desk wants to hear.
pub const DEFAULT_KINDS: &[EventKind] = &[
    EventKind::JobFinished,
    EventKind::JobStopped,
    EventKind::JobFailed,
    EventKind::JobLost,
    EventKind::SlotEnding,
    EventKind::BookingApproved,
    EventKind::BookingDenied,
    EventKind::BookingCancelled,
    EventKind::BookingMovedEarlier,
    EventKind::Intruder,
    EventKind::StageFailed,
    EventKind::SaveFailed,
];

/// How a webhook's body is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"text": "..."}`: what Slack's and Mattermost's incoming webhooks take.
    #[default]
    Slack,
    /// The event itself as JSON: `{"server", "text", "event": {...}}`.
    Json,
}

/// Where one person's notifications go. (Inlined into [`NotifyTarget`] on the wire, so it
/// has no TypeScript file of its own.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "channel", rename_all = "snake_case")]
pub enum Channel {
    /// A mail to this address, through the lab's SMTP server (the policy's `[mail]`).
    Email {
        /// The address.
        address: String,
    },
    /// A POST to this URL (http or https).
    Webhook {
        /// The URL; shown to its owner only.
        url: String,
        /// The body's shape.
        #[serde(default)]
        format: WebhookFormat,
    },
}

/// One target: a channel and the kinds of event sent to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct NotifyTarget {
    /// Where.
    #[serde(flatten)]
    pub channel: Channel,
    /// Which kinds of event about the person's own bookings; never empty.
    pub kinds: Vec<EventKind>,
}

/// Replaces the caller's targets on this server with these (an empty list: none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct NotifySetRequest {
    /// The targets, at most [`MAX_TARGETS`].
    pub targets: Vec<NotifyTarget>,
}

/// Asks for the caller's targets and their recent deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct NotifyShowRequest {}

/// Removes the caller's targets (deliveries not yet made are dropped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct NotifyClearRequest {}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not sent yet: waiting for its first try or for the next one after a failure.
    Pending,
    /// The receiver took it.
    Sent,
    /// Given up: the receiver refused it for good, or every try failed.
    Failed,
}

/// One event's delivery to one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct Delivery {
    /// The event's number.
    pub event: u64,
    /// Its kind.
    pub kind: EventKind,
    /// The booking it is about.
    pub booking: BookingId,
    /// Where it goes, in words ("mail to a@b", "webhook https://host/…").
    pub target: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Tries so far.
    pub attempts: u32,
    /// Why the last try failed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the next try is due (pending ones).
    #[serde(default)]
    pub next_attempt: Option<DateTime<Utc>>,
    /// When the receiver took it (sent ones).
    #[serde(default)]
    pub sent_at: Option<DateTime<Utc>>,
}

/// The caller's targets and how their news has gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct NotifyResponse {
    /// The caller's targets.
    pub targets: Vec<NotifyTarget>,
    /// Their latest deliveries, newest first, at most [`MAX_LISTED_DELIVERIES`].
    pub deliveries: Vec<Delivery>,
    /// Whether this server can send mail (its admin set up `[mail]` in the policy); without
    /// it e-mail targets are refused.
    pub mail: bool,
}

/// Whether `kind` can be asked for: every known kind.
pub fn is_sendable(kind: EventKind) -> bool {
    kind != EventKind::Unknown
}

/// Checks targets against the bounds; the first problem, in words, for the person.
pub fn check_targets(targets: &[NotifyTarget]) -> Result<(), String> {
    if targets.len() > MAX_TARGETS {
        return Err(format!(
            "{} targets given; at most {MAX_TARGETS} per person",
            targets.len()
        ));
    }
    for t in targets {
        if t.kinds.is_empty() {
            return Err("a target needs at least one kind of event".into());
        }
        if t.kinds.iter().any(|k| !is_sendable(*k)) {
            return Err("an unknown kind of event cannot be sent".into());
        }
        match &t.channel {
            Channel::Email { address } => check_address(address)?,
            Channel::Webhook { url, .. } => check_url(url)?,
        }
    }
    for (i, a) in targets.iter().enumerate() {
        if targets[..i].iter().any(|b| b.channel == a.channel) {
            return Err(format!(
                "{} is given twice: give it once with all its kinds",
                describe(&a.channel)
            ));
        }
    }
    Ok(())
}

/// An e-mail address as the agent takes it: `local@domain`, printable ASCII or UTF-8 without
/// spaces, controls, angle brackets or commas, at most [`MAX_ADDRESS`] bytes.
pub fn check_address(address: &str) -> Result<(), String> {
    if address.len() > MAX_ADDRESS {
        return Err(format!(
            "the e-mail address is {} bytes; at most {MAX_ADDRESS}",
            address.len()
        ));
    }
    let bad = |c: char| c.is_control() || c.is_whitespace() || "<>,;\"()[]\\".contains(c);
    let ok = match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !address.chars().any(bad)
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not an e-mail address (name@domain.tld)",
            short(address)
        ))
    }
}

/// A webhook URL as the agent takes it: `http://` or `https://` with a host, no spaces or
/// controls, at most [`MAX_URL`] bytes.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL {
        return Err(format!("the URL is {} bytes; at most {MAX_URL}", url.len()));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("a webhook URL may not hold spaces or control characters".into());
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{} is not an http:// or https:// URL", short(url)))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(format!(
            "{} has no host, or carries a user name: put a token in the path instead",
            short(url)
        ));
    }
    Ok(())
}

/// A channel in words, for the person and the agent's log. A webhook is shown as its scheme
/// and host only, since the rest of an incoming-webhook URL is its secret.
pub fn describe(channel: &Channel) -> String {
    match channel {
        Channel::Email { address } => format!("mail to {address}"),
        Channel::Webhook { url, .. } => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            format!("webhook {scheme}://{host}/…")
        }
    }
}

/// At most 64 bytes of `s`, for a message that quotes what a person gave.
fn short(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < s.len() { "…" } else { "" };
    format!("{:?}", format!("{}{cut}", &s[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(a: &str) -> NotifyTarget {
        NotifyTarget {
            channel: Channel::Email { address: a.into() },
            kinds: vec![EventKind::JobFinished],
        }
    }

    fn hook(u: &str) -> NotifyTarget {
        NotifyTarget {
            channel: Channel::Webhook {
                url: u.into(),
                format: WebhookFormat::Slack,
            },
            kinds: vec![EventKind::JobFinished],
        }
    }

    #[test]
    fn bounds_and_shapes_are_checked() {
        assert!(check_targets(&[mail("a@lab.org"), hook("https://h.example/x")]).is_ok());
        assert!(check_targets(&[mail("a@lab"), hook("ftp://h/x")]).is_err());
        assert!(check_targets(&[mail("a b@lab.org")]).is_err());
        assert!(check_targets(&[mail("a@lab.org\r\nBcc: x@y.z")]).is_err());
        assert!(check_targets(&[hook("http:///x")]).is_err());
        assert!(check_targets(&[hook("https://user:pw@h.example/x")]).is_err());
        let long = format!("https://h.example/{}", "x".repeat(MAX_URL));
        assert!(check_targets(&[hook(&long)]).unwrap_err().contains("2048"));
        let five: Vec<_> = (0..5).map(|i| mail(&format!("a{i}@lab.org"))).collect();
        assert!(check_targets(&five).unwrap_err().contains("at most 4"));
        assert!(check_targets(&[mail("a@lab.org"), mail("a@lab.org")]).is_err());
        let mut none = mail("a@lab.org");
        none.kinds.clear();
        assert!(check_targets(&[none]).is_err());
    }

    #[test]
    fn a_webhook_is_described_without_its_secret_path() {
        let c = Channel::Webhook {
            url: "https://hooks.slack.com/services/T0/B0/SECRET".into(),
            format: WebhookFormat::Slack,
        };
        assert_eq!(describe(&c), "webhook https://hooks.slack.com/…");
    }

    #[test]
    fn targets_read_as_written_on_the_wire() {
        let t: NotifyTarget = serde_json::from_str(
            r#"{"channel":"webhook","url":"http://127.0.0.1:9/h","kinds":["job_finished"]}"#,
        )
        .unwrap();
        assert_eq!(t, {
            let mut h = hook("http://127.0.0.1:9/h");
            h.kinds = vec![EventKind::JobFinished];
            h
        });
    }
}
