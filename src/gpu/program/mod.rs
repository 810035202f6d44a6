//! A compiled model on the device: the dispatches of every layer recorded into one compute
//! pass, the activation buffers they chain through, and the ways to run it, by job:
//!
//! * [`buffers`]: buffer creation and upload helpers, and the device layout of activations
//!   (encoding inputs, decoding outputs);
//! * [`runtime`]: submission, waiting (blocking, or through the context's poller thread) and
//!   mapping the output back;
//! * [`timing`]: timestamp queries, wall times and pipelined frames.

mod buffers;
mod runtime;
// Timing waits on the device: native only.
#[cfg(not(target_arch = "wasm32"))]
mod timing;

use super::device::GpuContext;
use std::sync::{Arc, Mutex};

pub(crate) use buffers::{activations, storage_init, stride, uniform_init, zeroed, Encoding};
// The sequence engine's, which is native only.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use buffers::{decode_rows, encode_rows};
pub(crate) use runtime::RunOutput;
#[cfg(not(target_arch = "wasm32"))]
pub use timing::{PipelineTiming, Timing, TimingOptions};

/// One kernel launch of a layer.
pub(crate) struct Dispatch {
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    /// Workgroups along x.
    pub x: u32,
    /// Inputs one workgroup row along y covers (the EIE tile, 4 for the baselines).
    pub batch_group: u32,
    /// Workgroup rows along y per `batch_group` inputs (1, or the tile for a kernel with one
    /// invocation row per input).
    pub y_per_group: u32,
    /// The batch sizes this dispatch serves (inclusive); a layer may hold one dispatch per
    /// range (the EIE kernel is specialised for a single input and for tiles of inputs).
    pub batches: (usize, usize),
}

/// Where a program's input buffer keeps the non-zero bitmaps of its inputs (the EIE kernel's
/// leading non-zero detection reads them), and how batches are padded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InputBits {
    /// First word of the bitmaps.
    pub base: usize,
    /// Words per input's bitmap.
    pub stride: usize,
    /// Batches of more than one input are padded with zero inputs to a multiple of this.
    pub tile: usize,
}

/// Counters the kernels add to during a run (the EIE engine's fixed16 write-back saturations,
/// laid out as [`RunCounters`](crate::gpu::kernels::RunCounters)): under the submit lock right
/// before each submission (as the input is uploaded), word 0 is set to the submission's inputs
/// (the tiles' padding excluded) and the others to zero; the words after the first are copied
/// to that submission's staging buffer after the output and read back with it. So every run,
/// concurrent ones included, gets its own counts.
pub(crate) struct Counters {
    /// `array<atomic<u32>>` bound by every dispatch that counts.
    pub buffer: wgpu::Buffer,
    /// Words of the buffer.
    pub words: usize,
}

impl Counters {
    /// Bytes of the counts read back after the output (every word but the first).
    pub(crate) fn read_bytes(&self) -> u64 {
        4 * (self.words as u64 - 1)
    }
}

/// A model on the device.
pub(crate) struct Program {
    pub ctx: Arc<GpuContext>,
    pub layers: Vec<Vec<Dispatch>>,
    pub input: wgpu::Buffer,
    pub output: wgpu::Buffer,
    pub in_size: usize,
    pub out_size: usize,
    pub max_batch: usize,
    pub encoding: Encoding,
    pub input_bits: Option<InputBits>,
    /// fixed16: fraction bits of the model's input and output activations.
    pub fixed16_fracs: (u32, u32),
    /// Run counters read back with every output, if the program keeps any.
    pub counters: Option<Counters>,
    submit: Mutex<()>,
    staging: Mutex<Vec<wgpu::Buffer>>,
}

impl Program {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        ctx: Arc<GpuContext>,
        layers: Vec<Vec<Dispatch>>,
        input: wgpu::Buffer,
        output: wgpu::Buffer,
        in_size: usize,
        out_size: usize,
        max_batch: usize,
        encoding: Encoding,
    ) -> Self {
        Program {
            ctx,
            layers,
            input,
            output,
            in_size,
            out_size,
            max_batch,
            encoding,
            input_bits: None,
            fixed16_fracs: (
                crate::fixed16::DEFAULT_ACT_FRAC,
                crate::fixed16::DEFAULT_ACT_FRAC,
            ),
            counters: None,
            submit: Mutex::new(()),
            staging: Mutex::new(Vec::new()),
        }
    }

    /// Records one run of every layer for `batch` inputs, with an optional timestamp written
    /// before the first layer and after each layer (`base`, `base + 1`, ...).
    fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        batch: usize,
        stamps: Option<(&wgpu::QuerySet, u32)>,
    ) {
        if let Some((qs, base)) = stamps {
            pass.write_timestamp(qs, base);
        }
        for (l, dispatches) in self.layers.iter().enumerate() {
            record_dispatches(pass, dispatches, batch);
            if let Some((qs, base)) = stamps {
                pass.write_timestamp(qs, base + l as u32 + 1);
            }
        }
    }
}

/// Records the dispatches of `dispatches` that serve a batch of `batch` into `pass`.
pub(crate) fn record_dispatches(
    pass: &mut wgpu::ComputePass<'_>,
    dispatches: &[Dispatch],
    batch: usize,
) {
    for d in dispatches
        .iter()
        .filter(|d| (d.batches.0..=d.batches.1).contains(&batch))
    {
        pass.set_pipeline(&d.pipeline);
        pass.set_bind_group(0, &d.bind_group, &[]);
        let y = (batch as u32).div_ceil(d.batch_group) * d.y_per_group;
        pass.dispatch_workgroups(d.x, y, 1);
    }
}
