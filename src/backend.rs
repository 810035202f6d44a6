//! One interface over every way of running a [`Model`]: the [`Backend`] trait. The EIE CPU
//! engine ([`CpuBackend`]), the CPU baselines, the GPU kernels, the application's
//! [`Engine`](crate::Engine) and the bench's contenders all implement or wrap it, so a single
//! verifier (`eie verify`) and a single generic test suite compare them all against the dense
//! oracle, and one benchmark loop times them.
//!
//! Start with [`cpu_backends`] (or, with the `gpu` feature, `gpu::gpu_backends`): one runner per
//! entry of [`KernelId::CPU`] (or [`KernelId::GPU`]); hand the list to
//! [`crate::verify::verify`].
//!
//! Every runner means the same by its methods: `run` blocks the calling thread and returns the
//! batch's outputs; where a runner also has `run_async`, it is the same run as an owned
//! `'static` future.

use crate::error::{Error, Result};
use crate::format::Model;
use crate::kernel_id::{KernelId, KernelKind, Place};
use crate::reference::{CpuEngine, Precision};

/// Something that runs a whole model on a batch of inputs.
///
/// [`cpu_backends`] (and, with the `gpu` feature, `gpu::gpu_backends`) list them;
/// [`crate::verify::verify`] compares them against the dense oracle.
pub trait Backend: Send + Sync {
    /// Which kernel variant it is; its `Display` is the name reports use (`cpu-eie/f32`,
    /// `gpu-eie/fixed16`, ...).
    fn id(&self) -> KernelId;
    /// Runs `input` (`batch * input_size` values), blocking; returns `batch * output_size`
    /// values. [`crate::verify::verify`] calls it.
    fn run(&self, input: &[f32]) -> Result<Vec<f32>>;
    /// The arithmetic it uses (decides the tolerance it is held to:
    /// [`crate::verify::tolerance`]); the precision of its [`id`](Self::id).
    fn precision(&self) -> Precision {
        self.id().precision
    }
}

/// The EIE CPU engine in one precision, as a [`Backend`].
pub struct CpuBackend {
    engine: CpuEngine,
}

impl CpuBackend {
    /// Wraps a model for the CPU engine.
    ///
    /// One of [`cpu_backends`].
    pub fn new(model: Model, precision: Precision) -> Result<Self> {
        Ok(CpuBackend {
            engine: CpuEngine::new(model)?.with_precision(precision),
        })
    }
}

impl Backend for CpuBackend {
    fn id(&self) -> KernelId {
        KernelId::cpu(KernelKind::Eie, self.engine.precision())
    }
    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        self.engine.run(input)
    }
}

/// The CPU runner of `id` for `model`; an [`Error::InvalidArgument`] for an id that is not
/// one of [`KernelId::CPU`].
///
/// [`cpu_backends`] builds every one.
pub fn cpu_backend(model: &Model, id: KernelId) -> Result<Box<dyn Backend>> {
    if !KernelId::CPU.contains(&id) {
        return Err(Error::InvalidArgument(format!(
            "`{id}` is not a CPU kernel: they are {}",
            KernelId::CPU.map(|k| k.to_string()).join(", ")
        )));
    }
    Ok(match (id.place, id.kind) {
        (Place::Cpu, KernelKind::Eie) => Box::new(CpuBackend::new(model.clone(), id.precision)?),
        (Place::Cpu, KernelKind::Dense) => Box::new(crate::baseline::DenseBackend::new(model)),
        (Place::Cpu, KernelKind::Csr) => Box::new(crate::baseline::CsrBackend::new(model)),
        _ => unreachable!("`{id}` is one of KernelId::CPU, checked above"),
    })
}

/// The CPU backends, one per entry of [`KernelId::CPU`]: the EIE engine in f32, fixed16 and
/// f16, and the dense and CSR baselines.
///
/// [`crate::verify::verify`] takes them.
pub fn cpu_backends(model: &Model) -> Result<Vec<Box<dyn Backend>>> {
    KernelId::CPU
        .iter()
        .map(|&id| cpu_backend(model, id))
        .collect()
}
