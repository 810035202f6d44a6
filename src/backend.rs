//! One interface over every way of running a [`Model`], so a single verifier (`eie verify`) and a
//! single generic test suite can compare them all against the dense oracle.
//!
//! Start with [`cpu_backends`] (or, with the `gpu` feature, `gpu::gpu_backends`) and hand the
//! list to [`crate::verify::verify`]; [`Backend`] is the trait, [`CpuBackend`] the CPU engine's.

use crate::error::Result;
use crate::format::Model;
use crate::reference::{CpuEngine, Precision};

/// Something that runs a whole model on a batch of inputs.
///
/// [`cpu_backends`] (and, with the `gpu` feature, `gpu::gpu_backends`) list them;
/// [`crate::verify::verify`] compares them against the dense oracle.
pub trait Backend: Send + Sync {
    /// A short name for reports, e.g. `cpu-eie/f32` or `gpu-eie/fixed16`
    /// ([`BackendReport::backend`](crate::verify::BackendReport::backend)).
    fn name(&self) -> String;
    /// The arithmetic it uses (decides the tolerance it is held to:
    /// [`crate::verify::tolerance`]).
    fn precision(&self) -> Precision;
    /// Runs `input` (`batch * input_size` values); returns `batch * output_size` values.
    /// [`crate::verify::verify`] calls it.
    fn run(&self, input: &[f32]) -> Result<Vec<f32>>;
}

/// The EIE CPU engine in one precision, as a [`Backend`].
pub struct CpuBackend {
    engine: CpuEngine,
    precision: Precision,
}

impl CpuBackend {
    /// Wraps a model for the CPU engine.
    ///
    /// One of [`cpu_backends`].
    pub fn new(model: Model, precision: Precision) -> Result<Self> {
        Ok(CpuBackend {
            engine: CpuEngine::new(model)?,
            precision,
        })
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu-eie/{}", self.precision.name())
    }
    fn precision(&self) -> Precision {
        self.precision
    }
    fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        self.engine.run(input, self.precision)
    }
}

/// The CPU backends: the EIE engine in f32, fixed16 and f16, and the dense and CSR baselines.
///
/// [`crate::verify::verify`] takes them.
pub fn cpu_backends(model: &Model) -> Result<Vec<Box<dyn Backend>>> {
    let mut v: Vec<Box<dyn Backend>> = Vec::new();
    for p in Precision::ALL {
        v.push(Box::new(CpuBackend::new(model.clone(), p)?));
    }
    v.push(Box::new(crate::baseline::DenseBackend::new(model)));
    v.push(Box::new(crate::baseline::CsrBackend::new(model)));
    Ok(v)
}
