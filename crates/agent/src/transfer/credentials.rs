//! The owner's S3 credentials, read in the copy child that runs as the owner (never by the
//! root agent): a profile of `~/.aws/credentials` (`[default]` unless the booking names
//! another, or the environment file sets `AWS_PROFILE`), its region and `endpoint_url` from
//! `~/.aws/config`, and an environment file the booking names, whose values win. gpubook
//! never stores any of it.

use gpubook_core::S3Access;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why the owner's credentials could not be read; each says what to put where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The profile is in neither `~/.aws/credentials` nor `~/.aws/config`.
    #[error(
        "no [{profile}] profile in {path} (the booking's owner's, on this server): add it, or \
         name another with --s3-profile or an environment file with --s3-env-file"
    )]
    NoProfile {
        /// The profile looked for.
        profile: String,
        /// The credentials file looked in.
        path: PathBuf,
    },
    /// The environment file named cannot be read as the owner.
    #[error("cannot read the S3 environment file {path} as the booking's owner: {why}")]
    EnvFile {
        /// The file, `~` resolved.
        path: PathBuf,
        /// What reading it said.
        why: String,
    },
    /// A key the store needs is set nowhere.
    #[error("{key} is missing from {place}")]
    Missing {
        /// `aws_access_key_id` or `aws_secret_access_key`.
        key: &'static str,
        /// Where it was looked for.
        place: String,
    },
}

/// What a store is opened with.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret key.
    pub secret_access_key: String,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
    /// The region; `us-east-1` when none is set.
    pub region: String,
    /// An S3-compatible server's URL (MinIO, Ceph, moto), when not AWS.
    pub endpoint: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"hidden")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "hidden"),
            )
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// The sections of an INI file such as `~/.aws/credentials`: name → key → value
/// (`[profile NAME]` of `~/.aws/config` is `NAME`).
pub fn read_ini(path: &Path) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().trim_start_matches("profile ").to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            let values = out.entry(section.clone()).or_default();
            values.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    out
}

/// The variables of an environment file: `NAME=VALUE` lines, optionally after `export `,
/// values optionally quoted; blank lines and `#` comments skipped.
pub fn read_env_file(path: &Path) -> Result<HashMap<String, String>, CredentialsError> {
    let text = std::fs::read_to_string(path).map_err(|e| CredentialsError::EnvFile {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let mut out = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let unquoted = [('"', '"'), ('\'', '\'')]
                .iter()
                .find_map(|(a, b)| v.strip_prefix(*a).and_then(|v| v.strip_suffix(*b)))
                .unwrap_or(v);
            out.insert(k.trim().to_string(), unquoted.to_string());
        }
    }
    Ok(out)
}

/// The credentials `s3` names, for the owner whose home is `home`.
pub fn resolve(s3: &S3Access, home: &Path) -> Result<Credentials, CredentialsError> {
    let env_path = s3.env_file.as_ref().map(|f| match f.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(f),
    });
    let env = match &env_path {
        Some(p) => read_env_file(p)?,
        None => HashMap::new(),
    };
    let named = s3
        .profile
        .clone()
        .or_else(|| env.get("AWS_PROFILE").cloned());
    let profile = named.clone().unwrap_or_else(|| "default".into());
    let creds_path = home.join(".aws/credentials");
    let creds = read_ini(&creds_path);
    let config = read_ini(&home.join(".aws/config"));
    let (c, conf) = (creds.get(&profile), config.get(&profile));
    let has_keys = env.contains_key("AWS_ACCESS_KEY_ID");
    // A profile named but absent is an error even where the file gives keys: the person
    // asked for it. The default one is needed only where the file gives none.
    if c.is_none() && conf.is_none() && (named.is_some() || !has_keys) {
        return Err(CredentialsError::NoProfile {
            profile,
            path: creds_path,
        });
    }
    let pick = |env_key: &[&str], ini_key: &str| {
        env_key
            .iter()
            .find_map(|k| env.get(*k))
            .or_else(|| c.and_then(|m| m.get(ini_key)))
            .or_else(|| conf.and_then(|m| m.get(ini_key)))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let place = match &env_path {
        Some(p) => format!(
            "{} and [{profile}] of {}",
            p.display(),
            creds_path.display()
        ),
        None => format!("[{profile}] of {}", creds_path.display()),
    };
    let need = |env_key: &str, key: &'static str| {
        pick(&[env_key], key).ok_or_else(|| CredentialsError::Missing {
            key,
            place: place.clone(),
        })
    };
    Ok(Credentials {
        access_key_id: need("AWS_ACCESS_KEY_ID", "aws_access_key_id")?,
        secret_access_key: need("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key")?,
        session_token: pick(&["AWS_SESSION_TOKEN"], "aws_session_token"),
        region: pick(&["AWS_REGION", "AWS_DEFAULT_REGION"], "region")
            .unwrap_or_else(|| "us-east-1".into()),
        endpoint: pick(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"], "endpoint_url"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::write(
            dir.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = d\naws_secret_access_key = ds\n\n\
             [lab]\naws_access_key_id = l\naws_secret_access_key = lab-secret-9f3\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join(".aws/config"),
            "# comment\n[default]\nregion = eu-west-1\n\n[profile lab]\n\
             endpoint_url = http://127.0.0.1:9000\n; other\n",
        )
        .unwrap();
        dir
    }

    fn access(profile: Option<&str>, env_file: Option<&str>) -> S3Access {
        S3Access {
            profile: profile.map(Into::into),
            env_file: env_file.map(Into::into),
        }
    }

    #[test]
    fn the_owner_s_aws_files_are_read_by_profile() {
        let h = home();
        let d = resolve(&S3Access::default(), h.path()).unwrap();
        assert_eq!(
            (d.access_key_id.as_str(), d.region.as_str()),
            ("d", "eu-west-1")
        );
        assert_eq!(d.endpoint, None);
        let l = resolve(&access(Some("lab"), None), h.path()).unwrap();
        assert_eq!(l.access_key_id, "l");
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(l.secret_access_key, "lab-secret-9f3");
        assert!(!format!("{l:?}").contains("9f3"), "the secret is hidden");
        let e = resolve(&access(Some("nope"), None), h.path()).unwrap_err();
        assert!(matches!(&e, CredentialsError::NoProfile { profile, .. } if profile == "nope"));
        assert!(e.to_string().contains("--s3-profile"), "{e}");
    }

    #[test]
    fn an_environment_file_wins_and_may_stand_alone() {
        let h = home();
        std::fs::write(
            h.path().join("s3.env"),
            "# minio\nexport AWS_ACCESS_KEY_ID=\"e\"\nAWS_SECRET_ACCESS_KEY='es'\n\
             AWS_ENDPOINT_URL=http://minio:9000\n",
        )
        .unwrap();
        let c = resolve(&access(None, Some("~/s3.env")), h.path()).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.secret_access_key.as_str()),
            ("e", "es")
        );
        assert_eq!(c.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(c.region, "eu-west-1", "the rest from [default]");
        // No ~/.aws at all: the file alone is enough.
        std::fs::remove_dir_all(h.path().join(".aws")).unwrap();
        let c = resolve(&access(None, Some("~/s3.env")), h.path()).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.region.as_str()),
            ("e", "us-east-1")
        );
        // A file without the secret says which key and where.
        std::fs::write(h.path().join("half.env"), "AWS_ACCESS_KEY_ID=e\n").unwrap();
        let e = resolve(&access(None, Some("~/half.env")), h.path()).unwrap_err();
        assert!(
            matches!(
                &e,
                CredentialsError::Missing {
                    key: "aws_secret_access_key",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("half.env"), "{e}");
        let e = resolve(&access(None, Some("~/missing.env")), h.path()).unwrap_err();
        assert!(matches!(e, CredentialsError::EnvFile { .. }), "{e}");
        assert!(e.to_string().contains("missing.env"), "{e}");
    }
}
