//! The WGSL kernels, each in one place: `shaders/<name>.wgsl` holds its source (one compute
//! entry point named after the file) and `src/gpu/kernels/<name>.rs` everything the host knows
//! about it: the source (`include_str!`), its uniform params struct, its bindings, the override
//! constants it is specialised with (every size the host and the shader share is passed from
//! the host's constant where WGSL takes an override, and checked against it by the tests where
//! WGSL needs a `const`) and its dispatch set-up. The EIE kernels
//! share the prelude `shaders/common/eie.wgsl` (`common.rs` here). [`Kernel`] is the one list
//! of kernels; a per-device `PipelineCache` compiles each kernel once per specialisation.
//!
//! The host's view of each kernel is public ([`Kernel::params`], [`Kernel::bindings`],
//! [`Kernel::example_constants`], [`Kernel::mirrored_consts`]) so that `tests/shaders.rs`
//! checks it against the WGSL with naga: params members, offsets and size, binding numbers and
//! access, override names, and the WGSL `const`s that cannot be overrides.

use super::device::GpuContext;
use super::program::Dispatch;
use crate::error::Result;
use crate::precision::Precision;
use std::collections::HashMap;
use std::sync::Mutex;

/// Declares a kernel's uniform params struct (`#[repr(C)]`, `Pod`) with the layout
/// [`ParamsLayout`] the tests compare with the WGSL struct.
macro_rules! params_struct {
    (
        $(#[$meta:meta])*
        struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $( $(#[$fmeta])* pub(crate) $field: $ty, )*
        }

        impl $name {
            /// The host's layout of this struct.
            pub(crate) const LAYOUT: $crate::gpu::kernels::ParamsLayout =
                $crate::gpu::kernels::ParamsLayout {
                    name: stringify!($name),
                    size: std::mem::size_of::<$name>(),
                    fields: &[$(
                        $crate::gpu::kernels::Field {
                            name: stringify!($field),
                            offset: std::mem::offset_of!($name, $field),
                            size: std::mem::size_of::<$ty>(),
                            ty: stringify!($ty),
                        },
                    )*],
                };
        }
    };
}

mod common;
mod compact_nonzeros;
pub(crate) mod csr_spmv;
pub(crate) mod dense_gemv;
mod eie_reduce;
pub(crate) mod eie_spmv;
pub(crate) mod eie_spmv_rows;
// Its host side is used by the sequence engine, which is native only.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) mod recurrent_cell;

pub(crate) use common::{ActLayout, RunCounters};
#[cfg(not(target_arch = "wasm32"))]
pub use compact_nonzeros::compact_nonzeros;

/// Declares [`Kernel`] from one list: variant, module (= file stem = entry point) and prelude.
macro_rules! kernels {
    ($( $(#[$doc:meta])* $variant:ident => $module:ident, prelude: $prelude:expr; )*) => {
        /// A WGSL kernel of the backend: `shaders/<name>.wgsl`, whose one compute entry point
        /// is named after the file, compiled after its prelude (if any).
        ///
        /// [`Kernel::ALL`] lists them; see the [module docs](self).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kernel {
            $( $(#[$doc])* $variant, )*
        }

        impl Kernel {
            /// Every kernel of the backend.
            ///
            /// See [`Kernel`].
            pub const ALL: &'static [Kernel] = &[$(Kernel::$variant),*];

            /// File stem (`shaders/<name>.wgsl`) and entry point.
            ///
            /// See [`Kernel::source`].
            pub fn name(self) -> &'static str {
                match self {
                    $( Kernel::$variant => stringify!($module), )*
                }
            }

            /// WGSL source of the kernel's own file.
            ///
            /// [`Kernel::module_source`] adds the prelude.
            pub fn source(self) -> &'static str {
                match self {
                    $( Kernel::$variant => $module::SOURCE, )*
                }
            }

            /// The shared declarations the source is compiled after, if any.
            ///
            /// See [`Prelude`].
            pub fn prelude(self) -> Option<Prelude> {
                match self {
                    $( Kernel::$variant => $prelude, )*
                }
            }

            /// The bindings of group 0 the entry point uses, in binding order: what the host
            /// binds for every dispatch.
            ///
            /// Each a [`Binding`].
            pub fn bindings(self) -> &'static [Binding] {
                match self {
                    $( Kernel::$variant => $module::BINDINGS, )*
                }
            }

            /// The host's layout of the kernel's uniform `Params` (binding 0).
            ///
            /// See [`ParamsLayout`].
            pub fn params(self) -> ParamsLayout {
                match self {
                    $( Kernel::$variant => $module::PARAMS_LAYOUT, )*
                }
            }

            /// The override constants of one pipeline of this kernel as the host specialises
            /// it, at the WebGPU default limits (f32, 8-bit entries, one input per workgroup,
            /// the most accumulator words). Every pipeline sets the same names.
            ///
            /// Checked against the WGSL by `tests/shaders.rs` (see the [module docs](self)).
            pub fn example_constants(self) -> Vec<(&'static str, f64)> {
                match self {
                    $( Kernel::$variant => $module::example_constants(), )*
                }
            }

            /// `const` declarations of the kernel's module (prelude included) that mirror a host
            /// constant, with the host's value: sizes that cannot be override constants
            /// (`@workgroup_size`, arrays outside workgroup memory) and are checked by the
            /// tests instead.
            ///
            /// Checked against the WGSL by `tests/shaders.rs` (see the [module docs](self)).
            pub fn mirrored_consts(self) -> Vec<(&'static str, usize)> {
                let prelude = self.prelude().map_or(&[][..], Prelude::mirrored_consts);
                let own: &[(&str, usize)] = match self {
                    $( Kernel::$variant => $module::MIRRORED, )*
                };
                prelude.iter().chain(own).copied().collect()
            }
        }
    };
}

kernels! {
    /// EIE SpMV by columns: fused leading non-zero detection from the input's bitmap, PEs
    /// walking column slices with a lane per entry, then bias, ReLU and the output's bitmap (one
    /// slice) or partial sums for [`Kernel::EieReduce`]; f32, fixed16 and f16 by specialisation.
    EieSpmv => eie_spmv, prelude: Some(Prelude::Eie);
    /// The second dispatch of a layer whose columns are split into slices: the partial sums of
    /// [`Kernel::EieSpmv`] added in slice order, then its write-back.
    EieReduce => eie_reduce, prelude: Some(Prelude::Eie);
    /// EIE SpMV walked by rows, for layers whose inputs are mostly non-zero: the same codes with
    /// relative column indices stored row by row, lanes of a row gathering activations; bias,
    /// ReLU and the output's bitmap as in [`Kernel::EieSpmv`].
    EieSpmvRows => eie_spmv_rows, prelude: Some(Prelude::Eie);
    /// Stand-alone non-zero compaction: dense vectors to (index, value) lists.
    CompactNonzeros => compact_nonzeros, prelude: None;
    /// Dense f32 GEMV/GEMM baseline.
    DenseGemv => dense_gemv, prelude: None;
    /// Plain CSR f32 SpMV baseline.
    CsrSpmv => csr_spmv, prelude: None;
    /// The element-wise step of LSTM and GRU cells between their gate matrices' EIE
    /// products: `c` and `h` (with `h`'s non-zero bitmap) in f32 or fixed16.
    RecurrentCell => recurrent_cell, prelude: None;
}

impl Kernel {
    /// The complete WGSL module: the prelude, then the kernel's own source.
    ///
    /// See [`Kernel::source`] and [`Kernel::prelude`].
    pub fn module_source(self) -> String {
        let prelude = self.prelude().map_or("", Prelude::source);
        format!("{prelude}\n{}", self.source())
    }

    /// The label of the kernel's shader module and pipelines.
    fn label(self) -> String {
        format!("eie/gpu/{}", self.name())
    }
}

/// Shared declarations (`shaders/common/<name>.wgsl`) compiled before a kernel's own source.
///
/// Returned by [`Kernel::prelude`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prelude {
    /// `shaders/common/eie.wgsl`: the EIE kernels' overrides, `Params`, bindings 0-4, f16
    /// conversions, fixed-point products, relative-index decode and write-back (with its
    /// fixed16 saturation counters).
    Eie,
}

impl Prelude {
    /// Every prelude.
    ///
    /// See [`Prelude`].
    pub const ALL: &'static [Prelude] = &[Prelude::Eie];

    /// File stem in `shaders/common/`.
    ///
    /// See [`Prelude::source`].
    pub fn name(self) -> &'static str {
        match self {
            Prelude::Eie => "eie",
        }
    }

    /// WGSL source.
    ///
    /// See [`Kernel::module_source`].
    pub fn source(self) -> &'static str {
        match self {
            Prelude::Eie => common::SOURCE,
        }
    }

    fn mirrored_consts(self) -> &'static [(&'static str, usize)] {
        match self {
            Prelude::Eie => common::MIRRORED,
        }
    }
}

/// How a kernel's WGSL declares a binding.
///
/// Part of a [`Binding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `var<uniform>`.
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// One binding of a kernel's bind group 0.
///
/// Listed by [`Kernel::bindings`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Binding {
    /// `@binding(index)`.
    pub index: u32,
    /// The WGSL variable.
    pub name: &'static str,
    /// Its address space and access.
    pub access: Access,
}

impl Binding {
    const fn new(index: u32, name: &'static str, access: Access) -> Self {
        Binding {
            index,
            name,
            access,
        }
    }
}

/// One member of a params struct as the host lays it out.
///
/// Part of a [`ParamsLayout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Member name (the same in Rust and WGSL).
    pub name: &'static str,
    /// Byte offset.
    pub offset: usize,
    /// Bytes.
    pub size: usize,
    /// Rust type (`u32`, `i32`, ...).
    pub ty: &'static str,
}

/// The host's layout of a kernel's uniform params struct.
///
/// Returned by [`Kernel::params`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamsLayout {
    /// The Rust struct.
    pub name: &'static str,
    /// Bytes uploaded.
    pub size: usize,
    /// Members in order.
    pub fields: &'static [Field],
}

/// A pipeline-overridable constant's value for wgpu: booleans as 0 or 1.
fn flag(b: bool) -> f64 {
    b as u8 as f64
}

/// The arithmetic's override constants for `precision`, `[FIXED, HALF]`: `FIXED` for EIE's
/// fixed16, `HALF` for f16 storage, neither for f32. Every kernel's arithmetic constants are
/// these (a shader without an f16 path takes `FIXED` alone).
pub(crate) fn arithmetic(precision: Precision) -> [(&'static str, f64); 2] {
    [
        ("FIXED", flag(precision == Precision::Fixed16)),
        ("HALF", flag(precision == Precision::F16)),
    ]
}

/// The bind group of one dispatch of `kernel`: each `(binding, buffer)` bound at the binding's
/// index. The entries must be the kernel's [`bindings`](Kernel::bindings), in order.
pub(crate) fn bind(
    ctx: &GpuContext,
    kernel: Kernel,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    entries: &[(Binding, &wgpu::Buffer)],
) -> wgpu::BindGroup {
    assert!(
        entries
            .iter()
            .map(|e| e.0)
            .eq(kernel.bindings().iter().copied()),
        "{label}: {} binds {:?}",
        kernel.name(),
        kernel.bindings()
    );
    let entries: Vec<wgpu::BindGroupEntry> = entries
        .iter()
        .map(|&(b, buffer)| wgpu::BindGroupEntry {
            binding: b.index,
            resource: buffer.as_entire_binding(),
        })
        .collect();
    ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

/// Workgroups of a dispatch and the batches it serves (see [`Dispatch`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    /// Workgroups along x.
    pub x: usize,
    /// Inputs one workgroup row along y covers.
    pub batch_group: usize,
    /// Workgroup rows along y per `batch_group` inputs.
    pub y_per_group: usize,
    /// Batch sizes served (inclusive).
    pub batches: (usize, usize),
}

/// A dispatch of `kernel` specialised with `constants`, binding `entries` (the kernel's
/// bindings in order), over `grid`.
pub(crate) fn dispatch(
    ctx: &GpuContext,
    kernel: Kernel,
    constants: &[(&'static str, f64)],
    label: &str,
    entries: &[(Binding, &wgpu::Buffer)],
    grid: Grid,
) -> Result<Dispatch> {
    let pipeline = ctx.pipelines().get(ctx, kernel, constants)?;
    let bind_group = bind(ctx, kernel, label, &pipeline, entries);
    Ok(Dispatch {
        pipeline,
        bind_group,
        x: grid.x as u32,
        batch_group: grid.batch_group as u32,
        y_per_group: grid.y_per_group as u32,
        batches: grid.batches,
    })
}

/// A pipeline's specialisation: the kernel and its override constants (values as bits).
type PipelineKey = (Kernel, Vec<(&'static str, u64)>);

/// Compiled pipelines of one device.
#[derive(Default)]
pub(crate) struct PipelineCache {
    map: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
}

impl PipelineCache {
    /// The pipeline of `kernel` specialised with `constants` (override name, value), compiled
    /// on first use inside an error scope.
    pub(crate) fn get(
        &self,
        ctx: &GpuContext,
        kernel: Kernel,
        constants: &[(&'static str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let key = (
            kernel,
            constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
        );
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get(&key) {
            return Ok(p.clone());
        }
        let label = kernel.label();
        let device = ctx.device();
        let pipeline = ctx.scoped(&format!("compiling {label} {constants:?}"), || {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(kernel.module_source().into()),
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some(kernel.name()),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        })?;
        map.insert(key, pipeline.clone());
        Ok(pipeline)
    }
}
