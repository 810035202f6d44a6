//! The arithmetic a model runs in: [`Precision`], the one type every engine, the simulator, the
//! cost model, the reports and the command line share.
//!
//! A precision has a name ([`Precision::name`], as the command line and every report spell
//! it), a list ([`Precision::ALL`], in report order) and an activation size
//! ([`Precision::bytes`], as the GPU stores activations and the cost model counts them).
//! fixed16's formats are [`crate::fixed16`]'s; `docs/FIXED16.md` defines them.
//!
//! The precision is chosen once, when a runner is built, on every one of them:
//! [`Engine::builder`](crate::Engine::builder)
//! ([`EngineBuilder::precision`](crate::EngineBuilder::precision)), the CPU engine
//! ([`CpuEngine::with_precision`](crate::CpuEngine::with_precision): one compressed model
//! shared by an engine per precision, f32 unless told otherwise), the CPU
//! [`Backend`](crate::backend::Backend)s ([`CpuBackend::new`](crate::backend::CpuBackend::new)),
//! the recurrent engine ([`SequenceEngine::new`](crate::recurrent::SequenceEngine::new)), the
//! GPU engines (`gpu::EngineOptions::precision`, `gpu::SequenceOptions::precision`), the
//! simulator ([`Simulator::new`](crate::sim::Simulator::new)) and the server's models
//! (`serve::ServeConfig::precision`). A runner's `run` then runs in it, and its
//! [`KernelId`](crate::kernel_id::KernelId) carries it. The one-call functions
//! ([`simulate_model`](crate::sim::simulate_model),
//! [`simulate_sequence`](crate::sim::sequence::simulate_sequence)) build and run in one.
//!
//! The simulator models EIE's datapath in f32 and fixed16 only; the GPU runs models with
//! recurrent layers in f32 and fixed16 only (f16 ones on the CPU engine).
//!
//! This module is at the bottom of the crate: it depends on nothing else in it.

/// Arithmetic of a run.
///
/// Chosen when a runner is built: [`EngineBuilder::precision`](crate::EngineBuilder::precision)
/// (see the [guide](crate#build-an-engine)),
/// [`CpuEngine::with_precision`](crate::CpuEngine::with_precision) (see the
/// [module documentation](self) for every runner); `docs/FIXED16.md` defines fixed16.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit float codebook, activations and accumulators.
    #[default]
    F32,
    /// EIE's 16-bit fixed point as defined in [`crate::fixed16`]; bit-exact across backends.
    Fixed16,
    /// Half precision storage: codebook values and activations (inputs, every layer's outputs)
    /// rounded to f16, products and sums in f32, bias in f32. The same on the CPU engine and
    /// the GPU kernels; checked against the dense f32 oracle with the f16 tolerance.
    F16,
}

impl Precision {
    /// Every precision, in the order reports list them.
    ///
    /// [`crate::backend::cpu_backends`] builds one engine per entry.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Fixed16, Precision::F16];

    /// Name used on the command line and in reports.
    ///
    /// See [`Precision::ALL`].
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Fixed16 => "fixed16",
            Precision::F16 => "f16",
        }
    }

    /// Bytes of one activation as the GPU stores it and the cost model
    /// ([`crate::schedule::cost`]) counts it: 4 for f32, 4 for fixed16 (an `i16` value in an
    /// `i32` word, see [`crate::fixed16`]), 2 for f16.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 | Precision::Fixed16 => 4,
            Precision::F16 => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Precision;

    #[test]
    fn names_are_serde_names_and_unique() {
        for (i, p) in Precision::ALL.iter().enumerate() {
            assert_eq!(
                serde_json::to_string(p).unwrap(),
                format!("\"{}\"", p.name())
            );
            assert!(Precision::ALL[..i].iter().all(|q| q.name() != p.name()));
        }
        assert_eq!(Precision::ALL[0], Precision::default());
    }

    #[test]
    fn bytes() {
        let b: Vec<usize> = Precision::ALL.iter().map(|p| p.bytes()).collect();
        assert_eq!(b, [4, 4, 2]);
    }
}
