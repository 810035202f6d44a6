//! The names of everything that runs a model: a [`KernelId`] is a [`Place`] (CPU or GPU), a
//! [`KernelKind`] (EIE's walk, or a dense or CSR baseline) and a [`Precision`], and it is the
//! one place those names are spelled: `cpu-eie/f32`, `gpu-eie-rows/f32`, `gpu-dense/f32`, ...
//! (its `Display`). Reports, `eie verify`, `eie bench`, the cost model's current kernels and
//! every runner's [`Backend::id`](crate::backend::Backend::id) use it (the cost model's
//! earlier kernel generations, which no runner builds, keep their historical names).
//!
//! [`KernelId::CPU`] and [`KernelId::GPU`] are the one list of the variants each place builds
//! ([`crate::backend::cpu_backends`] and `gpu::gpu_backends` build one runner per entry).
//!
//! This module is at the bottom of the crate: it uses only [`crate::precision`].

use crate::precision::Precision;

/// Where a kernel runs.
///
/// Part of a [`KernelId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// The host's cores.
    Cpu,
    /// A GPU adapter (through wgpu).
    Gpu,
}

impl Place {
    /// `cpu` or `gpu`, as names start.
    ///
    /// See [`KernelId`]'s `Display`.
    pub fn name(self) -> &'static str {
        match self {
            Place::Cpu => "cpu",
            Place::Gpu => "gpu",
        }
    }
}

/// Which kernel: EIE's, or a baseline that ignores EIE's format.
///
/// Part of a [`KernelId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelKind {
    /// EIE's kernel, each layer walked the way the engine picks for it (the column walk of
    /// the paper, or the row-ordered walk where that costs less).
    Eie,
    /// EIE's kernel with every layer walked by columns (GPU only: the walk forced).
    EieColumns,
    /// EIE's kernel with every layer walked by rows (GPU only: the walk forced).
    EieRows,
    /// The dense baseline (cuBLAS-style GEMV/GEMM on the GPU; OpenBLAS or the `gemm` crate on
    /// the CPU).
    Dense,
    /// The plain CSR baseline (one row per lane group on the GPU; a scipy-style row walk on
    /// the CPU).
    Csr,
}

impl KernelKind {
    /// The kernel's part of a name: `eie`, `eie-columns`, `eie-rows`, `dense`, `csr`.
    ///
    /// See [`KernelId`]'s `Display`.
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Eie => "eie",
            KernelKind::EieColumns => "eie-columns",
            KernelKind::EieRows => "eie-rows",
            KernelKind::Dense => "dense",
            KernelKind::Csr => "csr",
        }
    }

    /// Whether it is a baseline (dense or CSR) rather than EIE's kernel.
    ///
    /// Reports list baselines first.
    pub fn is_baseline(self) -> bool {
        matches!(self, KernelKind::Dense | KernelKind::Csr)
    }
}

/// One kernel variant: where it runs, which kernel, in which arithmetic.
///
/// Its `Display` is the name every report uses (`gpu-eie/fixed16`); [`KernelId::CPU`] and
/// [`KernelId::GPU`] list the variants the crate builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelId {
    /// Where it runs.
    pub place: Place,
    /// Which kernel.
    pub kind: KernelKind,
    /// Its arithmetic.
    pub precision: Precision,
}

impl KernelId {
    /// A CPU kernel.
    ///
    /// See [`KernelId::CPU`].
    pub const fn cpu(kind: KernelKind, precision: Precision) -> KernelId {
        KernelId {
            place: Place::Cpu,
            kind,
            precision,
        }
    }

    /// A GPU kernel.
    ///
    /// See [`KernelId::GPU`].
    pub const fn gpu(kind: KernelKind, precision: Precision) -> KernelId {
        KernelId {
            place: Place::Gpu,
            kind,
            precision,
        }
    }

    /// The dense baseline of the same place (the kernel speed-ups are quoted against).
    ///
    /// Used by the bench's reports and chart.
    pub const fn dense_of(self) -> KernelId {
        KernelId {
            place: self.place,
            kind: KernelKind::Dense,
            precision: Precision::F32,
        }
    }

    /// The CPU variants, in the order `eie verify` lists them: the EIE engine in every
    /// precision, then the dense and CSR baselines (f32).
    ///
    /// [`crate::backend::cpu_backends`] builds one runner per entry.
    pub const CPU: [KernelId; 5] = [
        KernelId::cpu(KernelKind::Eie, Precision::F32),
        KernelId::cpu(KernelKind::Eie, Precision::Fixed16),
        KernelId::cpu(KernelKind::Eie, Precision::F16),
        KernelId::cpu(KernelKind::Dense, Precision::F32),
        KernelId::cpu(KernelKind::Csr, Precision::F32),
    ];

    /// The GPU variants, in the order `eie verify` lists them: the EIE kernels in every
    /// precision (each layer walked as the planner picks), both walks forced (f32), then the
    /// dense and CSR baselines (f32).
    ///
    /// `gpu::gpu_backends` builds one runner per entry.
    pub const GPU: [KernelId; 7] = [
        KernelId::gpu(KernelKind::Eie, Precision::F32),
        KernelId::gpu(KernelKind::Eie, Precision::Fixed16),
        KernelId::gpu(KernelKind::Eie, Precision::F16),
        KernelId::gpu(KernelKind::EieColumns, Precision::F32),
        KernelId::gpu(KernelKind::EieRows, Precision::F32),
        KernelId::gpu(KernelKind::Dense, Precision::F32),
        KernelId::gpu(KernelKind::Csr, Precision::F32),
    ];
}

impl std::fmt::Display for KernelId {
    /// `<place>-<kernel>/<precision>`: `cpu-eie/f32`, `gpu-eie-rows/f32`, `gpu-dense/f32`.
    /// Width and alignment apply (`{:<22}` pads it, as tables need).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&format!(
            "{}-{}/{}",
            self.place.name(),
            self.kind.name(),
            self.precision.name()
        ))
    }
}

impl serde::Serialize for KernelId {
    /// As its name (reports' JSON).
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let names: Vec<String> = KernelId::CPU
            .iter()
            .chain(&KernelId::GPU)
            .map(|k| k.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "cpu-eie/f32",
                "cpu-eie/fixed16",
                "cpu-eie/f16",
                "cpu-dense/f32",
                "cpu-csr/f32",
                "gpu-eie/f32",
                "gpu-eie/fixed16",
                "gpu-eie/f16",
                "gpu-eie-columns/f32",
                "gpu-eie-rows/f32",
                "gpu-dense/f32",
                "gpu-csr/f32",
            ]
        );
        assert_eq!(
            serde_json::to_string(&KernelId::GPU[4]).unwrap(),
            "\"gpu-eie-rows/f32\""
        );
        assert_eq!(KernelId::GPU[1].dense_of(), KernelId::GPU[5]);
        assert_eq!(format!("{:<14}|", KernelId::CPU[0]), "cpu-eie/f32   |");
    }
}
