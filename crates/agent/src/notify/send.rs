//! Sending one delivery: a POST to a webhook (reqwest, rustls) or a mail through the lab's
//! SMTP server (lettre, rustls). Each try is bounded in time; the answer says whether to try
//! again.

use super::text::render;
use gpubook_core::policy::mail::{MailSettings, MailTls};
use gpubook_proto::{Event, WebhookFormat};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// Longest a webhook's receiver may take to answer.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a whole SMTP conversation may take.
pub const MAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// How a try went.
#[derive(Debug)]
pub enum Outcome {
    /// Taken by the receiver.
    Sent,
    /// Failed in a way that may pass (a timeout, a 5xx, a refused connection).
    Retry(String),
    /// Failed for good (a 4xx, an address the server refuses).
    GiveUp(String),
}

/// The SMTP user and password, from the admin's credentials file.
pub struct Login {
    /// The user name.
    user: String,
    /// The password.
    password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Login(hidden)")
    }
}

/// Reads the credentials file at `path`: a regular file owned by root or by the agent's own
/// user, readable by no group and no one else; the user name on its first line, the password
/// on its second. Refused otherwise, saying why.
pub fn read_login(path: &Path, own_uid: u32) -> anyhow::Result<Login> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| anyhow::anyhow!("mail credentials file {}: {e}", path.display()))?;
    if !meta.file_type().is_file() {
        anyhow::bail!(
            "mail credentials file {} is not a regular file (a link is not followed)",
            path.display()
        );
    }
    if meta.uid() != 0 && meta.uid() != own_uid {
        anyhow::bail!(
            "mail credentials file {} belongs to uid {}: it must be root's",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        anyhow::bail!(
            "mail credentials file {} is readable or writable by its group or others (mode \
             {:o}): run `chmod 600 {}`",
            path.display(),
            meta.mode() & 0o7777,
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("mail credentials file {}: {e}", path.display()))?;
    let mut lines = text.lines();
    let (Some(user), Some(password)) = (lines.next(), lines.next()) else {
        anyhow::bail!(
            "mail credentials file {} must hold the user name on its first line and the \
             password on its second",
            path.display()
        );
    };
    Ok(Login {
        user: user.trim().to_string(),
        password: password.to_string(),
    })
}

/// The lab's mail server, ready to send.
pub struct Mailer {
    /// The SMTP client.
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// Who mails come from.
    from: lettre::message::Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    /// A mailer for `settings`, logging in with `login` when there is one.
    pub fn new(settings: &MailSettings, login: Option<Login>) -> anyhow::Result<Self> {
        let builder = match settings.tls {
            MailTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.server)?,
            MailTls::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.server)?
            }
            MailTls::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.server)
            }
        };
        let mut builder = builder.port(settings.port).timeout(Some(MAIL_TIMEOUT));
        if let Some(l) = login {
            builder = builder.credentials(Credentials::new(l.user, l.password));
        }
        Ok(Self {
            transport: builder.build(),
            from: settings
                .sender
                .parse()
                .map_err(|e| anyhow::anyhow!("mail sender {:?}: {e}", settings.sender))?,
        })
    }

    /// Mails `ev` to `address` as delivery `id`.
    pub async fn send(&self, address: &str, ev: &Event, server: &str, id: i64) -> Outcome {
        let to = match address.parse() {
            Ok(to) => to,
            Err(e) => return Outcome::GiveUp(format!("the address cannot be mailed to: {e}")),
        };
        let (subject, body) = render(ev, server);
        let host = self.from.email.domain().to_string();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("[gpubook {server}] {subject}"))
            .message_id(Some(format!("<gpubook-{server}-{}-{id}@{host}>", ev.seq)))
            .header(ContentType::TEXT_PLAIN)
            .body(body);
        let message = match message {
            Ok(m) => m,
            Err(e) => return Outcome::GiveUp(format!("the mail cannot be written: {e}")),
        };
        match tokio::time::timeout(MAIL_TIMEOUT, self.transport.send(message)).await {
            Err(_) => Outcome::Retry(format!(
                "the mail server did not finish within {} s",
                MAIL_TIMEOUT.as_secs()
            )),
            Ok(Ok(_)) => Outcome::Sent,
            Ok(Err(e)) if e.is_permanent() => {
                Outcome::GiveUp(format!("the mail server refused it: {e}"))
            }
            Ok(Err(e)) => Outcome::Retry(format!("mail: {e}")),
        }
    }
}

/// The HTTP client for webhooks: rustls, no redirects followed (a redirect is an answer, not
/// an invitation to POST elsewhere), bounded in time.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("gpubook-agent/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// POSTs `ev` to `url` in `format` as delivery `id`. The receiver's answer is never read
/// beyond its status, so a webhook cannot be used to read a service the agent can reach.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    format: WebhookFormat,
    ev: &Event,
    server: &str,
    id: i64,
) -> Outcome {
    let (subject, body) = render(ev, server);
    let payload = match format {
        WebhookFormat::Slack => serde_json::json!({
            "text": format!("*[gpubook {server}]* {subject}\n{body}"),
        }),
        WebhookFormat::Json => serde_json::json!({
            "server": server,
            "text": subject,
            "event": ev,
        }),
    };
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-gpubook-delivery", format!("{server}-{}-{id}", ev.seq))
        .body(payload.to_string())
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => Outcome::Sent,
        Ok(r) => {
            let s = r.status();
            let what = format!("the receiver answered HTTP {}", s.as_u16());
            if s.is_client_error() && s.as_u16() != 408 && s.as_u16() != 429 {
                Outcome::GiveUp(what)
            } else {
                Outcome::Retry(what)
            }
        }
        Err(e) => {
            let e = e.without_url();
            let what = if e.is_timeout() {
                format!(
                    "the receiver did not answer within {} s",
                    WEBHOOK_TIMEOUT.as_secs()
                )
            } else if e.is_connect() {
                format!("cannot connect: {}", source_chain(&e))
            } else {
                source_chain(&e)
            };
            Outcome::Retry(what)
        }
    }
}

/// An error and its causes, in one line.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
