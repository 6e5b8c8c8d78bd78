//! GPU readers, behind one trait: NVML (real GPUs), replay of recorded readings, simulated.
//!
//! A reader is made once at start-up (NVML is initialised once and kept) and read from the
//! sampler task; readers that may block (NVML) do their work on a dedicated thread and give
//! up after a timeout, so a hung driver cannot stall the agent.

pub mod nvml;
pub mod replay;
pub mod sim;

use gpubook_core::Gpu;
use gpubook_proto::Readings;
use std::path::PathBuf;
use thiserror::Error;

/// A GPU reader failed.
#[derive(Debug, Error)]
pub enum GpuError {
    /// There is no NVIDIA driver (or NVML could not be loaded).
    #[error(
        "no NVIDIA driver here: {0}. To try gpubook without GPUs, start the agent with \
         --gpus sim:4 (four simulated GPUs)"
    )]
    NoDriver(String),
    /// NVML answered with an error.
    #[error("NVML: {0}")]
    Nvml(String),
    /// Reading took longer than the timeout (a hung driver).
    #[error("reading the GPUs took longer than {0:?}; the driver may be hung")]
    Timeout(std::time::Duration),
    /// A replay file could not be used.
    #[error("replay file {path}: {why}")]
    Replay {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The simulated GPUs' processes file could not be used.
    #[error("simulated processes file {path}: {why}")]
    SimProcesses {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A `--gpus` value that is not `nvml`, `slurm`, `sim:N` or `replay:FILE`.
    #[error("--gpus {0:?}: expected nvml, slurm, sim:N (N from 1 to 64) or replay:FILE")]
    BadSource(String),
    /// The cluster's GPUs could not be read from Slurm.
    #[error("{0}")]
    Slurm(String),
}

/// Something that reads a server's GPUs.
pub trait GpuReader: Send + std::fmt::Debug {
    /// The GPUs, as found at start-up, in index order.
    fn inventory(&self) -> Vec<Gpu>;
    /// One reading of every GPU.
    fn read(&mut self) -> Result<Readings, GpuError>;
    /// "nvml", "replay", "simulated" or "slurm": shown to people.
    fn source(&self) -> &'static str;
    /// Whether the GPUs are simulated (the calendar says so).
    fn simulated(&self) -> bool {
        false
    }
}

/// Which reader `--gpus` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Real GPUs through NVML.
    Nvml,
    /// `n` simulated GPUs.
    Sim(u32),
    /// Readings recorded in a file, played back.
    Replay(PathBuf),
    /// A Slurm cluster's GPUs (`gres/gpu`), held and run by Slurm (see [`crate::slurm`]).
    Slurm,
}

impl std::str::FromStr for Source {
    type Err = GpuError;

    fn from_str(s: &str) -> Result<Self, GpuError> {
        let bad = || GpuError::BadSource(s.to_string());
        if s == "nvml" {
            Ok(Source::Nvml)
        } else if s == "slurm" {
            Ok(Source::Slurm)
        } else if let Some(n) = s.strip_prefix("sim:") {
            let n: u32 = n.parse().map_err(|_| bad())?;
            if !(1..=64).contains(&n) {
                return Err(bad());
            }
            Ok(Source::Sim(n))
        } else if let Some(path) = s.strip_prefix("replay:") {
            if path.is_empty() {
                return Err(bad());
            }
            Ok(Source::Replay(PathBuf::from(path)))
        } else {
            Err(bad())
        }
    }
}

/// How a reader is opened, beyond its [`Source`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReaderOptions {
    /// How many times faster than recorded a replay plays (1.0: as recorded).
    pub replay_speed: f64,
    /// The file that tells simulated GPUs which processes run on them (see [`sim`]).
    pub sim_processes: Option<PathBuf>,
    /// On a Slurm node: the shared directory and node name to write each reading to, for the
    /// Slurm agent (see [`crate::slurm::nodes`]).
    pub publish_readings: Option<(PathBuf, String)>,
    /// On Slurm: the shared directory the nodes' agents write their readings to.
    pub node_readings: Option<PathBuf>,
}

impl Default for ReaderOptions {
    /// Replays in real time; simulated GPUs watch no processes file.
    fn default() -> Self {
        Self {
            replay_speed: 1.0,
            sim_processes: None,
            publish_readings: None,
            node_readings: None,
        }
    }
}

/// Opens the reader `source` names, for a server called `server`.
pub fn open(source: &Source, server: &str) -> Result<Box<dyn GpuReader>, GpuError> {
    open_with(source, server, &ReaderOptions::default())
}

/// Opens the reader `source` names, for a server called `server`, with `options`.
pub fn open_with(
    source: &Source,
    server: &str,
    options: &ReaderOptions,
) -> Result<Box<dyn GpuReader>, GpuError> {
    let reader: Box<dyn GpuReader> = match source {
        Source::Nvml => Box::new(nvml::NvmlReader::open(server)?),
        Source::Sim(n) => {
            let sim = sim::SimReader::new(*n, server);
            match &options.sim_processes {
                Some(path) => Box::new(sim.with_processes_file(path.clone())),
                None => Box::new(sim),
            }
        }
        Source::Replay(path) => {
            Box::new(replay::ReplayReader::open(path, server)?.with_speed(options.replay_speed))
        }
        Source::Slurm => Box::new(
            crate::slurm::reader::SlurmReader::open(server)?
                .with_node_readings(options.node_readings.clone()),
        ),
    };
    Ok(match &options.publish_readings {
        Some((dir, node)) => Box::new(crate::slurm::nodes::Publishing::new(
            reader,
            dir.clone(),
            node.clone(),
        )),
        None => reader,
    })
}
