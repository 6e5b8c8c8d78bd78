//! Simulated GPUs, for a machine without NVIDIA GPUs: named "Simulated GPU N" everywhere they
//! are shown, so nobody mistakes them for real ones.

use super::{GpuError, GpuReader};
use gpubook_core::{Gpu, GpuUuid};
use gpubook_proto::{GpuReading, Readings};

/// Memory of a simulated GPU: 80 GiB.
const SIM_MEMORY: u64 = 80 << 30;

/// `n` simulated GPUs with slowly varying, made-up readings.
#[derive(Debug)]
pub struct SimReader {
    /// The GPUs.
    gpus: Vec<Gpu>,
    /// Readings made so far; drives the made-up curves.
    tick: u64,
}

impl SimReader {
    /// `n` simulated GPUs on `server`.
    pub fn new(n: u32, server: &str) -> Self {
        let gpus = (0..n)
            .map(|i| Gpu {
                uuid: GpuUuid(format!("SIM-{server}-{i}")),
                index: i,
                name: format!("Simulated GPU {i}"),
                memory_total: SIM_MEMORY,
                server: server.to_string(),
                simulated: true,
            })
            .collect();
        Self { gpus, tick: 0 }
    }
}

impl GpuReader for SimReader {
    fn inventory(&self) -> Vec<Gpu> {
        self.gpus.clone()
    }

    fn read(&mut self) -> Result<Readings, GpuError> {
        self.tick += 1;
        let t = self.tick;
        let gpus = self
            .gpus
            .iter()
            .map(|g| {
                // A slow triangle wave per GPU, out of phase, so the bars move.
                let phase = (t + u64::from(g.index) * 17) % 120;
                let util = if phase < 60 { phase } else { 120 - phase } as u32 * 100 / 60;
                GpuReading {
                    uuid: g.uuid.clone(),
                    index: g.index,
                    name: g.name.clone(),
                    memory_used: SIM_MEMORY / 100 * u64::from(util) / 2,
                    memory_total: SIM_MEMORY,
                    util_gpu: util,
                    util_mem: util / 3,
                    temperature_c: 35 + util / 3,
                    power_mw: 60_000 + util * 3_000,
                    power_limit_mw: 400_000,
                    processes: Vec::new(),
                }
            })
            .collect();
        Ok(Readings {
            at: chrono::Utc::now(),
            gpus,
        })
    }

    fn source(&self) -> &'static str {
        "simulated"
    }

    fn simulated(&self) -> bool {
        true
    }
}
