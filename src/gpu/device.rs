//! The device layer: adapter selection, the device and queue, error capture, and waiting on the
//! GPU with a timeout (blocking, or as a future driven by a background poller thread).
//!
//! On the web (`wasm32`) there is one thread and nothing may block: the context is opened with
//! [`GpuContext::new_async`], work is submitted on the caller's turn of the event loop and the
//! browser resolves buffer mappings itself; there is no poller or submission thread, and no
//! blocking wait.

use super::kernels::PipelineCache;
use crate::error::{Error, Result};
use crate::schedule::DeviceLimits;
use std::future::Future;
use std::pin::Pin;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
#[cfg(not(target_arch = "wasm32"))]
use std::time::Instant;
// `std::time::Instant` panics on wasm32-unknown-unknown; the browser's clock instead.
#[cfg(target_arch = "wasm32")]
use web_time::Instant;

/// How to pick and open a GPU.
///
/// Given to [`GpuContext::new`] or as [`Device::Gpu`](crate::Device::Gpu) to
/// [`EngineBuilder::device`](crate::EngineBuilder::device); `Default` honours `WGPU_BACKEND` and
/// `WGPU_ADAPTER_NAME`.
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    /// Backends to consider; `None` means every backend compiled in. The default reads
    /// `WGPU_BACKEND` (a comma-separated list such as `vulkan` or `metal,dx12`).
    pub backend: Option<wgpu::Backends>,
    /// Pick the first adapter whose name contains this (case-insensitive). The default reads
    /// `WGPU_ADAPTER_NAME`.
    pub adapter_name: Option<String>,
    /// Take the adapter at this position in the list [`list_adapters`] gives (and `eie
    /// devices` prints as `[i]`) over the same backends, whatever its name; `None` (the
    /// default) picks by `adapter_name` and rank. Two identical GPUs differ only here.
    pub adapter_index: Option<usize>,
    /// Longest wait for one submission before [`Error::PollTimeout`].
    pub poll_timeout: Duration,
    /// Enable `SHADER_F16` when the adapter has it (reported by `eie devices`; the EIE kernels
    /// do not need it).
    pub use_f16: bool,
    /// Enable timestamp queries when the adapter has them.
    pub use_timestamps: bool,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            backend: wgpu::Backends::from_env(),
            adapter_name: std::env::var("WGPU_ADAPTER_NAME")
                .ok()
                .filter(|s| !s.is_empty()),
            adapter_index: None,
            poll_timeout: Duration::from_secs(60),
            use_f16: true,
            use_timestamps: true,
        }
    }
}

/// One adapter as `eie devices` lists it.
///
/// Returned by [`list_adapters`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    /// Adapter name, e.g. `NVIDIA H100 80GB HBM3` or `llvmpipe (LLVM 15.0.7, 256 bits)`.
    pub name: String,
    /// Backend: `vulkan`, `metal`, `dx12`, `gl`.
    pub backend: String,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// `TIMESTAMP_QUERY`.
    pub timestamps: bool,
    /// `TIMESTAMP_QUERY_INSIDE_PASSES` (per-layer timing).
    pub timestamps_inside_passes: bool,
    /// `SHADER_F16`.
    pub f16: bool,
    /// `SUBGROUP`.
    pub subgroups: bool,
    /// Smallest and largest subgroup size the adapter reports.
    pub subgroup_sizes: (u32, u32),
    /// Largest storage binding, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Workgroup memory per workgroup, bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
}

fn backend_name(b: wgpu::Backend) -> String {
    b.to_str().to_string()
}

#[cfg(not(target_arch = "wasm32"))]
fn summarize(a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let f = a.features();
    let l = a.limits();
    AdapterSummary {
        name: info.name.clone(),
        backend: backend_name(info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        timestamps: f.contains(wgpu::Features::TIMESTAMP_QUERY),
        timestamps_inside_passes: f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        f16: f.contains(wgpu::Features::SHADER_F16),
        subgroups: f.contains(wgpu::Features::SUBGROUP),
        subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
        max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
        max_buffer_size: l.max_buffer_size,
        max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
        max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Every adapter of every backend compiled in (or of `WGPU_BACKEND` when set).
///
/// `eie devices` prints them; [`DeviceOptions::adapter_index`] picks one by position.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters() -> Vec<AdapterSummary> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    let inst = instance(backends);
    pollster::block_on(inst.enumerate_adapters(backends))
        .iter()
        .map(summarize)
        .collect()
}

/// Orders adapters: discrete before integrated before virtual before CPU, then Vulkan, Metal,
/// DX12 before OpenGL.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let t = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let b = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    };
    (t, b)
}

/// Errors reported by the device outside an error scope, kept until checked.
#[derive(Default)]
struct DeviceState {
    lost: Mutex<Option<String>>,
    uncaptured: Mutex<Option<Error>>,
}

/// A completion slot for one submission, set by a buffer-map callback (or by the poller when
/// the device fails) and awaited as a future or waited on by a blocked thread.
pub(crate) struct Completion {
    state: Mutex<Slot>,
    done: Condvar,
}

#[derive(Default)]
struct Slot {
    result: Option<Result<()>>,
    waker: Option<Waker>,
    at: Option<Instant>,
}

impl Completion {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Completion {
            state: Mutex::new(Slot::default()),
            done: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the result unless one is already set; wakes the waiter.
    pub(crate) fn complete(&self, r: Result<()>) {
        let mut s = self.lock();
        if s.result.is_none() && s.at.is_none() {
            s.result = Some(r);
            s.at = Some(Instant::now());
            if let Some(w) = s.waker.take() {
                w.wake();
            }
            self.done.notify_all();
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn is_set(&self) -> bool {
        self.lock().at.is_some()
    }

    /// When the result was set.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn completed_at(&self) -> Option<Instant> {
        self.lock().at
    }
}

/// Future of a [`Completion`].
pub(crate) struct CompletionFuture(pub(crate) Arc<Completion>);

impl Future for CompletionFuture {
    type Output = Result<()>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut s = self.0.lock();
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None if s.at.is_some() => Poll::Ready(Err(Error::Gpu("result taken twice".into()))),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// A job for the context's submission thread.
#[cfg(not(target_arch = "wasm32"))]
type Job = Box<dyn FnOnce() + Send>;

struct HandoffSlot<T> {
    result: Option<Result<T>>,
    waker: Option<Waker>,
    done: bool,
}

/// Marks a handed-off job done when it is dropped, run or not (a job dropped unrun, because
/// the submission thread is gone, fails its future instead of leaving it pending).
#[cfg(not(target_arch = "wasm32"))]
struct Finisher<T>(Arc<Mutex<HandoffSlot<T>>>);

#[cfg(not(target_arch = "wasm32"))]
impl<T> Drop for Finisher<T> {
    fn drop(&mut self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.done = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

/// The result of a job run on the context's submission thread ([`GpuContext::hand_off`]).
pub(crate) struct Handoff<T>(Arc<Mutex<HandoffSlot<T>>>);

impl<T> Future for Handoff<T> {
    type Output = Result<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = s.result.take() {
            return Poll::Ready(r);
        }
        if s.done {
            return Poll::Ready(Err(Error::ShutDown(
                "the GPU submission thread stopped before running the request".into(),
            )));
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Background thread that polls the device while futures wait on it, so async callers never
/// block their executor on `device.poll`.
#[cfg(not(target_arch = "wasm32"))]
struct Poller {
    pending: Mutex<Vec<Arc<Completion>>>,
    wake: Condvar,
    shutdown: AtomicBool,
}

#[cfg(not(target_arch = "wasm32"))]
impl Poller {
    fn run(self: Arc<Self>, device: wgpu::Device, timeout: Duration) {
        loop {
            {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                while p.is_empty() && !self.shutdown.load(Ordering::Acquire) {
                    p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                if self.shutdown.load(Ordering::Acquire) {
                    for c in p.drain(..) {
                        c.complete(Err(Error::DeviceLost("GPU context dropped".into())));
                    }
                    return;
                }
            }
            let r = device.poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(timeout),
            });
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = r {
                let timed_out = matches!(e, wgpu::PollError::Timeout);
                for c in p.iter() {
                    c.complete(Err(if timed_out {
                        Error::PollTimeout(timeout)
                    } else {
                        Error::DeviceLost(e.to_string())
                    }));
                }
            }
            p.retain(|c| !c.is_set());
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn poll_error(e: wgpu::PollError, timeout: Duration) -> Error {
    match e {
        wgpu::PollError::Timeout => Error::PollTimeout(timeout),
        other => Error::DeviceLost(other.to_string()),
    }
}

/// An open GPU: adapter, device, queue and the machinery to wait on them safely.
///
/// Opened by [`GpuContext::new`]; [`GpuEngine::new`](super::GpuEngine::new) and
/// [`BaselineEngine::new`](super::BaselineEngine::new) put models on it. Most applications let
/// [`Engine::builder`](crate::Engine::builder) open one.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    poll_timeout: Duration,
    state: Arc<DeviceState>,
    #[cfg(not(target_arch = "wasm32"))]
    poller: Arc<Poller>,
    // Joined on drop, so the poller's handle on the device is gone before the context is.
    #[cfg(not(target_arch = "wasm32"))]
    poller_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    // Jobs for the submission thread, which uploads, submits and maps for async callers so
    // that their executor's threads never wait on the queue or the device's locks. The thread
    // holds no handle on the device itself and ends when this sender is dropped.
    #[cfg(not(target_arch = "wasm32"))]
    jobs: std::sync::mpsc::Sender<Job>,
    pipelines: PipelineCache,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish()
    }
}

impl GpuContext {
    /// Picks an adapter as `opts` says and opens it with every limit it offers and the optional
    /// features (timestamps, f16) it has. Blocks the calling thread (not on the web: there use
    /// [`new_async`](Self::new_async)).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(opts: &DeviceOptions) -> Result<Arc<GpuContext>> {
        pollster::block_on(Self::new_async(opts))
    }

    /// [`new`](Self::new) as a future: the only way to open a GPU on the web, where the
    /// browser's `navigator.gpu` is the one adapter ([`Error::NoAdapter`] when the browser
    /// has no WebGPU or gives no adapter).
    pub async fn new_async(opts: &DeviceOptions) -> Result<Arc<GpuContext>> {
        let backends = opts.backend.unwrap_or(wgpu::Backends::all());
        #[cfg(target_arch = "wasm32")]
        if !wgpu::util::is_browser_webgpu_supported().await {
            return Err(Error::NoAdapter(
                "this browser offers no WebGPU: `navigator.gpu` is missing or gives no adapter"
                    .into(),
            ));
        }
        let inst = instance(backends);
        let mut adapters = inst.enumerate_adapters(backends).await;
        let names: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({})", i.name, backend_name(i.backend))
            })
            .collect();
        if let Some(i) = opts.adapter_index {
            if i >= adapters.len() {
                return Err(Error::NoAdapter(format!(
                    "no adapter [{i}] among backends {backends:?}; adapters present: [{}]",
                    names.join(", ")
                )));
            }
            adapters = vec![adapters.swap_remove(i)];
        }
        if let Some(want) = &opts.adapter_name {
            let w = want.to_lowercase();
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&w));
        }
        adapters.sort_by_key(|a| rank(&a.get_info()));
        let Some(adapter) = adapters.into_iter().next() else {
            return Err(Error::NoAdapter(format!(
                "backends {backends:?}{}; adapters present: [{}]",
                opts.adapter_name
                    .as_ref()
                    .map(|n| format!(", name containing `{n}`"))
                    .unwrap_or_default(),
                names.join(", ")
            )));
        };
        let info = adapter.get_info();
        let mut wanted = wgpu::Features::empty();
        if opts.use_timestamps {
            wanted |= wgpu::Features::TIMESTAMP_QUERY
                | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
                | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        }
        if opts.use_f16 {
            wanted |= wgpu::Features::SHADER_F16;
        }
        let features = adapter.features() & wanted;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("eie/device"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::DeviceLost(format!("cannot open `{}`: {e}", info.name)))?;

        let state = Arc::new(DeviceState::default());
        let s = state.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *s.lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{reason:?}: {msg}"));
        });
        let s = state.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut u = s.uncaptured.lock().unwrap_or_else(|e| e.into_inner());
            if u.is_none() {
                *u = Some(gpu_error(e));
            }
        }));
        #[cfg(target_arch = "wasm32")]
        return Ok(Arc::new(GpuContext {
            device,
            queue,
            info,
            limits,
            poll_timeout: opts.poll_timeout,
            state,
            pipelines: PipelineCache::default(),
        }));
        #[cfg(not(target_arch = "wasm32"))]
        Self::start_threads(device, queue, info, limits, opts.poll_timeout, state)
    }

    /// Starts the poller and the submission thread of a native context.
    #[cfg(not(target_arch = "wasm32"))]
    fn start_threads(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        limits: wgpu::Limits,
        poll_timeout: Duration,
        state: Arc<DeviceState>,
    ) -> Result<Arc<GpuContext>> {
        let poller = Arc::new(Poller {
            pending: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
        });
        let (p, d, t) = (poller.clone(), device.clone(), poll_timeout);
        let poller_thread = std::thread::Builder::new()
            .name("eie-gpu-poller".into())
            .spawn(move || p.run(d, t))
            .map_err(|e| Error::Gpu(format!("cannot start the poller thread: {e}")))?;
        let (jobs, queued) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("eie-gpu-submit".into())
            .spawn(move || {
                while let Ok(job) = queued.recv() {
                    job();
                }
            })
            .map_err(|e| Error::Gpu(format!("cannot start the submission thread: {e}")))?;
        Ok(Arc::new(GpuContext {
            device,
            queue,
            info,
            limits,
            poll_timeout,
            state,
            poller,
            poller_thread: Mutex::new(Some(poller_thread)),
            jobs,
            pipelines: PipelineCache::default(),
        }))
    }

    /// The adapter in use.
    ///
    /// See [`list_adapters`] for every adapter.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }
    /// Whether GPU timestamps are available (else timings are wall-clock only).
    ///
    /// See [`DeviceOptions::use_timestamps`] and [`Timing`](super::Timing).
    pub fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }
    /// Whether timestamps can be written between dispatches (per-layer GPU time).
    ///
    /// See [`Timing::per_layer_us`](super::Timing::per_layer_us).
    pub fn has_timestamps_inside_passes(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    }
    /// Whether the f16 kernels can run.
    ///
    /// See [`DeviceOptions::use_f16`].
    pub fn has_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }
    /// The device's limits.
    ///
    /// [`GpuContext::device_limits`] is the planners' copy.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }
    /// The limits the planners use.
    ///
    /// See [`DeviceLimits`] and [`crate::schedule`].
    pub fn device_limits(&self) -> DeviceLimits {
        let mut l = DeviceLimits::from(&self.limits);
        if self.adapter_info().device_type == wgpu::DeviceType::Cpu {
            l = l.for_cpu_adapter();
        }
        l
    }
    /// The wgpu device.
    ///
    /// See [`GpuContext::queue`].
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }
    /// The wgpu queue.
    ///
    /// See [`GpuContext::device`].
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }
    /// Compiled pipelines of this device.
    pub(crate) fn pipelines(&self) -> &PipelineCache {
        &self.pipelines
    }

    /// The longest wait for one submission.
    ///
    /// See [`DeviceOptions::poll_timeout`].
    pub fn poll_timeout(&self) -> Duration {
        self.poll_timeout
    }

    /// Fails if the device was lost or reported an error outside an error scope.
    ///
    /// See [`Error::DeviceLost`].
    pub fn check(&self) -> Result<()> {
        if let Some(m) = self
            .state
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(Error::DeviceLost(m));
        }
        if let Some(e) = self
            .state
            .uncaptured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(e);
        }
        Ok(())
    }

    /// Blocks until `index` has finished (and its map callbacks have run), at most the poll
    /// timeout.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn wait(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: Some(self.poll_timeout),
            })
            .map_err(|e| poll_error(e, self.poll_timeout))?;
        self.check()
    }

    /// Blocks until the submission `index` has finished and `c` (set by one of its callbacks)
    /// holds its result, at most the poll timeout. Another thread's poll may be running the
    /// callback when this thread's poll returns, hence the wait on `c` itself.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn wait_for(&self, index: wgpu::SubmissionIndex, c: &Completion) -> Result<()> {
        let deadline = Instant::now() + self.poll_timeout;
        self.wait(index)?;
        let mut s = c.lock();
        loop {
            if let Some(r) = s.result.take() {
                return r;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::PollTimeout(self.poll_timeout));
            }
            let wait = (deadline - now).min(Duration::from_millis(1));
            s = c
                .done
                .wait_timeout(s, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            drop(s);
            let _ = self.device.poll(wgpu::PollType::Poll);
            s = c.lock();
        }
    }

    /// Runs `job` on the context's submission thread and returns its result as a future, so
    /// that an async caller only awaits: uploads, submissions and buffer mapping take the
    /// queue's and the device's locks, which the poller holds while it polls. Jobs run one at a
    /// time, in the order they were handed off; a job that panics fails its own future.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn hand_off<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Handoff<T> {
        let slot = Arc::new(Mutex::new(HandoffSlot {
            result: None,
            waker: None,
            done: false,
        }));
        let finisher = Finisher(slot.clone());
        let run: Job = Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                .unwrap_or_else(|_| Err(Error::Gpu("a GPU submission panicked".into())));
            finisher.0.lock().unwrap_or_else(|e| e.into_inner()).result = Some(r);
            drop(finisher);
        });
        // A send fails only when the thread is gone: the job is dropped unrun and its
        // finisher fails the future.
        let _ = self.jobs.send(run);
        Handoff(slot)
    }

    /// On the web, where there is no other thread and nothing waits on a lock for long, the
    /// job runs at once on the caller's turn of the event loop.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn hand_off<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Handoff<T> {
        Handoff(Arc::new(Mutex::new(HandoffSlot {
            result: Some(job()),
            waker: None,
            done: true,
        })))
    }

    /// On the web the browser resolves buffer mappings by itself (the map callback runs from
    /// the event loop): nothing to poll.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn watch(&self, _c: Arc<Completion>) {}

    /// Hands a completion to the poller thread, which polls until it is set (or fails it when
    /// the device times out or is lost).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn watch(&self, c: Arc<Completion>) {
        let mut p = self
            .poller
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        p.push(c);
        self.poller.wake.notify_one();
    }

    /// Runs `f` inside an error scope catching validation, out-of-memory and internal errors;
    /// returns its value or the first error as a typed [`Error`] naming `what`.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let v = f();
        let errs = [
            pollster::block_on(internal.pop()),
            pollster::block_on(val.pop()),
            pollster::block_on(oom.pop()),
        ];
        match errs.into_iter().flatten().next() {
            None => Ok(v),
            Some(e) => Err(match gpu_error(e) {
                Error::OutOfMemory(m) => Error::OutOfMemory(format!("{what}: {m}")),
                Error::Gpu(m) => Error::Gpu(format!("{what}: {m}")),
                other => other,
            }),
        }
    }

    /// On the web an error scope's result is a promise that cannot be awaited here without
    /// making every creation call async: `f` runs outside a scope, and an error it causes
    /// reaches the uncaptured-error handler, which records it for the next [`check`]
    /// (before and after every run) to return.
    ///
    /// [`check`]: Self::check
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn scoped<T>(&self, _what: &str, f: impl FnOnce() -> T) -> Result<T> {
        Ok(f())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for GpuContext {
    /// Stops the poller thread and waits for it: it holds a handle on the device, and a
    /// device torn down by a detached thread while the process exits can crash the driver
    /// (seen with lavapipe as an occasional segmentation fault at exit).
    fn drop(&mut self) {
        self.poller.shutdown.store(true, Ordering::Release);
        {
            let _guard = self
                .poller
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.poller.wake.notify_all();
        }
        let handle = self
            .poller_thread
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            // The poller never drops the last context itself, but never wait on oneself.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

fn gpu_error(e: wgpu::Error) -> Error {
    match e {
        wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory(e.to_string()),
        other => Error::Gpu(other.to_string()),
    }
}
