//! The policy's `[mail]` table: how the agent sends people's notifications by e-mail. It is
//! the admin's: a person chooses only the address their own news goes to.
//!
//! ```toml
//! [mail]
//! server = "smtp.lab.org"
//! port = 587                      # default: 587 for starttls, 465 for tls, 25 for none
//! tls = "starttls"                # "tls" (implicit TLS), "starttls", or "none"
//! sender = "gpubook <gpubook@lab.org>"
//! credentials_file = "/etc/gpubook/smtp-credentials"
//! ```
//!
//! The credentials file holds the SMTP user name on its first line and the password on its
//! second. The agent reads it once at start, and refuses to start when it is readable by its
//! group or others (checked by the agent: this crate does no I/O). Credentials are never sent
//! in the clear: `tls = "none"` with a credentials file is refused unless the server is this
//! machine's loopback.

use super::PolicyError;
use serde::Deserialize;
use std::path::PathBuf;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailTls {
    /// TLS from the first byte (usually port 465).
    Tls,
    /// Plain, then STARTTLS, which must succeed (usually port 587).
    Starttls,
    /// No TLS at all: only for a relay on the same machine or a trusted network.
    None,
}

/// The admin's mail settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    /// The SMTP server's host name or address.
    pub server: String,
    /// Its port.
    pub port: u16,
    /// How the connection is protected.
    pub tls: MailTls,
    /// The From of every mail: an address, or `Name <address>`.
    pub sender: String,
    /// Where the SMTP user and password are, if the server wants a login.
    pub credentials_file: Option<PathBuf>,
}

/// The table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MailTable {
    server: String,
    port: Option<u16>,
    tls: Option<MailTls>,
    sender: String,
    credentials_file: Option<PathBuf>,
}

/// Only the `[mail]` table of the whole file; the rest is `Policy::from_toml`'s.
#[derive(Deserialize)]
struct WithMail {
    mail: Option<MailTable>,
}

impl MailSettings {
    /// The `[mail]` table of the policy file's text, checked; `None` when there is none.
    pub fn from_policy_toml(text: &str) -> Result<Option<Self>, PolicyError> {
        let f: WithMail = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        let Some(m) = f.mail else {
            return Ok(None);
        };
        let err = |s: String| Err(PolicyError(format!("mail: {s}")));
        let tls = m.tls.unwrap_or(MailTls::Starttls);
        let port = m.port.unwrap_or(match tls {
            MailTls::Tls => 465,
            MailTls::Starttls => 587,
            MailTls::None => 25,
        });
        if m.server.is_empty()
            || m.server.len() > 253
            || m.server
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return err(format!("server {:?} is not a host name", m.server));
        }
        if port == 0 {
            return err("port must be 1 to 65535".into());
        }
        let address = match (m.sender.rfind('<'), m.sender.ends_with('>')) {
            (Some(i), true) => &m.sender[i + 1..m.sender.len() - 1],
            _ => m.sender.as_str(),
        };
        let ok_address = address.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && !d.is_empty() && !address.chars().any(|c| c.is_whitespace())
        });
        if !ok_address || m.sender.chars().any(|c| c.is_control()) {
            return err(format!(
                "sender {:?} is not an address (gpubook@lab.org or \"gpubook <gpubook@lab.org>\")",
                m.sender
            ));
        }
        if let Some(p) = &m.credentials_file {
            if !p.is_absolute() {
                return err(format!(
                    "credentials_file {} must be an absolute path",
                    p.display()
                ));
            }
            let loopback =
                matches!(m.server.as_str(), "localhost" | "::1") || m.server.starts_with("127.");
            if tls == MailTls::None && !loopback {
                return err(format!(
                    "tls = \"none\" would send the SMTP password to {} in the clear: use \
                     \"starttls\" or \"tls\"",
                    m.server
                ));
            }
        }
        Ok(Some(Self {
            server: m.server,
            port,
            tls,
            sender: m.sender,
            credentials_file: m.credentials_file,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    #[test]
    fn a_mail_table_is_read_and_the_rest_of_the_policy_still_is() {
        let text = "granularity = \"15m\"\n[mail]\nserver = \"smtp.lab.org\"\n\
                    sender = \"gpubook <gpubook@lab.org>\"\n\
                    credentials_file = \"/etc/gpubook/smtp\"\n";
        let m = MailSettings::from_policy_toml(text).unwrap().unwrap();
        assert_eq!((m.port, m.tls), (587, MailTls::Starttls));
        assert_eq!(Policy::from_toml(text).unwrap().granularity_secs, 900);
        assert_eq!(
            MailSettings::from_policy_toml("granularity = \"15m\"\n").unwrap(),
            None
        );
    }

    #[test]
    fn bad_mail_settings_are_refused_by_name() {
        let bad = |t: &str| {
            MailSettings::from_policy_toml(&format!("[mail]\n{t}"))
                .unwrap_err()
                .to_string()
        };
        assert!(bad("server = \"a b\"\nsender = \"x@y\"").contains("server"));
        assert!(bad("server = \"smtp\"\nsender = \"nobody\"").contains("sender"));
        assert!(bad("server = \"smtp\"\nsender = \"x@y\"\nport = 0").contains("port"));
        assert!(bad(
            "server = \"smtp.lab.org\"\nsender = \"x@y\"\ntls = \"none\"\n\
             credentials_file = \"/etc/c\""
        )
        .contains("in the clear"));
        assert!(bad("server = \"smtp\"\nsender = \"x@y\"\nhost = \"z\"").contains("host"));
        // Loopback may go without TLS, with a login.
        assert!(MailSettings::from_policy_toml(
            "[mail]\nserver = \"127.0.0.1\"\nsender = \"x@y\"\ntls = \"none\"\n\
             credentials_file = \"/etc/c\""
        )
        .is_ok());
    }
}
