//! Data a job brings in before its slot (stage-in) and takes out after it (save): where from
//! and where to, checked when the booking is made, so the agent only ever acts on sound ones.
//!
//! A location is an absolute path on the server or an S3 URL (`s3://bucket/prefix`). The
//! agent copies as the booking's owner, so nothing here grants access: it only refuses what
//! could never work.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most stage entries one job may have.
pub const MAX_STAGES: usize = 16;
/// Most save globs one job may have.
pub const MAX_SAVE_GLOBS: usize = 32;
/// Longest location or glob, in bytes.
pub const MAX_LOCATION: usize = 4096;
/// The placeholders a save destination may hold.
pub const SAVE_PLACEHOLDERS: &[&str] = &["{server}", "{id}", "{owner}"];

/// Why a stage entry, save glob or save destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransferError {
    /// A stage name that is not a plain directory name.
    #[error(
        "the stage name {0:?} is not usable: use letters, digits, '-', '_' or '.', \
         at most 64, not starting with '.'"
    )]
    BadName(String),
    /// A source or destination that is neither an absolute path nor an S3 URL.
    #[error(
        "{0:?} is neither an absolute path on the server nor an s3://bucket/prefix URL \
         (the client resolves a relative path)"
    )]
    BadLocation(String),
    /// A path with `..` in it, or a NUL byte.
    #[error("{0:?} holds '..' or a NUL byte")]
    Unsafe(String),
    /// A save glob that is absolute or leaves the working directory.
    #[error(
        "the save pattern {0:?} must be relative to the job's working directory \
         and may not hold '..'"
    )]
    BadGlob(String),
    /// A save glob that does not parse.
    #[error("the save pattern {0:?} is not a valid glob: {1}")]
    GlobSyntax(String, String),
    /// Save globs without a destination, or a destination without globs.
    #[error("{0}")]
    Incomplete(&'static str),
    /// A placeholder the save destination may not hold.
    #[error(
        "the save destination {0:?} holds {1}, which is not one of {{server}}, {{id}}, {{owner}}"
    )]
    BadPlaceholder(String, String),
    /// An S3 profile name that is not one.
    #[error(
        "the S3 profile {0:?} is not usable: use letters, digits, '-', '_' or '.', at most 64"
    )]
    BadProfile(String),
    /// An environment file that is not an absolute or `~/` path to a file.
    #[error(
        "the S3 environment file {0:?} must be an absolute path on the server or ~/ in your home"
    )]
    BadEnvFile(String),
    /// Too many entries, or one too long.
    #[error("{0}")]
    TooMany(String),
}

/// Which of the owner's own S3 credentials on the server a job's copies use. With neither
/// field, the `[default]` profile of `~/.aws/credentials` (and `~/.aws/config`). gpubook
/// never holds the keys themselves: only where, in the owner's account, they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(export))]
pub struct S3Access {
    /// A profile of `~/.aws/credentials` other than `default` (its region and
    /// `endpoint_url` from `[profile NAME]` of `~/.aws/config`).
    #[serde(default)]
    pub profile: Option<String>,
    /// An environment file of the owner's (`AWS_ACCESS_KEY_ID=...` lines, as for
    /// `docker --env-file` or systemd): an absolute path on the server, or `~/...` in their
    /// home. Its values win over the profile's.
    #[serde(default)]
    pub env_file: Option<String>,
}

impl S3Access {
    /// Whether it names nothing (the default profile).
    pub fn is_default(&self) -> bool {
        self.profile.is_none() && self.env_file.is_none()
    }
}

/// Checks which credentials a job names: a profile name of letters, digits, '-', '_' or '.'
/// (at most 64), an environment file given as an absolute or `~/` path without `..`.
pub fn check_s3_access(s3: &S3Access) -> Result<(), TransferError> {
    if let Some(p) = &s3.profile {
        let ok = !p.is_empty()
            && p.len() <= 64
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(TransferError::BadProfile(p.clone()));
        }
    }
    if let Some(f) = &s3.env_file {
        if f.len() > MAX_LOCATION {
            return Err(TransferError::TooMany(format!(
                "the environment file's path is longer than {MAX_LOCATION} bytes"
            )));
        }
        if f.contains('\0') || f.split('/').any(|p| p == "..") {
            return Err(TransferError::Unsafe(f.clone()));
        }
        if !(f.starts_with('/') || f.starts_with("~/")) || f.ends_with('/') {
            return Err(TransferError::BadEnvFile(f.clone()));
        }
    }
    Ok(())
}

/// Where data is: on the server's file system, or in an S3 bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Location {
    /// An absolute path on the server.
    Path {
        /// The path.
        path: String,
    },
    /// Objects under a prefix of an S3 bucket.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without a leading or trailing '/' (empty: the whole bucket).
        prefix: String,
    },
}

impl Location {
    /// Reads a location as written after `--stage NAME=` or `--save-to`.
    pub fn parse(text: &str) -> Result<Location, TransferError> {
        if text.len() > MAX_LOCATION {
            return Err(TransferError::TooMany(format!(
                "a location is longer than {MAX_LOCATION} bytes"
            )));
        }
        if text.contains('\0') || text.split('/').any(|p| p == "..") {
            return Err(TransferError::Unsafe(text.into()));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !valid {
                return Err(TransferError::BadLocation(text.into()));
            }
            return Ok(Location::S3 {
                bucket: bucket.into(),
                prefix: prefix.trim_matches('/').into(),
            });
        }
        if text.starts_with('/') {
            return Ok(Location::Path { path: text.into() });
        }
        Err(TransferError::BadLocation(text.into()))
    }
}

/// Checks a stage entry's name (a directory under `$GPUBOOK_STAGE`) and its source.
pub fn check_stage(name: &str, source: &str) -> Result<Location, TransferError> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        return Err(TransferError::BadName(name.into()));
    }
    Location::parse(source)
}

/// Checks a save glob: relative to the working directory, never above it, and valid.
pub fn check_glob(glob: &str) -> Result<(), TransferError> {
    if glob.is_empty()
        || glob.starts_with('/')
        || glob.contains('\0')
        || glob.split('/').any(|p| p == "..")
    {
        return Err(TransferError::BadGlob(glob.into()));
    }
    if glob.len() > MAX_LOCATION {
        return Err(TransferError::TooMany(format!(
            "a save pattern is longer than {MAX_LOCATION} bytes"
        )));
    }
    globset::Glob::new(glob)
        .map(|_| ())
        .map_err(|e| TransferError::GlobSyntax(glob.into(), e.kind().to_string()))
}

/// Checks a save destination template: every `{...}` one of [`SAVE_PLACEHOLDERS`], and once
/// filled in, a location.
pub fn check_save_to(template: &str) -> Result<(), TransferError> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        let close = after.find('}').map_or(after.len(), |c| c + 1);
        let placeholder = &after[..close];
        if !SAVE_PLACEHOLDERS.contains(&placeholder) {
            return Err(TransferError::BadPlaceholder(
                template.into(),
                placeholder.into(),
            ));
        }
        rest = &after[close..];
    }
    Location::parse(&fill_save_to(template, "server", 1, "owner")).map(|_| ())
}

/// The save destination of booking `id` of `owner` on `server`: the template filled in.
pub fn fill_save_to(template: &str, server: &str, id: u64, owner: &str) -> String {
    template
        .replace("{server}", server)
        .replace("{id}", &id.to_string())
        .replace("{owner}", owner)
}

/// Checks what a job brings in and takes out.
pub fn check_transfers(
    stage: &std::collections::BTreeMap<String, String>,
    save: &[String],
    save_to: Option<&str>,
    s3: &S3Access,
) -> Result<(), TransferError> {
    if stage.len() > MAX_STAGES {
        return Err(TransferError::TooMany(format!(
            "a job may stage at most {MAX_STAGES} sources"
        )));
    }
    for (name, source) in stage {
        check_stage(name, source)?;
    }
    if save.len() > MAX_SAVE_GLOBS {
        return Err(TransferError::TooMany(format!(
            "a job may save at most {MAX_SAVE_GLOBS} patterns"
        )));
    }
    for g in save {
        check_glob(g)?;
    }
    check_s3_access(s3)?;
    match (save.is_empty(), save_to) {
        (true, Some(_)) => Err(TransferError::Incomplete(
            "a save destination needs at least one pattern of files to save (--save GLOB)",
        )),
        (false, None) => Err(TransferError::Incomplete(
            "files to save need a destination (--save-to DIR or s3://bucket/prefix)",
        )),
        (_, Some(t)) => check_save_to(t),
        (true, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn locations_are_paths_or_s3_urls() {
        assert_eq!(
            Location::parse("/nfs/coco").unwrap(),
            Location::Path {
                path: "/nfs/coco".into()
            }
        );
        assert_eq!(
            Location::parse("s3://my-bucket/yolo/run-1/").unwrap(),
            Location::S3 {
                bucket: "my-bucket".into(),
                prefix: "yolo/run-1".into()
            }
        );
        for bad in ["coco", "s3://", "s3://UP/x", "/nfs/../etc", "~/data"] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stage_names_are_plain_directory_names() {
        assert!(check_stage("coco-2017", "/nfs/coco").is_ok());
        for bad in ["", ".", "..", "a/b", ".hidden", "a b"] {
            assert!(
                matches!(check_stage(bad, "/x"), Err(TransferError::BadName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn save_globs_stay_in_the_working_directory() {
        assert!(check_glob("runs/**/best.pt").is_ok());
        assert!(matches!(
            check_glob("/etc/passwd"),
            Err(TransferError::BadGlob(_))
        ));
        assert!(matches!(check_glob("../x"), Err(TransferError::BadGlob(_))));
        assert!(matches!(
            check_glob("runs/[x"),
            Err(TransferError::GlobSyntax(..))
        ));
    }

    #[test]
    fn save_destinations_take_only_known_placeholders() {
        assert!(check_save_to("s3://b-1/yolo/{server}-{id}/").is_ok());
        assert!(check_save_to("/nfs/models/{owner}/{server}-{id}/").is_ok());
        assert!(matches!(
            check_save_to("/nfs/{user}/x"),
            Err(TransferError::BadPlaceholder(_, p)) if p == "{user}"
        ));
        assert_eq!(
            fill_save_to("s3://b/{owner}/{server}-{id}", "gpu1", 7, "ann"),
            "s3://b/ann/gpu1-7"
        );
    }

    #[test]
    fn globs_and_destination_come_together() {
        let none = BTreeMap::new();
        let globs = vec!["*.pt".to_string()];
        let s3 = S3Access::default();
        assert!(check_transfers(&none, &globs, None, &s3).is_err());
        assert!(check_transfers(&none, &[], Some("/x"), &s3).is_err());
        assert!(check_transfers(&none, &globs, Some("/x/{id}"), &s3).is_ok());
    }

    #[test]
    fn s3_credentials_are_named_by_a_profile_or_an_owner_s_file() {
        let with = |profile: Option<&str>, env_file: Option<&str>| S3Access {
            profile: profile.map(Into::into),
            env_file: env_file.map(Into::into),
        };
        assert!(check_s3_access(&with(Some("lab-minio"), Some("~/.config/s3.env"))).is_ok());
        assert!(check_s3_access(&with(None, Some("/home/ann/s3.env"))).is_ok());
        for bad in ["", "a b", "x]", "../x"] {
            assert!(
                matches!(
                    check_s3_access(&with(Some(bad), None)),
                    Err(TransferError::BadProfile(_))
                ),
                "{bad}"
            );
        }
        for bad in ["s3.env", "~/", "~ann/s3.env", "/etc/"] {
            assert!(
                matches!(
                    check_s3_access(&with(None, Some(bad))),
                    Err(TransferError::BadEnvFile(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            check_s3_access(&with(None, Some("~/../root/s3.env"))),
            Err(TransferError::Unsafe(_))
        ));
    }
}
