//! "This computer": the local agent, used if one already listens, otherwise started by the app.
//!
//! Linux only: the agent runs jobs on this machine's NVIDIA GPUs through NVML and Linux
//! process control, so elsewhere (a Mac, Windows) the app has SSH servers only and says so
//! with [`NOT_HERE`].

/// Why This computer is missing off Linux, as the app says it.
pub const NOT_HERE: &str = "This computer (a local gpubook agent) runs on Linux only; \
     on this system add your lab's servers over SSH.";

/// Whether This computer is offered on this platform.
pub const AVAILABLE: bool = cfg!(target_os = "linux");

/// This process's uid, which names the person's own agent socket; 0 where there are no uids
/// (Windows, where no local socket is used).
pub fn uid() -> u32 {
    #[cfg(unix)]
    // SAFETY: getuid cannot fail and touches no memory.
    return unsafe { libc::getuid() };
    #[cfg(not(unix))]
    return 0;
}

#[cfg(target_os = "linux")]
use std::path::{Path, PathBuf};
#[cfg(target_os = "linux")]
use std::process::{Command, Stdio};
#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

/// The socket the app uses for This computer: `$GPUBOOK_SOCKET`, else the system agent's if
/// it runs, else the person's own.
#[cfg(target_os = "linux")]
pub fn socket() -> PathBuf {
    gpubook_client::endpoint::local_socket(uid())
}

#[cfg(target_os = "linux")]
/// The gpubook-agent binary: `$GPUBOOK_AGENT_BINARY`, else next to the app's executable,
/// else the desktop package's build for this machine (`/usr/lib/gpubook/agents/<arch>/`),
/// else on `PATH`.
pub fn agent_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GPUBOOK_AGENT_BINARY").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let p = dir.join("gpubook-agent");
        if p.is_file() {
            return Some(p);
        }
    }
    if let Some(p) = gpubook_client::deploy::packaged_agent() {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("gpubook-agent"))
            .find(|p| p.is_file())
    })
}

#[cfg(target_os = "linux")]
fn answers(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

#[cfg(target_os = "linux")]
/// How This computer's agent came to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAgent {
    /// One was already listening.
    Found,
    /// The app started one (it keeps running after the app quits, so booked jobs still start).
    Started {
        /// Its process id.
        pid: u32,
        /// Its GPUs: "nvml" or "sim:4".
        gpus: String,
    },
}

#[cfg(target_os = "linux")]
/// Makes sure an agent listens on `socket`: uses a running one, else starts
/// `gpubook-agent serve` with its state in `state_dir`, on real GPUs through NVML, or on 4
/// simulated GPUs where NVML is absent. Blocks for up to a few seconds.
pub fn ensure(socket: &Path, state_dir: &Path) -> Result<LocalAgent, String> {
    if answers(socket) {
        return Ok(LocalAgent::Found);
    }
    let bin = agent_binary().ok_or_else(|| {
        "gpubook-agent was not found next to the app or on PATH (set GPUBOOK_AGENT_BINARY); This computer cannot be shown.".to_string()
    })?;
    std::fs::create_dir_all(state_dir)
        .map_err(|e| format!("Cannot create {}: {e}", state_dir.display()))?;
    let mut last_err = String::new();
    for gpus in ["nvml", "sim:4"] {
        let log =
            std::fs::File::create(state_dir.join(format!("agent-{}.log", gpus.replace(':', ""))))
                .map_err(|e| {
                format!(
                    "Cannot write the agent's log in {}: {e}",
                    state_dir.display()
                )
            })?;
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--socket")
            .arg(socket)
            .arg("--gpus")
            .arg(gpus)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // Its own session: it outlives the app and a Ctrl-C in the app's terminal.
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("Cannot start {}: {e}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if answers(socket) {
                let pid = child.id();
                // Reap it in the background should it ever exit while the app runs.
                std::thread::spawn(move || child.wait());
                return Ok(LocalAgent::Started {
                    pid,
                    gpus: gpus.to_string(),
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                last_err = format!("gpubook-agent --gpus {gpus} exited ({status})");
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                last_err = format!(
                    "gpubook-agent --gpus {gpus} did not open {} in time",
                    socket.display()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Err(format!(
        "The local agent could not be started: {last_err}. See the logs in {}.",
        state_dir.display()
    ))
}
