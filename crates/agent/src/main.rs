//! `gpubook-agent`: the daemon on each GPU server. See the crate docs and `--help`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use gpubook_agent::clock::SystemClock;
use gpubook_agent::gpu::Source;
use gpubook_agent::{identity, AgentConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// The gpubook agent: holds a GPU server's bookings and enforces them.
#[derive(Debug, Parser)]
#[command(name = "gpubook-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: listen on its socket, keep the bookings, read the GPUs.
    Serve {
        /// Where the bookings database lives [default: ~/.local/state/gpubook].
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// The socket to listen on [default: $GPUBOOK_SOCKET, else
        /// $XDG_RUNTIME_DIR/gpubook/agent.sock, else /tmp/gpubook-UID/agent.sock].
        #[arg(long)]
        socket: Option<PathBuf>,
        /// How to read the GPUs: nvml (real NVIDIA GPUs), sim:N (N simulated GPUs) or
        /// replay:FILE (recorded NVML readings).
        #[arg(long, default_value = "nvml")]
        gpus: String,
        /// The lab's policy file (TOML; see the README). Without one: no limits, and the
        /// agent's own user is admin.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// The server's name as people see it [default: the host name].
        #[arg(long)]
        name: Option<String>,
        /// Let every local user connect (system mode). Who they are comes from the socket.
        #[arg(long)]
        shared: bool,
        /// Seconds between GPU readings.
        #[arg(long, default_value_t = 1.0)]
        sample_secs: f64,
        /// With --gpus replay:FILE, play the recording this many times faster (tests).
        #[arg(long, default_value_t = 1.0)]
        replay_speed: f64,
        /// With --gpus sim:N, the file that says which processes run on the simulated GPUs
        /// [default: STATE_DIR/sim-processes.json]. Format: see the README.
        #[arg(long)]
        sim_processes: Option<PathBuf>,
        /// On a Slurm compute node: also write each reading to DIR/<node>.json (a directory
        /// on the cluster's shared file system, writable by this user only), for the Slurm
        /// agent's --node-readings.
        #[arg(long, value_name = "DIR")]
        publish_readings: Option<PathBuf>,
        /// With --publish-readings, the node's name as Slurm knows it [default: the short
        /// host name].
        #[arg(long, requires = "publish_readings")]
        node_name: Option<String>,
        /// With --gpus slurm: show the live readings the nodes' agents write to DIR (see
        /// --publish-readings) on their GPUs.
        #[arg(long, value_name = "DIR")]
        node_readings: Option<PathBuf>,
        /// Seconds a connection that follows nothing may stay silent (tests).
        #[arg(long, hide = true, default_value_t = gpubook_agent::server::IDLE_TIMEOUT.as_secs())]
        idle_timeout_secs: u64,
        /// Most connections of one uid at once (tests).
        #[arg(long, hide = true, default_value_t = gpubook_agent::server::MAX_CONNECTIONS_PER_UID)]
        max_connections_per_uid: usize,
    },
    /// Install the agent as the server's system service (an admin, with sudo): the binary
    /// in /usr/local/bin, a systemd unit, the state in /var/lib/gpubook, the socket in
    /// /run/gpubook for every lab user, jobs run as their owners. Run it again to upgrade.
    Install {
        /// Install for the whole server (the only kind there is; required so that it is
        /// never done by accident).
        #[arg(long, required = true)]
        system: bool,
        /// Write everything below this directory instead of / (a package build, a test);
        /// systemd is then left alone.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// How the service reads the GPUs.
        #[arg(long, default_value = "nvml")]
        gpus: String,
        /// The server's name as people see it [default: the host name].
        #[arg(long)]
        name: Option<String>,
        /// Write the files but do not enable or start the service.
        #[arg(long)]
        no_start: bool,
        /// Lay the files out for a distribution package: the binary in /usr/bin, the unit
        /// in /usr/lib/systemd/system (with --root, for building the gpubook-agent package).
        #[arg(long)]
        package: bool,
    },
    /// Join standard input and output to the agent's socket (used over SSH).
    Bridge {
        /// The agent's socket [default: the system agent's if it runs, else the personal one].
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// The copy child the agent starts as a booking's owner (stage-in, save). Internal.
    #[command(hide = true)]
    Transfer {
        /// The task, as JSON.
        task: String,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Command::Transfer { task } = &cli.command {
        // No runtime: the child copies with plain blocking I/O and exits.
        std::process::exit(gpubook_agent::transfer::child::main(task));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    let result = rt.block_on(run(cli));
    if let Err(e) = result {
        eprintln!("gpubook-agent: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let uid = identity::current_uid();
    match cli.command {
        Command::Serve {
            state_dir,
            socket,
            gpus,
            policy,
            name,
            shared,
            sample_secs,
            replay_speed,
            sim_processes,
            publish_readings,
            node_name,
            node_readings,
            idle_timeout_secs,
            max_connections_per_uid,
        } => {
            let state_dir = match state_dir {
                Some(d) => d,
                None => default_state_dir()?,
            };
            let gpus: Source = gpus.parse()?;
            if node_readings.is_some() && gpus != Source::Slurm {
                anyhow::bail!("--node-readings is for --gpus slurm");
            }
            if !(0.05..=3600.0).contains(&sample_secs) {
                anyhow::bail!("--sample-secs must be between 0.05 and 3600");
            }
            if !(0.001..=1000.0).contains(&replay_speed) {
                anyhow::bail!("--replay-speed must be between 0.001 and 1000");
            }
            // The /tmp fallback is used only if it is this uid's own, 0700: another local user
            // could have made it to catch the clients' connections.
            let socket = match socket.or_else(gpubook_proto::paths::socket_from_env) {
                Some(s) => s,
                None => gpubook_proto::paths::checked_runtime_dir(uid)
                    .context("cannot use the directory for the agent's socket")?
                    .join("agent.sock"),
            };
            let config = AgentConfig {
                state_dir,
                socket,
                gpus,
                policy,
                server_name: match name {
                    Some(n) if n.trim().is_empty() => {
                        anyhow::bail!(
                            "--name must not be empty: it is the server's name as people see it"
                        )
                    }
                    Some(n) => n,
                    None => host_name(),
                },
                shared,
                sample_interval: std::time::Duration::from_secs_f64(sample_secs),
            };
            let publish_readings = match publish_readings {
                None => None,
                Some(dir) => {
                    let node = node_name.unwrap_or_else(|| {
                        let host = host_name();
                        host.split('.').next().unwrap_or(&host).to_string()
                    });
                    if !gpubook_agent::slurm::nodes::valid_node(&node) {
                        anyhow::bail!("--node-name {node:?} is not a host name");
                    }
                    Some((dir, node))
                }
            };
            let reader = gpubook_agent::gpu::ReaderOptions {
                replay_speed,
                sim_processes,
                publish_readings,
                node_readings,
            };
            let limits = gpubook_agent::server::Limits {
                idle: std::time::Duration::from_secs(idle_timeout_secs.max(1)),
                per_uid: max_connections_per_uid.max(1),
                ..Default::default()
            };
            gpubook_agent::server::serve_limited(config, reader, limits, Arc::new(SystemClock))
                .await
        }
        Command::Install {
            system: _,
            root,
            gpus,
            name,
            no_start,
            package,
        } => {
            gpus.parse::<Source>()?;
            let opts = gpubook_agent::install::InstallOptions {
                root,
                binary: std::env::current_exe().context("cannot find this program's file")?,
                gpus,
                name,
                start: !no_start,
                package,
            };
            let report = gpubook_agent::install::install_system(&opts)?;
            for step in report.steps {
                println!("{step}");
            }
            Ok(())
        }
        Command::Transfer { .. } => unreachable!("handled before the runtime starts"),
        Command::Bridge { socket } => {
            let socket = socket.unwrap_or_else(|| {
                let system = PathBuf::from(gpubook_proto::paths::SYSTEM_SOCKET);
                if system.exists() {
                    system
                } else {
                    gpubook_proto::paths::personal_socket(uid)
                }
            });
            gpubook_proto::paths::check_socket_dir(&socket)
                .context("the agent's socket directory is not safe to use")?;
            gpubook_agent::bridge::run(&socket).await?;
            Ok(())
        }
    }
}

fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("gpubook"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; pass --state-dir")?;
    Ok(PathBuf::from(home).join(".local/state/gpubook"))
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
