//! The person's servers: one file, `$XDG_CONFIG_HOME/gpubook/servers.toml` (else
//! `~/.config/gpubook/servers.toml`), shared by the desktop app and the CLI.
//!
//! ```toml
//! [[server]]
//! name = "lab1"          # what people call it: `gpubook --server lab1`
//! spec = "lab1"          # where it is: an ssh alias, user@host[:port], ssh://..., unix:PATH
//! ```
//!
//! "This computer" ([`LOCAL`], spec `local`) is always there, first, and is never written to
//! the file. Saving writes a temporary file beside it and renames it into place, so a crash
//! leaves the old list or the new one, never half of one. A file that cannot be read is an
//! error naming the file and the line; it is never overwritten.

pub mod asap;

use crate::endpoint::{Endpoint, EndpointError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The name and spec of "this computer".
pub const LOCAL: &str = "local";
/// Names that mean something else on the command line.
const RESERVED: [&str; 3] = [LOCAL, "any", "all"];

/// One server the person added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerEntry {
    /// Its display name, unique in the list.
    pub name: String,
    /// Where it is, as `--server` takes it.
    pub spec: String,
}

impl ServerEntry {
    /// Where the entry points.
    pub fn endpoint(&self, uid: u32) -> Result<Endpoint, EndpointError> {
        Endpoint::parse(&self.spec, uid)
    }
}

/// The file's layout.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// The servers, in the person's order.
    #[serde(default, rename = "server")]
    servers: Vec<ServerEntry>,
}

/// Why the list could not be read, written or changed.
#[derive(Debug, Error)]
pub enum ServersError {
    /// Neither `$XDG_CONFIG_HOME` nor `$HOME` says where the config directory is.
    #[error("cannot tell where the config directory is: set XDG_CONFIG_HOME or HOME")]
    NoConfigDir,
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a server list; it is left as it is.
    #[error("{}:{line}: {message} (fix or remove the file; gpubook does not overwrite it)", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line the problem is on (1-based).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A server of that name is already listed.
    #[error(
        "there is already a server named {0:?}; remove it first with `gpubook servers rm {0}`"
    )]
    Exists(String),
    /// No server of that name is listed.
    #[error("there is no server named {0:?} in the list (see `gpubook servers ls`)")]
    NotFound(String),
    /// The name cannot be used.
    #[error("{name:?} cannot be a server name: {why}")]
    BadName {
        /// The name.
        name: String,
        /// Why not.
        why: String,
    },
    /// The spec is not a server address.
    #[error("server {name:?}: {source}")]
    BadSpec {
        /// The entry's name.
        name: String,
        /// Why.
        source: EndpointError,
    },
}

/// The person's server list, as read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerList {
    /// The file it came from and is saved to.
    path: PathBuf,
    /// The servers in the file, without "this computer".
    servers: Vec<ServerEntry>,
}

/// The list's file: `$XDG_CONFIG_HOME/gpubook/servers.toml`, else
/// `$HOME/.config/gpubook/servers.toml` (`%APPDATA%\gpubook\servers.toml` on Windows).
/// `GPUBOOK_SERVERS` overrides both (tests, scripts).
pub fn default_path() -> Result<PathBuf, ServersError> {
    if let Some(p) = std::env::var_os("GPUBOOK_SERVERS").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let base = crate::places::config_home().ok_or(ServersError::NoConfigDir)?;
    Ok(base.join("gpubook").join("servers.toml"))
}

/// Checks that `name` can name a server: not reserved, no separators, not empty.
pub fn check_name(name: &str) -> Result<(), ServersError> {
    let bad = |why: &str| {
        Err(ServersError::BadName {
            name: name.to_string(),
            why: why.to_string(),
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if RESERVED.contains(&name) {
        return bad("local, any and all mean something else to --server");
    }
    if name.chars().count() > 64 {
        return bad("it is longer than 64 characters");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return bad(&format!(
            "{c:?} is not allowed; use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

impl ServerList {
    /// Reads the list at [`default_path`].
    pub fn load_default() -> Result<Self, ServersError> {
        Self::load(&default_path()?)
    }

    /// Reads the list at `path`; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<Self, ServersError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ServersError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let servers = Self::parse(path, &text)?;
        Ok(Self {
            path: path.to_path_buf(),
            servers,
        })
    }

    fn parse(path: &Path, text: &str) -> Result<Vec<ServerEntry>, ServersError> {
        let malformed = |line: usize, message: String| ServersError::Malformed {
            path: path.to_path_buf(),
            line,
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            malformed(line, e.message().trim().to_string())
        })?;
        // Where each entry's name is written, for messages about it.
        let line_of = |name: &str| {
            text.lines()
                .position(|l| l.contains("name") && l.contains(&format!("\"{name}\"")))
                .map(|i| i + 1)
                .unwrap_or(1)
        };
        let mut seen = std::collections::HashSet::new();
        for s in &file.servers {
            if let Err(e) = check_name(&s.name) {
                return Err(malformed(line_of(&s.name), e.to_string()));
            }
            if !seen.insert(s.name.as_str()) {
                return Err(malformed(
                    line_of(&s.name),
                    format!("server {:?} is listed twice", s.name),
                ));
            }
            if let Err(e) = Endpoint::parse(&s.spec, 0) {
                return Err(malformed(
                    line_of(&s.name),
                    format!("server {:?}: {e}", s.name),
                ));
            }
        }
        Ok(file.servers)
    }

    /// The file this list is read from and saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The servers in the file (without "this computer").
    pub fn entries(&self) -> &[ServerEntry] {
        &self.servers
    }

    /// Every server: "this computer" first, then the file's, in order.
    pub fn all(&self) -> Vec<ServerEntry> {
        std::iter::once(ServerEntry {
            name: LOCAL.into(),
            spec: LOCAL.into(),
        })
        .chain(self.servers.iter().cloned())
        .collect()
    }

    /// The entry named `name` ("local" included).
    pub fn get(&self, name: &str) -> Option<ServerEntry> {
        self.all().into_iter().find(|s| s.name == name)
    }

    /// Adds `name` at `spec` (checked, not contacted) and saves the list.
    pub fn add(&mut self, name: &str, spec: &str) -> Result<(), ServersError> {
        check_name(name)?;
        if self.servers.iter().any(|s| s.name == name) {
            return Err(ServersError::Exists(name.into()));
        }
        Endpoint::parse(spec, 0).map_err(|source| ServersError::BadSpec {
            name: name.into(),
            source,
        })?;
        self.servers.push(ServerEntry {
            name: name.into(),
            spec: spec.into(),
        });
        self.save().inspect_err(|_| {
            self.servers.pop();
        })
    }

    /// Removes `name` and saves the list; the removed entry.
    pub fn remove(&mut self, name: &str) -> Result<ServerEntry, ServersError> {
        let i = self
            .servers
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| ServersError::NotFound(name.into()))?;
        let removed = self.servers.remove(i);
        if let Err(e) = self.save() {
            self.servers.insert(i, removed);
            return Err(e);
        }
        Ok(removed)
    }

    /// Writes the list: a temporary file beside it, synced, then renamed into place.
    pub fn save(&self) -> Result<(), ServersError> {
        let io = |source| ServersError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let body = toml::to_string(&File {
            servers: self.servers.clone(),
        })
        .map_err(|e| io(std::io::Error::other(e)))?;
        let text = format!(
            "# gpubook's server list, shared by the app and the CLI (`gpubook servers`).\n\
             # \"local\" (this computer) is always there and not listed.\n\n{body}"
        );
        let file_name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "servers.toml".into());
        let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // The rename is durable once the directory is synced.
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list_in(dir: &tempfile::TempDir) -> ServerList {
        ServerList::load(&dir.path().join("gpubook").join("servers.toml")).unwrap()
    }

    #[test]
    fn a_missing_file_is_an_empty_list_with_local_first() {
        let dir = tempfile::tempdir().unwrap();
        let list = list_in(&dir);
        assert!(list.entries().is_empty());
        let all = list.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name, "local");
        assert_eq!(all[0].spec, "local");
    }

    #[test]
    fn add_and_remove_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = list_in(&dir);
        list.add("lab1", "lab1").unwrap();
        list.add("lab2", "alice@lab2.example.org:2222").unwrap();
        list.add("lab3", "ssh://bob@10.0.0.3").unwrap();
        list.add("sock", "unix:/tmp/agent.sock").unwrap();
        let again = list_in(&dir);
        assert_eq!(again, list);
        let names: Vec<String> = again.all().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["local", "lab1", "lab2", "lab3", "sock"]);
        assert_eq!(
            again.get("lab2").unwrap().spec,
            "alice@lab2.example.org:2222"
        );

        let mut list = again;
        assert_eq!(list.remove("lab1").unwrap().spec, "lab1");
        assert!(matches!(
            list.remove("lab1"),
            Err(ServersError::NotFound(_))
        ));
        let again = list_in(&dir);
        assert_eq!(again.entries().len(), 3);
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("gpubook"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["servers.toml"]);
    }

    #[test]
    fn bad_names_and_specs_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = list_in(&dir);
        for name in ["", "local", "any", "all", "a,b", "a b", "x:y", "u@h"] {
            assert!(
                matches!(list.add(name, "lab1"), Err(ServersError::BadName { .. })),
                "{name:?}"
            );
        }
        for spec in [
            "",
            "unix:",
            "a b",
            "u@h:notaport",
            "ssh://",
            "u@h:70000",
            "a,b",
        ] {
            assert!(
                matches!(list.add("x", spec), Err(ServersError::BadSpec { .. })),
                "{spec:?}"
            );
        }
        list.add("x", "lab1").unwrap();
        assert!(matches!(
            list.add("x", "lab2"),
            Err(ServersError::Exists(_))
        ));
        assert_eq!(list_in(&dir).entries().len(), 1);
    }

    #[test]
    fn a_malformed_file_names_its_line_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("servers.toml");
        let text = "[[server]]\nname = \"lab1\"\nspec = \"lab1\"\n\n[[server]]\nname = \"lab2\nspec = \"x\"\n";
        std::fs::write(&path, text).unwrap();
        match ServerList::load(&path) {
            Err(ServersError::Malformed { line, path: p, .. }) => {
                assert_eq!(line, 6);
                assert_eq!(p, path);
            }
            other => panic!("{other:?}"),
        }
        // A duplicate name and an unknown key are refused too, with their line.
        std::fs::write(
            &path,
            "[[server]]\nname = \"a\"\nspec = \"a\"\n[[server]]\nname = \"a\"\nspec = \"b\"\n",
        )
        .unwrap();
        let e = ServerList::load(&path).unwrap_err();
        assert!(matches!(e, ServersError::Malformed { line: 2, .. }), "{e}");
        std::fs::write(&path, "[[server]]\nname = \"a\"\nspek = \"a\"\n").unwrap();
        let e = ServerList::load(&path).unwrap_err();
        assert!(matches!(e, ServersError::Malformed { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("servers.toml:3"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[[server]]\nname = \"a\"\nspek = \"a\"\n"
        );
    }

    #[test]
    fn names_with_quotes_and_unicode_survive_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = list_in(&dir);
        list.add("Läb-1", "unix:/tmp/a \"quoted\" path.sock")
            .unwrap();
        assert_eq!(list_in(&dir), list);
    }
}
