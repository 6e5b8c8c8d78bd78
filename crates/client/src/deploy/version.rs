//! Which agent version this client claims, and what to do with a running one of another.

use super::probe::Running;
use super::{deploy_error, DeployError, DeployOptions};
use crate::ssh::SshErrorKind;
use crate::ClientError;

/// The crate version this client claims for the agent it carries: [`DeployOptions::version`],
/// else `$GPUBOOK_AGENT_VERSION`, else this crate's version. One that is not a semantic
/// version is refused, so no agent is named with a version no client can compare.
pub(super) fn claimed_version(server: &str, deploy: &DeployOptions) -> Result<String, DeployError> {
    let claimed = deploy
        .version
        .clone()
        .or_else(|| std::env::var("GPUBOOK_AGENT_VERSION").ok())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
    if semver(&claimed).is_none() {
        return Err(deploy_error(
            server,
            format!(
                "the agent version {claimed:?} (GPUBOOK_AGENT_VERSION) is not a semantic version \
                 like 0.2.0; unset it"
            ),
        ));
    }
    Ok(claimed)
}

/// What to do with a running personal agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not older than this client: use it as it is.
    Use,
    /// Older, of an older protocol major, or its version unreadable: replace it.
    Replace,
    /// Of a newer protocol major (this one): this client must be updated.
    TooNew(u32),
}

/// Compares a running agent with the crate version this client claims.
pub(super) fn verdict(claimed: &str, running: &Running) -> Verdict {
    match running.major {
        Some(m) if m > gpubook_proto::PROTOCOL_MAJOR => return Verdict::TooNew(m),
        Some(m) if m < gpubook_proto::PROTOCOL_MAJOR => return Verdict::Replace,
        _ => {}
    }
    let theirs = crate_version(&running.version).and_then(semver);
    match (theirs, semver(claimed)) {
        (Some(theirs), Some(ours)) if theirs >= ours => Verdict::Use,
        _ => Verdict::Replace,
    }
}

/// The crate-version part of an agent's version (`CRATE-CHECKSUM16`).
fn crate_version(version: &str) -> Option<&str> {
    let (v, sum) = version.rsplit_once('-')?;
    (sum.len() == 16 && sum.bytes().all(|b| b.is_ascii_hexdigit())).then_some(v)
}

/// A semantic version as the `semver` crate reads it, with its build metadata dropped: semver
/// ignores build metadata in precedence, and an agent built twice is the same version.
fn semver(v: &str) -> Option<semver::Version> {
    let mut v = semver::Version::parse(v).ok()?;
    v.build = semver::BuildMetadata::EMPTY;
    Some(v)
}

/// The protocol major of an agent that refused the handshake as incompatible, from its
/// message ("this agent speaks protocol N.M ...").
fn refused_major(e: &DeployError) -> Option<u32> {
    let Some(ClientError::Agent(body)) = e.client() else {
        return None;
    };
    if body.kind != gpubook_proto::ErrorKind::Incompatible {
        return None;
    }
    let rest = &body.message[body.message.find("speaks protocol ")? + "speaks protocol ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// What a failed handshake with the person's own agent of `version` means: `Ok` when it is
/// to be replaced (it does not answer, its bridge fails, it speaks an older major), else the
/// error to report (a newer major: update gpubook; SSH failures and refusals as they are).
pub(super) fn replaceable(e: DeployError, server: &str, version: &str) -> Result<(), DeployError> {
    match refused_major(&e) {
        Some(m) if m > gpubook_proto::PROTOCOL_MAJOR => return Err(too_new(server, version, m)),
        Some(_) => return Ok(()),
        None => {}
    }
    match &e {
        DeployError::Ssh(s) if s.kind() == SshErrorKind::Deploy => Ok(()),
        DeployError::Client {
            error: ClientError::ConnectionLost | ClientError::Protocol(_),
            ..
        } => Ok(()),
        _ => Err(e),
    }
}

/// A personal agent of a newer protocol major: left running, and this client must be
/// updated.
pub(super) fn too_new(server: &str, version: &str, major: u32) -> DeployError {
    DeployError::Client {
        server: server.to_string(),
        error: ClientError::Agent(gpubook_proto::ErrorBody::new(
            gpubook_proto::ErrorKind::Incompatible,
            format!(
                "your gpubook agent there (version {version}) speaks protocol {major}, newer than \
                 this gpubook's protocol {}: update gpubook (the running agent was left as it is)",
                gpubook_proto::PROTOCOL_MAJOR
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(version: &str, major: Option<u32>) -> Running {
        Running {
            version: version.into(),
            major,
            usable: true,
        }
    }

    #[test]
    fn semver_orders_as_semver_does() {
        let order = [
            "0.9.9",
            "0.10.0-alpha",
            "0.10.0-alpha.1",
            "0.10.0-alpha.beta",
            "0.10.0-beta.2",
            "0.10.0-beta.11",
            "0.10.0-rc.1",
            "0.10.0",
            "0.10.1",
            "1.0.0",
        ];
        for w in order.windows(2) {
            let (a, b) = (semver(w[0]).unwrap(), semver(w[1]).unwrap());
            assert!(a < b, "{} < {}", w[0], w[1]);
        }
        assert_eq!(semver("1.2.3+build"), semver("1.2.3"));
        for bad in ["", "1", "1.2", "1.2.x", "1.2.3-", "1.2.3-a..b", "v1.2.3"] {
            assert_eq!(semver(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_an_older_agent_is_replaced() {
        let sum = "0123456789abcdef";
        let major = Some(gpubook_proto::PROTOCOL_MAJOR);
        let v = |c: &str| format!("{c}-{sum}");
        // Newer or the same crate version (another checksum too): used as it is.
        assert_eq!(verdict("0.1.0", &running(&v("0.1.0"), major)), Verdict::Use);
        assert_eq!(verdict("0.1.0", &running(&v("0.2.0"), None)), Verdict::Use);
        assert_eq!(
            verdict("0.1.0", &running(&v("0.1.0-rc.1-x"), major)),
            Verdict::Replace
        );
        // Older: replaced; so is an unreadable version.
        assert_eq!(
            verdict("0.2.0", &running(&v("0.1.9"), major)),
            Verdict::Replace
        );
        assert_eq!(verdict("0.2.0", &running("0.3.0", major)), Verdict::Replace);
        assert_eq!(
            verdict("0.2.0", &running(&v("junk"), major)),
            Verdict::Replace
        );
        // The protocol major first.
        let newer = gpubook_proto::PROTOCOL_MAJOR + 1;
        assert_eq!(
            verdict("0.2.0", &running(&v("0.1.0"), Some(newer))),
            Verdict::TooNew(newer)
        );
        assert_eq!(
            verdict("0.2.0", &running(&v("9.0.0"), Some(0))),
            Verdict::Replace
        );
    }

    #[test]
    fn a_claimed_version_must_be_semver() {
        let with = |v: &str| DeployOptions {
            version: Some(v.into()),
            ..DeployOptions::default()
        };
        assert_eq!(claimed_version("lab1", &with("0.3.1")).unwrap(), "0.3.1");
        let e = claimed_version("lab1", &with("new"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lab1") && e.contains("semantic version"), "{e}");
    }

    #[test]
    fn a_refusal_names_the_agents_major() {
        let refusal = |m: &str| DeployError::Client {
            server: "lab1".into(),
            error: ClientError::Agent(gpubook_proto::ErrorBody::new(
                gpubook_proto::ErrorKind::Incompatible,
                m,
            )),
        };
        let e = gpubook_proto::negotiate(gpubook_proto::PROTOCOL_MAJOR + 1, 0).unwrap_err();
        assert_eq!(
            refused_major(&refusal(&e.message)),
            Some(gpubook_proto::PROTOCOL_MAJOR)
        );
        assert_eq!(
            refused_major(&refusal("this agent speaks protocol 99; x")),
            Some(99)
        );
        assert_eq!(refused_major(&refusal("no idea")), None);
    }
}
