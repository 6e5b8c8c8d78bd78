//! A server name resolved as `ssh` would: the host, port, user, keys, jump hosts, known_hosts
//! files and timers of `ssh -G` (OpenSSH's own resolver) where an OpenSSH client is installed,
//! else of a small reader of ~/.ssh/config that knows the keywords gpubook uses.
//!
//! `$HOME` is honoured (OpenSSH itself reads the passwd entry's home): when it differs from
//! that home, `$HOME/.ssh/config` is passed with `-F`. `$GPUBOOK_SSH_CONFIG` names the config
//! file explicitly (tests).

mod file;
mod passwd;

pub use file::config_hosts;
use file::fallback;
pub(crate) use file::host_matches;
#[cfg(test)]
use file::read_config;
pub(crate) use passwd::{local_user, passwd_home, process_home};

use super::{SshEnv, SshError};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The longest chain of jump hosts followed.
const MAX_HOPS: usize = 8;

/// A server name resolved into everything needed to connect to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshHost {
    /// The name as the person gave it (an alias, user@host:port, ssh://...).
    pub spec: String,
    /// The host to connect to (HostName).
    pub host: String,
    /// Its SSH port.
    pub port: u16,
    /// The remote user.
    pub user: String,
    /// Key files to try, in order (IdentityFile; the defaults when none is set).
    pub identity_files: Vec<PathBuf>,
    /// Use only the keys of `identity_files`, also from the ssh-agent.
    pub identities_only: bool,
    /// Jump hosts, first hop first (ProxyJump), each resolved again.
    pub proxy_jump: Vec<SshHost>,
    /// The person's known_hosts files (UserKnownHostsFile); accepted keys go to the first.
    pub user_known_hosts: Vec<PathBuf>,
    /// The system's known_hosts files (GlobalKnownHostsFile), read only.
    pub global_known_hosts: Vec<PathBuf>,
    /// The name known_hosts holds the key under (HostKeyAlias), else `host`.
    pub host_key_alias: Option<String>,
    /// How long to wait for the TCP connection and each step of the handshake.
    pub connect_timeout: Option<Duration>,
    /// How often to send a keepalive (ServerAliveInterval); `None`: gpubook's own default.
    pub server_alive_interval: Option<Duration>,
    /// The ssh-agent's socket named by IdentityAgent; `None`: the environment's.
    pub identity_agent: Option<PathBuf>,
    /// False when IdentityAgent is `none`: no ssh-agent at all.
    pub use_agent: bool,
}

impl SshHost {
    /// Resolves a server name: an alias from ~/.ssh/config, `user@host[:port]` or
    /// `ssh://user@host[:port]`, with its jump hosts.
    pub fn resolve(spec: &str) -> Result<SshHost, SshError> {
        Self::resolve_with(spec, &SshEnv::default())
    }

    /// [`SshHost::resolve`] with an explicit home and config file (tests, several people in
    /// one process).
    pub fn resolve_with(spec: &str, env: &SshEnv) -> Result<SshHost, SshError> {
        resolve_chain(spec, env, ssh_installed(), &mut Vec::new())
    }

    /// The name as the person gave it.
    pub fn name(&self) -> &str {
        &self.spec
    }

    /// `user@host:port`, to tell hops apart.
    pub fn key(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }

    /// The name known_hosts holds the key under: `host`, or `[host]:port` off port 22.
    pub fn known_hosts_name(&self) -> String {
        let host = self.host_key_alias.as_deref().unwrap_or(&self.host);
        if self.port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{}", self.port)
        }
    }
}

/// What a name says before the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    /// An explicit user.
    pub user: Option<String>,
    /// The host or alias.
    pub host: String,
    /// An explicit port.
    pub port: Option<u16>,
}

/// Reads `alias`, `user@host[:port]`, `ssh://user@host[:port]`, `[v6]:port`.
pub(crate) fn parse_spec(spec: &str) -> Result<Spec, SshError> {
    let bad = |detail: &str| SshError::BadSpec {
        server: spec.to_string(),
        detail: detail.to_string(),
    };
    let mut rest = spec.trim();
    let url = rest.strip_prefix("ssh://");
    if let Some(r) = url {
        rest = r.strip_suffix('/').unwrap_or(r);
        if rest.contains('/') {
            return Err(bad("an ssh:// name has no path"));
        }
    }
    if rest.is_empty() {
        return Err(bad("it is empty"));
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains spaces or control characters"));
    }
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
        Some(_) => return Err(bad("the user before @ is empty")),
        None => (None, rest),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("a [ without its ]"))?;
        match after.strip_prefix(':') {
            Some(p) => (h.to_string(), Some(p)),
            None if after.is_empty() => (h.to_string(), None),
            None => return Err(bad("text after ]")),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("the host is empty"));
    }
    if host.starts_with('-') {
        return Err(bad("a host cannot start with -"));
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
        ),
        None => None,
    };
    Ok(Spec { user, host, port })
}

fn resolve_chain(
    spec: &str,
    env: &SshEnv,
    openssh: bool,
    stack: &mut Vec<String>,
) -> Result<SshHost, SshError> {
    let parsed = parse_spec(spec)?;
    let settings = if openssh {
        ssh_g(spec, &parsed, env)?
    } else {
        fallback(&parsed, env)?
    };
    let mut t = target_from(spec, &parsed, &settings, env)?;
    let key = t.key();
    if stack.contains(&key) || stack.len() >= MAX_HOPS {
        stack.push(key);
        return Err(SshError::Config {
            server: spec.to_string(),
            detail: format!(
                "ProxyJump loops or is longer than {MAX_HOPS} hops: {}",
                stack.join(" -> ")
            ),
        });
    }
    stack.push(key);
    let jumps = settings
        .get("proxyjump")
        .filter(|j| !j.eq_ignore_ascii_case("none"))
        .map(|j| {
            j.split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for (i, hop) in jumps.iter().enumerate() {
        let mut h = resolve_chain(hop, env, openssh, stack)?;
        // As with `ssh -J a,b`: a later hop is reached through the one before it, so its own
        // ProxyJump does not apply.
        if i > 0 {
            h.proxy_jump.clear();
        }
        stack.pop();
        t.proxy_jump.push(h);
    }
    Ok(t)
}

/// Settings as `ssh -G` prints them: lower-case keyword, then its value; IdentityFile and the
/// known_hosts files may repeat.
#[derive(Debug, Default)]
struct Settings(Vec<(String, String)>);

impl Settings {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn ssh_installed() -> bool {
    if std::env::var_os("GPUBOOK_SSH_NO_OPENSSH").is_some() {
        return false;
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("ssh").is_file()))
}

/// The config file to pass with `-F`, if not OpenSSH's own choice.
fn config_file(env: &SshEnv) -> Option<PathBuf> {
    if let Some(f) = &env.config {
        return Some(f.clone());
    }
    if let Some(f) = std::env::var_os("GPUBOOK_SSH_CONFIG").filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(f));
    }
    let home = env.home();
    if env.home_is_own(&home) {
        return None;
    }
    let own = home.join(".ssh/config");
    Some(if own.is_file() {
        own
    } else {
        PathBuf::from("/dev/null")
    })
}

fn ssh_g(spec: &str, parsed: &Spec, env: &SshEnv) -> Result<Settings, SshError> {
    let mut cmd = Command::new("ssh");
    cmd.arg("-G");
    if let Some(f) = config_file(env) {
        cmd.arg("-F").arg(f);
    }
    if let Some(u) = &parsed.user {
        cmd.arg("-l").arg(u);
    }
    if let Some(p) = parsed.port {
        cmd.arg("-p").arg(p.to_string());
    }
    cmd.arg("--").arg(&parsed.host);
    let out = cmd.output().map_err(|e| SshError::Config {
        server: spec.to_string(),
        detail: format!("cannot run `ssh -G`: {e}"),
    })?;
    if !out.status.success() {
        return Err(SshError::Config {
            server: spec.to_string(),
            detail: format!(
                "`ssh -G {}` failed: {}",
                parsed.host,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let mut s = Settings::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((k, v)) = line.split_once(' ') else {
            continue;
        };
        let k = k.to_ascii_lowercase();
        // Lists on one line (known_hosts files) become one entry each.
        if k.ends_with("knownhostsfile") {
            for f in v.split_whitespace() {
                s.0.push((k.clone(), f.to_string()));
            }
        } else {
            s.0.push((k, v.trim().to_string()));
        }
    }
    Ok(s)
}

fn target_from(spec: &str, parsed: &Spec, s: &Settings, env: &SshEnv) -> Result<SshHost, SshError> {
    let home = env.home();
    let host = s.get("hostname").unwrap_or(&parsed.host).to_string();
    let port = match parsed.port {
        Some(p) => p,
        None => match s.get("port") {
            Some(p) => p.parse().map_err(|_| SshError::Config {
                server: spec.to_string(),
                detail: format!("Port {p:?} is not a number"),
            })?,
            None => 22,
        },
    };
    let user = parsed
        .user
        .clone()
        .or_else(|| s.get("user").map(str::to_string))
        .unwrap_or_else(local_user);
    let tokens = |v: &str| expand(v, &home, &host, &user, port);
    let mut identity_files: Vec<PathBuf> = s.all("identityfile").map(tokens).collect();
    if identity_files.is_empty() {
        identity_files = [
            "id_rsa",
            "id_ecdsa",
            "id_ecdsa_sk",
            "id_ed25519",
            "id_ed25519_sk",
            "id_xmss",
            "id_dsa",
        ]
        .iter()
        .map(|f| home.join(".ssh").join(f))
        .collect();
    }
    let mut user_known_hosts: Vec<PathBuf> = s.all("userknownhostsfile").map(tokens).collect();
    if user_known_hosts.is_empty() {
        // OpenSSH's defaults.
        user_known_hosts = vec![
            home.join(".ssh/known_hosts"),
            home.join(".ssh/known_hosts2"),
        ];
    }
    let mut global_known_hosts: Vec<PathBuf> = s.all("globalknownhostsfile").map(tokens).collect();
    if global_known_hosts.is_empty() {
        global_known_hosts = vec![
            PathBuf::from("/etc/ssh/ssh_known_hosts"),
            PathBuf::from("/etc/ssh/ssh_known_hosts2"),
        ];
    }
    let secs = |k: &str| {
        s.get(k)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|n| *n > 0)
            .map(Duration::from_secs)
    };
    let identity_agent = match s.get("identityagent") {
        None => None,
        Some(v) if v == "SSH_AUTH_SOCK" || v.eq_ignore_ascii_case("none") => None,
        Some(v) => match v.strip_prefix('$') {
            Some(var) => std::env::var_os(var).map(PathBuf::from),
            None => Some(tokens(v)),
        },
    };
    Ok(SshHost {
        spec: spec.to_string(),
        host,
        port,
        user,
        identity_files,
        identities_only: s.get("identitiesonly").is_some_and(is_yes),
        proxy_jump: Vec::new(),
        user_known_hosts,
        global_known_hosts,
        host_key_alias: s
            .get("hostkeyalias")
            .filter(|a| !a.eq_ignore_ascii_case("none"))
            .map(str::to_string),
        connect_timeout: secs("connecttimeout"),
        server_alive_interval: secs("serveraliveinterval"),
        identity_agent,
        use_agent: !s
            .get("identityagent")
            .is_some_and(|v| v.eq_ignore_ascii_case("none")),
    })
}

fn is_yes(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "yes" | "true")
}

/// Expands `~` and the tokens OpenSSH allows in file names (%d %u %h %r %p %%).
fn expand(v: &str, home: &Path, host: &str, user: &str, port: u16) -> PathBuf {
    // `ssh -G` expands ~ with the passwd entry's home; with another $HOME, ~/.ssh is that.
    let own = passwd_home().map(|h| h.join(".ssh"));
    let v = match own
        .as_deref()
        .and_then(|o| Path::new(v).strip_prefix(o).ok())
    {
        Some(rest) if own.as_deref() != Some(home.join(".ssh").as_path()) => {
            home.join(".ssh").join(rest).display().to_string()
        }
        _ => v.to_string(),
    };
    let v = v.as_str();
    let v = match v.strip_prefix("~/") {
        Some(rest) => format!("{}/{rest}", home.display()),
        None if v == "~" => home.display().to_string(),
        None => v.to_string(),
    };
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&home.display().to_string()),
            Some('u') => out.push_str(&local_user()),
            Some('h') => out.push_str(host),
            Some('r') => out.push_str(user),
            Some('p') => out.push_str(&port.to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    PathBuf::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read() {
        let s = parse_spec("alice@lab1:2222").unwrap();
        assert_eq!(
            (s.user.as_deref(), s.host.as_str(), s.port),
            (Some("alice"), "lab1", Some(2222))
        );
        let s = parse_spec("ssh://bob@10.0.0.1:22/").unwrap();
        assert_eq!((s.user.as_deref(), s.port), (Some("bob"), Some(22)));
        let s = parse_spec("[::1]:2200").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", Some(2200)));
        assert_eq!(parse_spec("lab1").unwrap().host, "lab1");
        for bad in [
            "",
            "a@",
            "@h",
            "h:0",
            "h:x",
            "h:70000",
            "-oProxyCommand=x",
            "a b",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn openssh_and_the_fallback_reader_agree() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let config = home.join("config");
        std::fs::write(
            &config,
            "Host lab1\n  HostName 10.9.8.7\n  User alice\n  Port 2222\n\
             \x20 IdentityFile ~/.ssh/lab_key\n  IdentityFile %d/.ssh/other\n  IdentitiesOnly yes\n\
             \x20 UserKnownHostsFile ~/.ssh/lab_hosts\n  ConnectTimeout 7\n  ServerAliveInterval 9\n\
             \x20 ProxyJump gw1,bob@gw2:2200\n  IdentityAgent ~/.ssh/agent.sock\n\
             Host gw1\n  HostName 10.0.0.1\n  User carol\n\
             Host gw2\n  HostName 10.0.0.2\n",
        )
        .unwrap();
        let env = SshEnv {
            home: Some(home.to_path_buf()),
            config: Some(config),
            agent_socket: None,
        };
        let mut both = vec![resolve_chain("lab1", &env, false, &mut Vec::new()).unwrap()];
        if ssh_installed() {
            both.push(resolve_chain("lab1", &env, true, &mut Vec::new()).unwrap());
        }
        for t in &both {
            assert_eq!(
                (t.host.as_str(), t.port, t.user.as_str()),
                ("10.9.8.7", 2222, "alice")
            );
            assert_eq!(
                t.identity_files,
                vec![home.join(".ssh/lab_key"), home.join(".ssh/other")]
            );
            assert!(t.identities_only);
            assert_eq!(t.user_known_hosts, vec![home.join(".ssh/lab_hosts")]);
            assert_eq!(t.connect_timeout, Some(Duration::from_secs(7)));
            assert_eq!(t.server_alive_interval, Some(Duration::from_secs(9)));
            let hops: Vec<String> = t.proxy_jump.iter().map(SshHost::key).collect();
            assert_eq!(hops[0], "carol@10.0.0.1:22");
            assert!(hops[1].starts_with("bob@10.0.0.2:2200"), "{hops:?}");
            assert_eq!(t.known_hosts_name(), "[10.9.8.7]:2222");
            assert_eq!(t.identity_agent, Some(home.join(".ssh/agent.sock")));
            assert!(t.use_agent);
        }
        if let [fallback, openssh] = &both[..] {
            assert_eq!(fallback, openssh);
        }
    }

    #[test]
    fn a_proxyjump_loop_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::write(
            &config,
            "Host lab1\n  HostName 10.0.0.5\n  User a\n  ProxyJump gw\n\
             Host gw\n  HostName 10.0.0.1\n  User a\n  ProxyJump lab1\n",
        )
        .unwrap();
        let env = SshEnv {
            home: Some(dir.path().to_path_buf()),
            config: Some(config),
            agent_socket: None,
        };
        let mut ways = vec![false];
        if ssh_installed() {
            ways.push(true);
        }
        for openssh in ways {
            let e = resolve_chain("lab1", &env, openssh, &mut Vec::new()).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("ProxyJump loops")
                    && text.contains("a@10.0.0.5:22 -> a@10.0.0.1:22 -> a@10.0.0.5:22"),
                "{text}"
            );
        }
    }

    #[test]
    fn host_patterns() {
        assert!(host_matches("lab*", "lab1"));
        assert!(host_matches("a, lab?", "lab1"));
        assert!(!host_matches("lab* !lab1", "lab1"));
        assert!(!host_matches("other", "lab1"));
    }

    #[test]
    fn the_fallback_reader_takes_first_values() {
        let mut s = Settings::default();
        read_config(
            "Host lab1\n  HostName 10.1.1.1\n  User alice\n  IdentityFile ~/.ssh/a\n\
             Match user x\n  User nobody\nHost *\n  User bob\n  Port=2222\n  IdentityFile ~/.ssh/b\n  ProxyJump gw\n",
            "lab1",
            &mut s,
        );
        assert_eq!(s.get("hostname"), Some("10.1.1.1"));
        assert_eq!(s.get("user"), Some("alice"));
        assert_eq!(s.get("port"), Some("2222"));
        assert_eq!(s.get("proxyjump"), Some("gw"));
        assert_eq!(s.all("identityfile").count(), 2);
    }

    #[test]
    fn hosts_to_pick_from_the_config_and_its_includes() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(ssh.join("config.d")).unwrap();
        std::fs::write(
            ssh.join("config"),
            "Host lab1 lab2\n  HostName 10.0.0.1\nHost *.internal !bad\n  User x\n\
             Include config.d/*.conf\nHost=gpu-box\nHost lab1\n",
        )
        .unwrap();
        std::fs::write(ssh.join("config.d/a.conf"), "Host jump\n").unwrap();
        std::fs::write(ssh.join("config.d/b.conf"), "Host \"quoted\" ?x\n").unwrap();
        let env = SshEnv {
            home: Some(home.path().to_path_buf()),
            ..Default::default()
        };
        assert_eq!(
            config_hosts(&env),
            ["lab1", "lab2", "jump", "quoted", "gpu-box"]
        );
        let none = SshEnv {
            home: Some(home.path().join("nobody")),
            ..Default::default()
        };
        assert!(config_hosts(&none).is_empty());
    }
}
