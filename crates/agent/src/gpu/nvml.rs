//! Real GPUs, read through NVML (the crate nvml-wrapper, which loads libnvidia-ml.so at run
//! time, so the agent starts on machines without the driver and says so).
//!
//! NVML is initialised once (it costs about 10 ms), on a dedicated thread that owns the handle
//! for the reader's whole life. [`NvmlReader::read`] sends that thread a request and waits for
//! the answer at most [`NvmlReader::timeout`] (2 s unless set), so a hung driver costs the
//! caller a [`GpuError::Timeout`], never a stalled agent. While the thread is still stuck in an
//! earlier request, no new request is queued behind it.
//!
//! A field a GPU does not support (power on some boards, temperature on some virtual GPUs)
//! reads as zero and does not fail the reading. Each compute process's owner is found through
//! `/proc/PID/status` (its real uid) and the user database, with a cache so the user database
//! is not read again every second.

use super::{GpuError, GpuReader};
use gpubook_core::{Gpu, GpuUuid};
use gpubook_proto::{GpuProcess, GpuReading, Readings};
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// How long a reading may take before [`GpuError::Timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long `Nvml::init()` and the inventory may take. Normally about 10 ms, but without
/// persistence mode the driver brings every GPU up on the first open, which takes seconds.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads GPUs through NVML, on a thread of its own.
#[derive(Debug)]
pub struct NvmlReader {
    /// The GPUs found at start-up, in index order.
    gpus: Vec<Gpu>,
    /// The NVML thread, behind a timeout.
    worker: Worker,
}

impl NvmlReader {
    /// Initialises NVML (once, on its own thread) and lists the GPUs of the server called
    /// `server`. Without a driver or libnvidia-ml this is [`GpuError::NoDriver`].
    pub fn open(server: &str) -> Result<Self, GpuError> {
        let server = server.to_string();
        let (worker, gpus) =
            Worker::spawn(INIT_TIMEOUT, DEFAULT_TIMEOUT, move |ready, requests| {
                nvml_thread(&server, ready, requests);
            })?;
        Ok(Self { gpus, worker })
    }

    /// How long a reading may take.
    pub fn timeout(&self) -> Duration {
        self.worker.timeout
    }

    /// Sets how long a reading may take before [`GpuError::Timeout`].
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.worker.timeout = timeout;
    }
}

impl GpuReader for NvmlReader {
    fn inventory(&self) -> Vec<Gpu> {
        self.gpus.clone()
    }

    fn read(&mut self) -> Result<Readings, GpuError> {
        self.worker.call()
    }

    fn source(&self) -> &'static str {
        "nvml"
    }
}

/// Where a request's answer goes: a fresh channel per request, so an answer that comes after
/// its request timed out is never taken for the answer to a later one.
type Reply = SyncSender<Result<Readings, GpuError>>;

/// What the worker thread says once it has started: the inventory, or why it could not.
type Ready = SyncSender<Result<Vec<Gpu>, GpuError>>;

/// The calling side of a thread that answers reading requests.
#[derive(Debug)]
struct Worker {
    /// Requests to the thread; room for one, so nothing piles up behind a hung request.
    requests: SyncSender<Reply>,
    /// The answer to a request that timed out and may still come.
    pending: Option<Receiver<Result<Readings, GpuError>>>,
    /// How long a reading may take.
    timeout: Duration,
}

impl Worker {
    /// Starts a thread running `body`, which must send the inventory (or why there is none)
    /// on `ready` and then answer the requests (see [`serve`]); waits for the inventory at
    /// most `init_timeout`. Readings may then take at most `timeout`.
    fn spawn<F>(
        init_timeout: Duration,
        timeout: Duration,
        body: F,
    ) -> Result<(Self, Vec<Gpu>), GpuError>
    where
        F: FnOnce(Ready, Receiver<Reply>) + Send + 'static,
    {
        let (requests, incoming) = mpsc::sync_channel::<Reply>(1);
        let (ready, started) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("nvml".into())
            .spawn(move || body(ready, incoming))
            .map_err(|e| GpuError::Nvml(format!("cannot start the NVML thread: {e}")))?;
        // On a timeout the thread is left to itself: once it gets anywhere it finds both
        // channels closed and ends, dropping (and so shutting down) NVML.
        let gpus = match started.recv_timeout(init_timeout) {
            Ok(result) => result?,
            Err(RecvTimeoutError::Timeout) => return Err(GpuError::Timeout(init_timeout)),
            Err(RecvTimeoutError::Disconnected) => return Err(stopped()),
        };
        let worker = Self {
            requests,
            pending: None,
            timeout,
        };
        Ok((worker, gpus))
    }

    /// One reading: asks the thread and waits at most `timeout` in all.
    fn call(&mut self) -> Result<Readings, GpuError> {
        let deadline = Instant::now() + self.timeout;
        if let Some(pending) = self.pending.take() {
            // The thread is still busy with (or just finished) a request that timed out;
            // its answer is stale by now either way, so wait for it to be free, then ask anew.
            match pending.recv_timeout(self.timeout) {
                Ok(_) | Err(RecvTimeoutError::Disconnected) => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.pending = Some(pending);
                    return Err(GpuError::Timeout(self.timeout));
                }
            }
        }
        let (reply, answer) = mpsc::sync_channel(1);
        match self.requests.try_send(reply) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(GpuError::Timeout(self.timeout)),
            Err(TrySendError::Disconnected(_)) => return Err(stopped()),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match answer.recv_timeout(left) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => {
                self.pending = Some(answer);
                Err(GpuError::Timeout(self.timeout))
            }
            Err(RecvTimeoutError::Disconnected) => Err(stopped()),
        }
    }
}

/// The error when the NVML thread is gone (it panicked).
fn stopped() -> GpuError {
    GpuError::Nvml("the NVML thread has stopped".into())
}

/// The thread's side: answers each request with `read()` until the reader is dropped.
fn serve(requests: Receiver<Reply>, mut read: impl FnMut() -> Result<Readings, GpuError>) {
    for reply in requests {
        // The caller may have given up waiting; then nobody wants this answer.
        let _ = reply.send(read());
    }
}

/// The NVML thread: initialises NVML, lists the GPUs, says so on `ready`, then serves
/// readings until the reader is dropped; NVML is shut down when the thread ends.
fn nvml_thread(server: &str, ready: Ready, requests: Receiver<Reply>) {
    let nvml = match Nvml::init() {
        Ok(nvml) => nvml,
        Err(e) => {
            let _ = ready.send(Err(init_error(e)));
            return;
        }
    };
    let devices = match list_devices(&nvml, server) {
        Ok(devices) => devices,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let inventory = devices.iter().map(|(gpu, _)| gpu.clone()).collect();
    if ready.send(Ok(inventory)).is_err() {
        return;
    }
    let mut users = UserCache::default();
    serve(requests, || Ok(read_all(&devices, &mut users)));
}

/// The GPUs NVML sees, in index order, with their handles. A GPU whose handle or UUID cannot
/// be had (fallen off the bus) is left out with a warning rather than failing them all.
fn list_devices<'n>(nvml: &'n Nvml, server: &str) -> Result<Vec<(Gpu, Device<'n>)>, GpuError> {
    let count = nvml
        .device_count()
        .map_err(|e| GpuError::Nvml(format!("counting the GPUs: {e}")))?;
    let mut devices = Vec::with_capacity(count as usize);
    for index in 0..count {
        let found = nvml
            .device_by_index(index)
            .and_then(|device| Ok((device.uuid()?, device)));
        let (uuid, device) = match found {
            Ok(found) => found,
            Err(e) => {
                eprintln!("gpubook-agent: GPU {index} left out: NVML: {e}");
                continue;
            }
        };
        let gpu = Gpu {
            uuid: GpuUuid(uuid),
            index,
            name: device
                .name()
                .unwrap_or_else(|_| format!("NVIDIA GPU {index}")),
            memory_total: device.memory_info().map_or(0, |m| m.total),
            server: server.to_string(),
            simulated: false,
            node: None,
        };
        devices.push((gpu, device));
    }
    if count > 0 && devices.is_empty() {
        return Err(GpuError::Nvml(format!(
            "NVML sees {count} GPU(s) but none of them answers"
        )));
    }
    Ok(devices)
}

/// One reading of every GPU.
fn read_all(devices: &[(Gpu, Device<'_>)], users: &mut UserCache) -> Readings {
    let at = chrono::Utc::now();
    let gpus: Vec<GpuReading> = devices
        .iter()
        .map(|(gpu, device)| read_gpu(gpu, device, users))
        .collect();
    users.keep_only(gpus.iter().flat_map(|g| g.processes.iter().map(|p| p.pid)));
    Readings { at, gpus }
}

/// One reading of one GPU; a field that cannot be read is zero (or, for the total memory,
/// what the inventory says).
fn read_gpu(gpu: &Gpu, device: &Device<'_>, users: &mut UserCache) -> GpuReading {
    let memory = device.memory_info();
    let fault = memory.as_ref().err().and_then(fault_of);
    let memory = memory.ok();
    let util = device.utilization_rates().ok();
    let power_limit_mw = device
        .enforced_power_limit()
        .or_else(|_| device.power_management_limit())
        .unwrap_or(0);
    let processes = compute_processes(device)
        .into_iter()
        .map(|p| GpuProcess {
            pid: p.pid,
            user: users.user(p.pid, process_uid(p.pid), crate::identity::user_name),
            used_bytes: used_bytes(&p.used_gpu_memory),
        })
        .collect();
    GpuReading {
        uuid: gpu.uuid.clone(),
        index: gpu.index,
        name: gpu.name.clone(),
        memory_used: memory.as_ref().map_or(0, |m| m.used),
        memory_total: memory.as_ref().map_or(gpu.memory_total, |m| m.total),
        util_gpu: util.as_ref().map_or(0, |u| u.gpu),
        util_mem: util.as_ref().map_or(0, |u| u.memory),
        temperature_c: device.temperature(TemperatureSensor::Gpu).unwrap_or(0),
        power_mw: device.power_usage().unwrap_or(0),
        power_limit_mw,
        processes,
        fault,
        allocated: None,
    }
}

/// The fault an NVML error names, if it says the GPU is unusable (the agent then takes it out
/// of service); any other error is a field that could not be read.
fn fault_of(e: &NvmlError) -> Option<String> {
    match e {
        NvmlError::GpuLost => Some("lost: NVML says the GPU has fallen off the bus".into()),
        NvmlError::ResetRequired => Some("in error: NVML says the GPU needs a reset".into()),
        _ => None,
    }
}

/// The compute processes on `device`; none where they cannot be read. Asked twice when
/// processes started between NVML's count and its list (the list then does not fit).
fn compute_processes(
    device: &Device<'_>,
) -> Vec<nvml_wrapper::struct_wrappers::device::ProcessInfo> {
    match device.running_compute_processes() {
        Ok(list) => list,
        Err(NvmlError::InsufficientSize(_)) => {
            device.running_compute_processes().unwrap_or_default()
        }
        Err(_) => Vec::new(),
    }
}

/// GPU memory a process holds, in bytes; zero where NVML does not know (Windows WDDM, and
/// some MIG and container set-ups).
fn used_bytes(used: &UsedGpuMemory) -> u64 {
    match used {
        UsedGpuMemory::Used(bytes) => *bytes,
        UsedGpuMemory::Unavailable => 0,
    }
}

/// What a failed `Nvml::init()` means to the person starting the agent.
fn init_error(e: NvmlError) -> GpuError {
    match e {
        NvmlError::LibloadingError(e) => {
            GpuError::NoDriver(format!("cannot load libnvidia-ml.so.1 ({e})"))
        }
        NvmlError::LibraryNotFound => GpuError::NoDriver("libnvidia-ml.so.1 was not found".into()),
        NvmlError::FailedToLoadSymbol(s) => {
            GpuError::NoDriver(format!("libnvidia-ml.so.1 is not a usable NVML ({s})"))
        }
        NvmlError::FunctionNotFound => {
            GpuError::NoDriver("libnvidia-ml.so.1 lacks a function NVML needs".into())
        }
        NvmlError::DriverNotLoaded => {
            GpuError::NoDriver("the NVIDIA kernel driver is not loaded".into())
        }
        NvmlError::NoPermission => GpuError::Nvml(
            "no permission to talk to the NVIDIA driver (check the modes of /dev/nvidia*)".into(),
        ),
        e => GpuError::Nvml(format!("initialising NVML: {e}")),
    }
}

/// The real uid in the text of `/proc/PID/status`: the first number of its `Uid:` line
/// (real, effective, saved, filesystem).
fn parse_real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

/// The real uid of process `pid`; `None` when it has ended or is not visible here (another
/// PID namespace: NVML reports the host's pids).
fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_real_uid(&status)
}

/// User names of GPU processes, by (pid, uid), so the user database is read once per
/// process rather than once per reading. A pid reused by another user's process has a new
/// key, so it is looked up again.
#[derive(Debug, Default)]
struct UserCache {
    names: HashMap<(u32, u32), String>,
}

impl UserCache {
    /// The user of process `pid` whose real uid is `uid` (`None`: unknown), by `lookup` the
    /// first time; a uid without a name reads as "uid:N", as elsewhere in the agent.
    fn user(
        &mut self,
        pid: u32,
        uid: Option<u32>,
        lookup: impl FnOnce(u32) -> Option<String>,
    ) -> Option<String> {
        let uid = uid?;
        let name = self
            .names
            .entry((pid, uid))
            .or_insert_with(|| lookup(uid).unwrap_or_else(|| format!("uid:{uid}")));
        Some(name.clone())
    }

    /// Forgets every process but `pids` (those in the latest reading).
    fn keep_only(&mut self, pids: impl IntoIterator<Item = u32>) {
        let keep: std::collections::HashSet<u32> = pids.into_iter().collect();
        self.names.retain(|(pid, _), _| keep.contains(pid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const STATUS: &str = "Name:\tpython\nUmask:\t0022\nState:\tR (running)\nTgid:\t431\n\
                          Pid:\t431\nPPid:\t1\nUid:\t1001\t0\t0\t0\nGid:\t1001\t1001\t1001\t1001\n";

    #[test]
    fn the_real_uid_is_the_first_of_the_uid_line() {
        assert_eq!(parse_real_uid(STATUS), Some(1001));
        assert_eq!(
            parse_real_uid("Uid:    0       0       0       0\n"),
            Some(0)
        );
        assert_eq!(parse_real_uid("Name:\tx\nGid:\t5\t5\t5\t5\n"), None);
        assert_eq!(parse_real_uid("Uid:\n"), None);
        assert_eq!(parse_real_uid("Uid:\tabc\t1\n"), None);
        assert_eq!(parse_real_uid(""), None);
    }

    #[test]
    fn this_process_has_our_uid() {
        assert_eq!(
            process_uid(std::process::id()),
            Some(crate::identity::current_uid())
        );
        assert_eq!(process_uid(u32::MAX), None);
    }

    #[test]
    fn used_memory_unavailable_is_zero() {
        assert_eq!(
            used_bytes(&UsedGpuMemory::Used(22_525_509_632)),
            22_525_509_632
        );
        assert_eq!(used_bytes(&UsedGpuMemory::Unavailable), 0);
    }

    #[test]
    fn a_lost_gpu_or_one_that_needs_a_reset_is_a_fault_and_nothing_else_is() {
        assert!(fault_of(&NvmlError::GpuLost).is_some_and(|f| f.starts_with("lost")));
        assert!(fault_of(&NvmlError::ResetRequired).is_some_and(|f| f.contains("reset")));
        for e in [
            NvmlError::NotSupported,
            NvmlError::NoPermission,
            NvmlError::Unknown,
        ] {
            assert_eq!(fault_of(&e), None, "{e:?}");
        }
    }

    #[test]
    fn init_errors_without_a_driver_are_no_driver() {
        for e in [
            NvmlError::LibraryNotFound,
            NvmlError::DriverNotLoaded,
            NvmlError::FunctionNotFound,
            NvmlError::FailedToLoadSymbol("nvmlInit_v2".into()),
        ] {
            let e = init_error(e);
            assert!(matches!(e, GpuError::NoDriver(_)), "{e:?}");
            assert!(e.to_string().contains("--gpus sim:4"), "{e}");
        }
        assert!(matches!(
            init_error(NvmlError::NoPermission),
            GpuError::Nvml(_)
        ));
        assert!(matches!(init_error(NvmlError::Unknown), GpuError::Nvml(_)));
    }

    #[test]
    fn users_are_looked_up_once_per_process_and_forgotten_when_it_ends() {
        let mut cache = UserCache::default();
        let calls = Cell::new(0);
        let lookup = |uid: u32| {
            calls.set(calls.get() + 1);
            (uid == 1001).then(|| "alice".to_string())
        };
        assert_eq!(cache.user(431, Some(1001), lookup), Some("alice".into()));
        assert_eq!(cache.user(431, Some(1001), lookup), Some("alice".into()));
        assert_eq!(calls.get(), 1);
        assert_eq!(cache.user(432, Some(4242), lookup), Some("uid:4242".into()));
        assert_eq!(cache.user(433, None, lookup), None);
        assert_eq!(calls.get(), 2);
        // pid 431 reused by another user: a new key.
        assert_eq!(cache.user(431, Some(4242), lookup), Some("uid:4242".into()));
        assert_eq!(calls.get(), 3);
        cache.keep_only([432]);
        assert_eq!(cache.names.len(), 1);
        cache.user(431, Some(1001), lookup);
        assert_eq!(calls.get(), 4);
    }

    fn reading(n: u32) -> Readings {
        Readings {
            at: chrono::Utc::now(),
            gpus: vec![GpuReading {
                uuid: GpuUuid("GPU-test".into()),
                index: 0,
                name: "Test".into(),
                memory_used: 0,
                memory_total: 1,
                util_gpu: n,
                util_mem: 0,
                temperature_c: 0,
                power_mw: 0,
                power_limit_mw: 0,
                processes: Vec::new(),
                fault: None,
                allocated: None,
            }],
        }
    }

    /// A worker whose n-th reading (from 1) takes `delay(n)`.
    fn worker(timeout: Duration, delay: fn(u32) -> Duration) -> Worker {
        let (worker, gpus) = Worker::spawn(Duration::from_secs(5), timeout, move |ready, rx| {
            ready.send(Ok(Vec::new())).unwrap();
            let mut n = 0;
            serve(rx, || {
                n += 1;
                std::thread::sleep(delay(n));
                Ok(reading(n))
            });
        })
        .unwrap();
        assert!(gpus.is_empty());
        worker
    }

    #[test]
    fn readings_come_from_the_thread() {
        let mut w = worker(Duration::from_secs(2), |_| Duration::ZERO);
        for n in 1..=3 {
            assert_eq!(w.call().unwrap().gpus[0].util_gpu, n);
        }
    }

    #[test]
    fn a_hung_reading_times_out_and_its_late_answer_is_not_taken_for_the_next() {
        // The second reading hangs for 600 ms; readings may take 200 ms.
        let mut w = worker(Duration::from_millis(200), |n| {
            Duration::from_millis(if n == 2 { 600 } else { 0 })
        });
        assert_eq!(w.call().unwrap().gpus[0].util_gpu, 1);
        let started = Instant::now();
        assert!(matches!(w.call(), Err(GpuError::Timeout(_))));
        assert!(started.elapsed() < Duration::from_millis(400));
        // Still stuck: a timeout again, without queueing another request.
        let started = Instant::now();
        assert!(matches!(w.call(), Err(GpuError::Timeout(_))));
        assert!(started.elapsed() < Duration::from_millis(400));
        // Unstuck: the stale answer (2) is dropped and a fresh reading (3) is made.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(w.call().unwrap().gpus[0].util_gpu, 3);
        assert_eq!(w.call().unwrap().gpus[0].util_gpu, 4);
    }

    #[test]
    fn a_failed_start_is_returned_and_a_slow_one_times_out() {
        let e = Worker::spawn(Duration::from_secs(5), DEFAULT_TIMEOUT, |ready, _| {
            ready.send(Err(GpuError::NoDriver("test".into()))).unwrap();
        })
        .unwrap_err();
        assert!(matches!(e, GpuError::NoDriver(_)), "{e:?}");

        let e = Worker::spawn(Duration::from_millis(100), DEFAULT_TIMEOUT, |ready, _| {
            std::thread::sleep(Duration::from_millis(300));
            let _ = ready.send(Ok(Vec::new()));
        })
        .unwrap_err();
        assert!(matches!(e, GpuError::Timeout(_)), "{e:?}");

        let e = Worker::spawn(Duration::from_secs(5), DEFAULT_TIMEOUT, |_, _| {
            panic!("the NVML thread panics (this panic is expected)")
        })
        .unwrap_err();
        assert!(matches!(e, GpuError::Nvml(_)), "{e:?}");
    }

    #[test]
    fn a_thread_that_died_is_an_error_not_a_hang() {
        let (mut w, _) = Worker::spawn(Duration::from_secs(5), DEFAULT_TIMEOUT, |ready, rx| {
            ready.send(Ok(Vec::new())).unwrap();
            let _first = rx.recv();
            panic!("the NVML thread panics (this panic is expected)");
        })
        .unwrap();
        assert!(matches!(w.call(), Err(GpuError::Nvml(_))));
        assert!(matches!(w.call(), Err(GpuError::Nvml(_))));
    }
}
