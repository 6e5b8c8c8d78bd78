//! What the CLI's end-to-end tests share: an agent run by root in the test process that
//! every user can reach, with the CLI where they can run it. Users and the require-or-skip
//! rule come from gpubook-testkit.

#![allow(dead_code)]

use gpubook_testkit::agent::{AgentProcess, InProcessAgent};
use gpubook_testkit::users::runnable_by_all;
use gpubook_testkit::wait_until_blocking;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A real user: (uid, gid).
pub type Ids = (u32, u32);

/// The user `name` (a member of `groups`), created if missing and reused if not.
pub fn ensure_user(name: &str, groups: &[&str]) -> Ids {
    gpubook_testkit::ensure_user_in(name, groups).ids()
}

/// The agent as root (system mode, shared socket, the given policy) on its own runtime in
/// this process, in a directory every user may traverse. Stopped on drop.
pub struct Lab {
    /// The agent; dropped (stopped) before its runtime.
    agent: Agent,
    /// The agent's socket.
    pub socket: PathBuf,
    /// The CLI, where every user can run it.
    pub cli: PathBuf,
    /// Runs the agent.
    _rt: tokio::runtime::Runtime,
}

/// In this process (most tests), or the real binary where the test needs what the agent
/// spawns for users (the copy of staged data runs the agent's own program).
enum Agent {
    InProcess(InProcessAgent),
    Process(AgentProcess),
}

impl Lab {
    /// As [`Lab::start`], with the real agent binary as a child process.
    pub fn start_binary(policy_toml: &str, gpus: u32) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let agent = rt.block_on(AgentProcess::shared_with_policy(gpus, policy_toml));
        Self::with_process(rt, agent)
    }

    /// As [`Lab::start_binary`], the agent reading its GPUs from `source` (`slurm`).
    pub fn start_binary_on(source: &str, policy_toml: &str) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let agent = rt.block_on(AgentProcess::shared_on(source, policy_toml));
        Self::with_process(rt, agent)
    }

    fn with_process(rt: tokio::runtime::Runtime, agent: AgentProcess) -> Self {
        let socket = agent.socket();
        let cli = runnable_by_all(
            &PathBuf::from(env!("CARGO_BIN_EXE_gpubook")),
            socket.parent().unwrap(),
        );
        let lab = Lab {
            socket,
            agent: Agent::Process(agent),
            cli,
            _rt: rt,
        };
        wait_until_blocking("the agent to answer `gpubook whoami`", || {
            lab.gpubook(None, &["whoami"]).status.success()
        });
        lab
    }

    /// Starts the agent with `policy_toml` serving `gpus` (`sim:N`), and waits until the CLI
    /// reaches it.
    pub fn start(policy_toml: &str, gpus: &str) -> Self {
        Self::start_seeded(policy_toml, gpus, |_| {})
    }

    /// As [`Lab::start`], with `seed` given the agent's state directory first (to write a
    /// recorded history into its store before the agent opens it).
    pub fn start_seeded(policy_toml: &str, gpus: &str, seed: impl FnOnce(&Path)) -> Self {
        let n: u32 = gpus
            .strip_prefix("sim:")
            .and_then(|n| n.parse().ok())
            .expect("gpus is sim:N");
        let dir = tempfile::tempdir().unwrap();
        seed(&dir.path().join("state"));
        let rt = tokio::runtime::Runtime::new().unwrap();
        let agent = rt.block_on(
            InProcessAgent::builder(n)
                .policy(policy_toml)
                .shared()
                .in_dir(dir)
                .start(),
        );
        let cli = runnable_by_all(&PathBuf::from(env!("CARGO_BIN_EXE_gpubook")), agent.path());
        let lab = Lab {
            socket: agent.socket(),
            agent: Agent::InProcess(agent),
            cli,
            _rt: rt,
        };
        wait_until_blocking("the agent to answer `gpubook whoami`", || {
            lab.gpubook(None, &["whoami"]).status.success()
        });
        lab
    }

    /// Runs the CLI as `user`, or as root.
    pub fn gpubook(&self, user: Option<Ids>, args: &[&str]) -> Output {
        self.command(user, args).output().expect("run gpubook")
    }

    /// The CLI as `user` (or root) with `args`, talking to this agent, in `/` with no terminal;
    /// for a test that changes where it runs or how.
    pub fn command(&self, user: Option<Ids>, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.cli);
        cmd.arg("--server")
            .arg(format!("unix:{}", self.socket.display()))
            .args(args)
            .env_remove("GPUBOOK_SERVER")
            .env("TZ", "UTC")
            .stdin(std::process::Stdio::null())
            .current_dir("/");
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

/// An output's status and streams, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
