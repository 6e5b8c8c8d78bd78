//! Which agent build goes to which server: one build per architecture, named as the server's
//! `uname -m` names it (`x86_64`, `aarch64`, ...).
//!
//! Where the builds are, first found first:
//! 1. [`DeployOptions::binary`]: that one file only, for the architecture its ELF header
//!    names; else [`DeployOptions::agents_dir`] as DIR in step 2; else the same from the
//!    environment: `$GPUBOOK_AGENT_BINARY`, else `$GPUBOOK_AGENTS_DIR`;
//! 2. `DIR/<arch>/gpubook-agent` for every `<arch>` in DIR, by default [`PACKAGED_AGENTS`]
//!    (the desktop package's builds, for glibc 2.17 and up);
//! 3. the same in `agents/` next to this program and in `../Resources/agents` (the app's
//!    bundle on Windows and macOS);
//! 4. `gpubook-agent` next to this program (a build from source), for the architecture its
//!    ELF header names, when the steps before have none for it.

use super::upload::LocalAgent;
use super::{deploy_error, DeployError, DeployOptions};
use crate::ssh::SshError;
use std::path::{Path, PathBuf};

/// Where the desktop package installs the agent builds it uploads: `<arch>/gpubook-agent`.
pub const PACKAGED_AGENTS: &str = "/usr/lib/gpubook/agents";

/// The packaged agent build for this machine's own architecture, when installed (the app's
/// "This computer" agent when no `gpubook-agent` is next to it).
pub fn packaged_agent() -> Option<PathBuf> {
    let p = Path::new(PACKAGED_AGENTS)
        .join(host_arch())
        .join("gpubook-agent");
    p.is_file().then_some(p)
}

/// This program's architecture, as Linux's `uname -m` names it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "powerpc64" => "ppc64le",
        "x86" => "i686",
        a => a,
    }
}

/// The architecture an ELF binary is built for, as `uname -m` names it; `None` when the file
/// is not an ELF binary or of an architecture not listed here.
pub(super) fn elf_arch(path: &Path) -> Option<&'static str> {
    use std::io::Read;
    let mut head = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    if head[..4] != *b"\x7fELF" {
        return None;
    }
    // e_machine, in the byte order EI_DATA names (1: little-endian).
    let machine = if head[5] == 1 {
        u16::from_le_bytes([head[18], head[19]])
    } else {
        u16::from_be_bytes([head[18], head[19]])
    };
    Some(match (machine, head[5]) {
        (62, _) => "x86_64",
        (183, _) => "aarch64",
        (243, _) => "riscv64",
        (21, 1) => "ppc64le",
        (22, _) => "s390x",
        _ => return None,
    })
}

/// The agent builds this client carries, one per architecture.
#[derive(Debug)]
pub(super) struct Builds {
    /// (architecture, build), in the order found.
    agents: Vec<(String, LocalAgent)>,
    /// Where builds were looked for, for the message when an architecture has none.
    looked: Vec<String>,
}

impl Builds {
    /// Finds and reads the builds (see the module's docs); an error when there is none at
    /// all, or one cannot be read.
    pub(super) fn find(server: &str, deploy: &DeployOptions) -> Result<Self, DeployError> {
        // The options first, then the environment.
        let env = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .filter(|p| !p.as_os_str().is_empty())
        };
        let (explicit, dir) = match (&deploy.binary, &deploy.agents_dir) {
            (Some(b), _) => (Some(b.clone()), None),
            (None, Some(d)) => (None, Some(d.clone())),
            (None, None) => match env("GPUBOOK_AGENT_BINARY") {
                Some(b) => (Some(b), None),
                None => (None, env("GPUBOOK_AGENTS_DIR")),
            },
        };
        if let Some(path) = explicit {
            let arch = elf_arch(&path).unwrap_or_else(host_arch).to_string();
            let looked = vec![path.display().to_string()];
            let agent = LocalAgent::read(server, path)?;
            return Ok(Self {
                agents: vec![(arch, agent)],
                looked,
            });
        }
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf));
        let mut dirs = vec![dir.unwrap_or_else(|| PathBuf::from(PACKAGED_AGENTS))];
        // The app's bundle off Linux: Windows keeps its resources beside the program, macOS
        // in the .app's Contents/Resources.
        if let Some(exe) = &exe_dir {
            dirs.push(exe.join("agents"));
            dirs.push(exe.join("../Resources/agents"));
        }
        let mut found: Vec<(String, PathBuf)> = Vec::new();
        let mut looked = Vec::new();
        for dir in &dirs {
            let mut here: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .map(|(arch, d)| (arch, d.join("gpubook-agent")))
                .filter(|(arch, bin)| bin.is_file() && !found.iter().any(|(a, _)| a == arch))
                .collect();
            here.sort();
            found.extend(here);
            looked.push(format!("{}/<arch>/gpubook-agent", dir.display()));
        }
        if let Some(next) = exe_dir.map(|d| d.join("gpubook-agent")) {
            looked.push(next.display().to_string());
            if next.is_file() {
                let arch = elf_arch(&next).unwrap_or_else(host_arch);
                if !found.iter().any(|(a, _)| a == arch) {
                    found.push((arch.to_string(), next));
                }
            }
        }
        if found.is_empty() {
            return Err(deploy_error(
                server,
                format!(
                    "no gpubook agent runs there and this gpubook carries no agent build to upload \
                     (looked in {}). Install the gpubook package, or set GPUBOOK_AGENT_BINARY",
                    looked.join(", ")
                ),
            ));
        }
        let agents = found
            .into_iter()
            .map(|(arch, path)| Ok((arch, LocalAgent::read(server, path)?)))
            .collect::<Result<_, DeployError>>()?;
        Ok(Self { agents, looked })
    }

    /// `ARCH=VERSION` for each build, space-separated, for the probe script to choose from.
    pub(super) fn versions(&self, claimed: &str) -> String {
        self.agents
            .iter()
            .map(|(arch, a)| format!("{arch}={}", a.version(claimed)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The build for a server of architecture `arch`; for one this client has none for, the
    /// error that names it.
    pub(super) fn for_arch(&self, server: &str, arch: &str) -> Result<&LocalAgent, DeployError> {
        self.agents
            .iter()
            .find(|(a, _)| a == arch)
            .map(|(_, agent)| agent)
            .ok_or_else(|| {
                SshError::NoAgentBuild {
                    server: server.to_string(),
                    arch: arch.to_string(),
                    have: self.agents.iter().map(|(a, _)| a.clone()).collect(),
                    looked: self.looked.join(", "),
                }
                .into()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_elf_header_names_its_architecture() {
        let dir = tempfile::tempdir().unwrap();
        let elf = |machine: u16| {
            let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
            h.resize(18, 0);
            h.extend_from_slice(&machine.to_le_bytes());
            h.extend_from_slice(&[0; 44]);
            let p = dir.path().join(format!("m{machine}"));
            std::fs::write(&p, h).unwrap();
            p
        };
        assert_eq!(elf_arch(&elf(62)), Some("x86_64"));
        assert_eq!(elf_arch(&elf(183)), Some("aarch64"));
        assert_eq!(elf_arch(&elf(21)), Some("ppc64le"));
        assert_eq!(elf_arch(&elf(9999)), None);
        let script = dir.path().join("script");
        std::fs::write(&script, "#!/bin/sh\necho hello, not an ELF file\n").unwrap();
        assert_eq!(elf_arch(&script), None);
        // This test binary itself.
        let me = std::env::current_exe().unwrap();
        assert_eq!(elf_arch(&me), Some(host_arch()));
    }
}
