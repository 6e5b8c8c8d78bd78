//! ~/.ssh/config read by gpubook itself: the Host names offered to pick from, and the
//! settings of a host where no OpenSSH client is installed.

use std::path::{Path, PathBuf};

use super::{config_file, Settings, Spec};
use crate::ssh::{SshEnv, SshError};

/// The hosts a person can pick from their SSH config: every name on a `Host` line that is not
/// a pattern (no `*`, `?` or `!`), in the file's order, without repeats, following `Include`
/// (relative to ~/.ssh, with `*` in the file name). A missing or unreadable file gives none.
pub fn config_hosts(env: &SshEnv) -> Vec<String> {
    let home = env.home();
    let file = env
        .config
        .clone()
        .or_else(|| {
            std::env::var_os("GPUBOOK_SSH_CONFIG")
                .filter(|f| !f.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| home.join(".ssh/config"));
    let mut hosts = Vec::new();
    collect_hosts(&file, &home.join(".ssh"), &mut hosts, 0);
    hosts
}

fn collect_hosts(file: &Path, ssh_dir: &Path, hosts: &mut Vec<String>, depth: usize) {
    // OpenSSH allows 16 levels of Include; a loop stops here too.
    if depth > 16 {
        return;
    }
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    for line in text.lines() {
        let line = line.trim();
        let Some((k, v)) = line.split_once(|c: char| c == '=' || c.is_whitespace()) else {
            continue;
        };
        let v = v.trim_start_matches(['=', ' ', '\t']).trim();
        match k.to_ascii_lowercase().as_str() {
            "host" => {
                for name in v.split_whitespace().map(|n| n.trim_matches('"')) {
                    if !name.contains(['*', '?', '!']) && !hosts.iter().any(|h| h == name) {
                        hosts.push(name.to_string());
                    }
                }
            }
            "include" => {
                for pattern in v.split_whitespace() {
                    let path = if let Some(rest) = pattern.strip_prefix("~/") {
                        ssh_dir.parent().unwrap_or(ssh_dir).join(rest)
                    } else if Path::new(pattern).is_absolute() {
                        PathBuf::from(pattern)
                    } else {
                        ssh_dir.join(pattern)
                    };
                    for f in expand_glob(&path) {
                        collect_hosts(&f, ssh_dir, hosts, depth + 1);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `path` itself, or the files its last component's `*`/`?` pattern matches, sorted.
fn expand_glob(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    match (name, path.parent()) {
        (Some(name), Some(dir)) if name.contains(['*', '?']) => {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| wildcard(&name, &e.file_name().to_string_lossy()))
                .map(|e| e.path())
                .collect();
            found.sort();
            found
        }
        _ => vec![path.to_path_buf()],
    }
}

/// Reads ~/.ssh/config (and /etc/ssh/ssh_config) without OpenSSH: Host blocks with patterns,
/// the first value of a keyword wins, IdentityFile adds up. Match blocks and Include are
/// skipped.
pub(super) fn fallback(parsed: &Spec, env: &SshEnv) -> Result<Settings, SshError> {
    let mut s = Settings::default();
    let files = [
        config_file(env).unwrap_or_else(|| env.home().join(".ssh/config")),
        PathBuf::from("/etc/ssh/ssh_config"),
    ];
    for f in files {
        if let Ok(text) = std::fs::read_to_string(&f) {
            read_config(&text, &parsed.host, &mut s);
        }
    }
    if !s.0.iter().any(|(k, _)| k == "hostname") {
        s.0.push(("hostname".into(), parsed.host.clone()));
    }
    Ok(s)
}

pub(super) fn read_config(text: &str, host: &str, s: &mut Settings) {
    let mut active = true;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = match line.split_once(|c: char| c == '=' || c.is_whitespace()) {
            Some((k, v)) => (
                k.trim().to_ascii_lowercase(),
                v.trim_start_matches(['=', ' ', '\t']).trim(),
            ),
            None => continue,
        };
        let v = v.trim_matches('"');
        match k.as_str() {
            "host" => active = host_matches(v, host),
            "match" => active = false,
            _ if !active => {}
            "identityfile" | "userknownhostsfile" | "globalknownhostsfile" => {
                for f in v.split_whitespace() {
                    s.0.push((k.clone(), f.to_string()));
                }
            }
            _ => {
                if s.get(&k).is_none() {
                    let v = if k == "hostname" {
                        v.replace("%h", host)
                    } else {
                        v.to_string()
                    };
                    s.0.push((k, v));
                }
            }
        }
    }
}

/// Whether `host` matches a Host line's patterns (wildcards, `!` negation).
pub(crate) fn host_matches(patterns: &str, host: &str) -> bool {
    let mut any = false;
    for p in patterns.split(|c: char| c == ',' || c.is_whitespace()) {
        if p.is_empty() {
            continue;
        }
        if let Some(neg) = p.strip_prefix('!') {
            if wildcard(neg, host) {
                return false;
            }
        } else if wildcard(p, host) {
            any = true;
        }
    }
    any
}

/// `*` and `?` matching, case-insensitive as host names are.
pub(crate) fn wildcard(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}
