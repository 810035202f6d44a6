//! `compact_nonzeros`: non-zero compaction on the device (EIE's leading non-zero detection) as
//! a stand-alone call (`shaders/compact_nonzeros.wgsl`): dense activation vectors become lists
//! of `(index, value)` of their non-zero entries, one workgroup per vector.

use super::{Access, Binding};
// The host function waits on the device: native only.
use crate::schedule::WORKGROUP_SIZE;
#[cfg(not(target_arch = "wasm32"))]
use {
    super::{bind, Kernel},
    crate::error::{Error, Result},
    crate::format::check_batch,
    crate::gpu::device::{Completion, GpuContext},
    crate::gpu::program::{storage_init, uniform_init},
};

/// WGSL source.
pub(crate) const SOURCE: &str = include_str!("../../../shaders/compact_nonzeros.wgsl");

params_struct! {
    /// `Params` of `compact_nonzeros.wgsl`: vector length and stride.
    struct CompactParams {
        n: u32,
        x_stride: u32,
        pad0: u32,
        pad1: u32,
    }
}

/// The host's layout of [`CompactParams`].
pub(crate) const PARAMS_LAYOUT: super::ParamsLayout = CompactParams::LAYOUT;

/// `params` (uniform): [`CompactParams`].
pub(crate) const PARAMS: Binding = Binding::new(0, "params", Access::Uniform);
/// `x`: the input vectors, `[batch][x_stride]` f32 bits.
pub(crate) const X: Binding = Binding::new(1, "x", Access::Read);
/// `pairs`: `[batch][n]` (index, value bits) of the non-zeros, in index order.
pub(crate) const PAIRS: Binding = Binding::new(2, "pairs", Access::ReadWrite);
/// `count`: `[batch]` non-zeros per vector.
pub(crate) const COUNT: Binding = Binding::new(3, "count", Access::ReadWrite);
/// Every binding, in order.
pub(crate) const BINDINGS: &[Binding] = &[PARAMS, X, PAIRS, COUNT];

/// WGSL `const`s that mirror host constants: `WG` (`@workgroup_size` repeats it).
pub(crate) const MIRRORED: &[(&str, usize)] = &[("WG", WORKGROUP_SIZE)];

/// The override constants: none, the kernel shares no size with the host but `WG`.
pub(crate) fn constants() -> Vec<(&'static str, f64)> {
    Vec::new()
}

/// [`constants`] (there is one pipeline).
pub(crate) fn example_constants() -> Vec<(&'static str, f64)> {
    constants()
}

/// Compacts each of the `input.len() / n` vectors of length `n` into its non-zero entries, in
/// increasing index order (`-0.0` counts as zero), with the `compact_nonzeros` kernel.
///
/// See [`super::Kernel`].
#[cfg(not(target_arch = "wasm32"))]
pub fn compact_nonzeros(ctx: &GpuContext, input: &[f32], n: usize) -> Result<Vec<Vec<(u32, f32)>>> {
    let batch = check_batch(n, input)?;
    let limits = ctx.device_limits();
    if batch > limits.max_compute_workgroups_per_dimension as usize {
        return Err(Error::LimitExceeded {
            what: "vectors of one compaction (this device's workgroups per dimension)".into(),
            value: batch as u64,
            limit: limits.max_compute_workgroups_per_dimension as u64,
        });
    }
    if (8 * input.len()) as u64 > limits.max_binding() {
        return Err(Error::LimitExceeded {
            what: format!("bytes of one compaction's output ({batch} vectors of {n})"),
            value: (8 * input.len()) as u64,
            limit: limits.max_binding(),
        });
    }
    let pipeline = ctx
        .pipelines()
        .get(ctx, Kernel::CompactNonzeros, &constants())?;
    let dev = ctx.device();
    let params = CompactParams {
        n: n as u32,
        x_stride: n as u32,
        pad0: 0,
        pad1: 0,
    };
    let (pairs_bytes, count_bytes) = ((8 * input.len()) as u64, (4 * batch) as u64);
    let (x, ub, pairs, count, read) = ctx.scoped("compaction buffers", || {
        let x = storage_init(ctx, "eie/gpu/compact/input", bytemuck::cast_slice(input));
        let ub = uniform_init(ctx, "eie/gpu/compact/params", bytemuck::bytes_of(&params));
        let out = |label, size: u64| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(16),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let pairs = out("eie/gpu/compact/pairs", pairs_bytes);
        let count = out("eie/gpu/compact/count", count_bytes);
        let read = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("eie/gpu/compact/read"),
            size: pairs_bytes + count_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        (x, ub, pairs, count, read)
    })?;
    let bg = bind(
        ctx,
        Kernel::CompactNonzeros,
        "eie/gpu/compact/bind-group",
        &pipeline,
        &[(PARAMS, &ub), (X, &x), (PAIRS, &pairs), (COUNT, &count)],
    );
    let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("eie/gpu/compact"),
    });
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("eie/gpu/compact"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(batch as u32, 1, 1);
    }
    enc.copy_buffer_to_buffer(&pairs, 0, &read, 0, pairs_bytes);
    enc.copy_buffer_to_buffer(&count, 0, &read, pairs_bytes, count_bytes);
    let idx = ctx.queue().submit([enc.finish()]);
    let c = Completion::new();
    let c2 = c.clone();
    read.map_async(wgpu::MapMode::Read, .., move |r| {
        c2.complete(r.map_err(|e| Error::Gpu(format!("mapping the compaction: {e}"))))
    });
    ctx.wait_for(idx, &c)?;
    let out = {
        let view = read
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("reading the compaction: {e}")))?;
        let words: &[u32] = bytemuck::cast_slice(&view);
        let (pairs, counts) = words.split_at(2 * input.len());
        counts
            .iter()
            .enumerate()
            .map(|(b, &c)| {
                let c = (c as usize).min(n);
                (0..c)
                    .map(|k| {
                        let p = 2 * (b * n + k);
                        (pairs[p], f32::from_bits(pairs[p + 1]))
                    })
                    .collect()
            })
            .collect()
    };
    read.unmap();
    Ok(out)
}
