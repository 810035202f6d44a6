//! A compiled model on the device: the dispatches of every layer recorded into one compute
//! pass, the activation buffers they chain through, and the ways to run it (blocking, async,
//! timed with timestamp queries, pipelined frames).

use super::device::{Completion, CompletionFuture, GpuContext};
use crate::error::{Error, Result};
use crate::fixed16;
use crate::format::check_batch;
use crate::schedule::batch_chunks;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wgpu::util::DeviceExt;

/// How activations are stored on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// f32, 4 bytes.
    F32,
    /// fixed16 values (in the model's input and output formats, see
    /// `Program::fixed16_fracs`) as i32, 4 bytes.
    Fixed16,
    /// f16, 2 bytes.
    F16,
}

impl Encoding {
    pub(crate) fn bytes(self) -> usize {
        match self {
            Encoding::F16 => 2,
            _ => 4,
        }
    }
}

/// Rounds an activation vector's length up so rows of every buffer start 16-byte aligned
/// (the dense kernel reads vec4 words).
pub(crate) fn stride(n: usize) -> usize {
    n.next_multiple_of(8)
}

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

/// Timing options of `Program::time`.
#[derive(Clone, Copy, Debug)]
pub struct TimingOptions {
    /// Runs recorded back to back in one submission (`K`); GPU time is divided by it.
    pub reps_per_submit: usize,
    /// Submissions (samples) measured.
    pub samples: usize,
}

impl Default for TimingOptions {
    fn default() -> Self {
        TimingOptions {
            reps_per_submit: 10,
            samples: 10,
        }
    }
}

/// Measured times, microseconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Timing {
    /// GPU time of one run from timestamp queries (one value per sample: the submission's time
    /// over `K`); `None` when the device has no timestamps.
    pub gpu_us: Option<Vec<f64>>,
    /// GPU time per layer (outer: layer, inner: samples) from timestamps written between
    /// dispatches; `None` without `TIMESTAMP_QUERY_INSIDE_PASSES`.
    pub per_layer_us: Option<Vec<Vec<f64>>>,
    /// Wall time of one `K`-run submission (submit to completion on the host) over `K`, per
    /// sample: an upper bound on GPU time for devices without timestamps.
    pub submit_wall_us: Vec<f64>,
    /// End-to-end wall time of one call (upload, run, read back), per sample.
    pub wall_us: Vec<f64>,
}

/// Result of `Program::pipelined`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PipelineTiming {
    /// Frames completed per second of wall time.
    pub frames_per_s: f64,
    /// Per frame: submit to result on the host, microseconds.
    pub latency_us: Vec<f64>,
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
    submit: Mutex<()>,
    staging: Mutex<Vec<wgpu::Buffer>>,
}

/// Inputs in the device layout: activation values, and the bitmap words with their byte
/// offset in the input buffer.
pub(crate) struct Encoded {
    values: Vec<u8>,
    bits: Option<(u64, Vec<u8>)>,
}

/// Creates a storage buffer holding `data` (at least 16 bytes, zero-padded).
pub(crate) fn storage_init(ctx: &GpuContext, label: &str, data: &[u8]) -> wgpu::Buffer {
    let mut padded;
    let contents = if data.len() < 16 || data.len() % 4 != 0 {
        padded = data.to_vec();
        padded.resize(data.len().max(16).next_multiple_of(4), 0);
        &padded[..]
    } else {
        data
    };
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        })
}

/// Creates a uniform buffer holding `data`.
pub(crate) fn uniform_init(ctx: &GpuContext, label: &str, data: &[u8]) -> wgpu::Buffer {
    ctx.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: data,
            usage: wgpu::BufferUsages::UNIFORM,
        })
}

/// Creates a zeroed activation buffer for `batch` vectors of `n` values.
pub(crate) fn activations(
    ctx: &GpuContext,
    label: &str,
    batch: usize,
    n: usize,
    enc: Encoding,
) -> Result<wgpu::Buffer> {
    zeroed(ctx, label, (batch * stride(n) * enc.bytes()).div_ceil(4))
}

/// Creates a zeroed storage buffer of `words` u32 words (at least 16 bytes), or a typed error
/// when it exceeds the device's storage binding limit.
pub(crate) fn zeroed(ctx: &GpuContext, label: &str, words: usize) -> Result<wgpu::Buffer> {
    let size = (4 * words).max(16) as u64;
    if size > ctx.device_limits().max_binding() {
        return Err(Error::InvalidArgument(format!(
            "{label}: {size} bytes exceed the device's storage binding limit; lower max_batch \
             (or, for the EIE engine, use fewer PEs)"
        )));
    }
    Ok(ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    }))
}

/// Binds `buffers` to bindings 0, 1, ... of group 0 of `pipeline`.
pub(crate) fn bind(
    ctx: &GpuContext,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let numbered: Vec<(u32, &wgpu::Buffer)> = buffers
        .iter()
        .enumerate()
        .map(|(i, &b)| (i as u32, b))
        .collect();
    bind_at(ctx, label, pipeline, &numbered)
}

/// Binds each `(binding, buffer)` of group 0 of `pipeline` (for a kernel that uses only some of
/// a shared prelude's bindings).
pub(crate) fn bind_at(
    ctx: &GpuContext,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[(u32, &wgpu::Buffer)],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .map(|&(i, b)| wgpu::BindGroupEntry {
            binding: i,
            resource: b.as_entire_binding(),
        })
        .collect();
    ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
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
            submit: Mutex::new(()),
            staging: Mutex::new(Vec::new()),
        }
    }

    /// Converts `batch` input vectors to the device layout (strided rows, device number
    /// format; zero inputs up to the padded batch) and, for programs that read them, their
    /// non-zero bitmaps.
    fn encode(&self, x: &[f32]) -> Encoded {
        let s = stride(self.in_size);
        let batch = x.len() / self.in_size;
        let padded = match self.input_bits {
            Some(bits) if batch > 1 => batch.next_multiple_of(bits.tile),
            _ => batch,
        };
        let b = self.encoding.bytes();
        let mut out = vec![0u8; padded * s * b];
        for (row, xs) in out
            .chunks_exact_mut(s * b)
            .zip(x.chunks_exact(self.in_size))
        {
            for (o, &v) in row.chunks_exact_mut(b).zip(xs) {
                match self.encoding {
                    Encoding::F32 => o.copy_from_slice(&v.to_le_bytes()),
                    Encoding::Fixed16 => {
                        let q = fixed16::quantize_activation(v, self.fixed16_fracs.0);
                        o.copy_from_slice(&(q as i32).to_le_bytes())
                    }
                    Encoding::F16 => o.copy_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                }
            }
        }
        // The bitmaps from the encoded values: a value is non-zero when any bit but its sign
        // bit is set (f32 and f16 -0.0 count as zero; a fixed16 i32 is never 0x80000000).
        let bits = self.input_bits.map(|layout| {
            let mut words = vec![0u32; padded * layout.stride];
            for (bits, row) in words
                .chunks_exact_mut(layout.stride)
                .zip(out.chunks_exact(s * b))
            {
                for (j, o) in row.chunks_exact(b).take(self.in_size).enumerate() {
                    let (last, rest) = o.split_last().expect("values have bytes");
                    let nonzero = last & 0x7f != 0 || rest.iter().any(|&v| v != 0);
                    bits[j / 32] |= (nonzero as u32) << (j % 32);
                }
            }
            (
                (4 * layout.base) as u64,
                bytemuck::cast_slice(&words).to_vec(),
            )
        });
        Encoded { values: out, bits }
    }

    /// Converts device output rows back to `batch * out_size` floats.
    fn decode(&self, bytes: &[u8], batch: usize) -> Vec<f32> {
        let s = stride(self.out_size);
        let b = self.encoding.bytes();
        let mut out = Vec::with_capacity(batch * self.out_size);
        for row in bytes.chunks_exact(s * b).take(batch) {
            for o in row.chunks_exact(b).take(self.out_size) {
                out.push(match self.encoding {
                    Encoding::F32 => f32::from_le_bytes([o[0], o[1], o[2], o[3]]),
                    Encoding::Fixed16 => fixed16::dequantize_activation(
                        i32::from_le_bytes([o[0], o[1], o[2], o[3]]) as i16,
                        self.fixed16_fracs.1,
                    ),
                    Encoding::F16 => half::f16::from_le_bytes([o[0], o[1]]).to_f32(),
                });
            }
        }
        out
    }

    fn output_bytes(&self, batch: usize) -> u64 {
        (batch * stride(self.out_size) * self.encoding.bytes()) as u64
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
            for d in dispatches
                .iter()
                .filter(|d| (d.batches.0..=d.batches.1).contains(&batch))
            {
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, &d.bind_group, &[]);
                let y = (batch as u32).div_ceil(d.batch_group) * d.y_per_group;
                pass.dispatch_workgroups(d.x, y, 1);
            }
            if let Some((qs, base)) = stamps {
                pass.write_timestamp(qs, base + l as u32 + 1);
            }
        }
    }

    fn take_staging(&self, size: u64) -> wgpu::Buffer {
        let mut pool = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        match pool.iter().position(|b| b.size() >= size) {
            Some(i) => pool.swap_remove(i),
            None => self.ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("eie/gpu/readback"),
                size: self.output_bytes(self.max_batch).max(size),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        }
    }

    /// Uploads one chunk, records the whole model and a copy of the output to a staging buffer,
    /// and submits, all under the submit lock so concurrent callers never interleave their
    /// uploads and runs.
    fn submit_chunk(
        &self,
        input: &Encoded,
        batch: usize,
    ) -> Result<(wgpu::SubmissionIndex, wgpu::Buffer, u64)> {
        self.ctx.check()?;
        let out_bytes = self.output_bytes(batch);
        let staging = self.take_staging(out_bytes);
        let _g = self.submit.lock().unwrap_or_else(|e| e.into_inner());
        let queue = self.ctx.queue();
        queue.write_buffer(&self.input, 0, &input.values);
        if let Some((offset, bits)) = &input.bits {
            queue.write_buffer(&self.input, *offset, bits);
        }
        let mut enc = self
            .ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("eie/gpu/run"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("eie/gpu/layers"),
                timestamp_writes: None,
            });
            self.record(&mut pass, batch, None);
        }
        enc.copy_buffer_to_buffer(&self.output, 0, &staging, 0, out_bytes);
        let idx = queue.submit([enc.finish()]);
        Ok((idx, staging, out_bytes))
    }

    /// Copies the mapped result out, unmaps and returns the staging buffer to the pool.
    fn read_staging(&self, staging: wgpu::Buffer, size: u64, batch: usize) -> Result<Vec<f32>> {
        let out = {
            let view = staging
                .get_mapped_range(..size)
                .map_err(|e| Error::Gpu(format!("reading back the output: {e}")))?;
            self.decode(&view, batch)
        };
        staging.unmap();
        self.staging
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(staging);
        Ok(out)
    }

    fn map(staging: &wgpu::Buffer, size: u64) -> Arc<Completion> {
        let c = Completion::new();
        let c2 = c.clone();
        staging.map_async(wgpu::MapMode::Read, ..size, move |r| {
            c2.complete(r.map_err(|e| Error::Gpu(format!("mapping the output: {e}"))))
        });
        c
    }

    fn run_chunk(&self, x: &[f32]) -> Result<Vec<f32>> {
        let batch = x.len() / self.in_size;
        let (idx, staging, size) = self.submit_chunk(&self.encode(x), batch)?;
        let c = Self::map(&staging, size);
        self.ctx.wait_for(idx, &c)?;
        self.read_staging(staging, size, batch)
    }

    /// Runs a batch, blocking the calling thread (at most the poll timeout per chunk).
    pub(crate) fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        let batch = check_batch(self.in_size, input)?;
        let mut out = Vec::with_capacity(batch * self.out_size);
        for (s, n) in batch_chunks(batch, self.max_batch) {
            out.extend(self.run_chunk(&input[s * self.in_size..(s + n) * self.in_size])?);
        }
        Ok(out)
    }

    /// Runs a batch without blocking: the device is polled by the context's poller thread.
    pub(crate) async fn run_async(&self, input: &[f32]) -> Result<Vec<f32>> {
        let batch = check_batch(self.in_size, input)?;
        let mut out = Vec::with_capacity(batch * self.out_size);
        for (s, n) in batch_chunks(batch, self.max_batch) {
            let x = &input[s * self.in_size..(s + n) * self.in_size];
            let (_idx, staging, size) = self.submit_chunk(&self.encode(x), n)?;
            let c = Self::map(&staging, size);
            self.ctx.watch(c.clone());
            CompletionFuture(c).await?;
            self.ctx.check()?;
            out.extend(self.read_staging(staging, size, n)?);
        }
        Ok(out)
    }

    /// Reads `count` resolved timestamps (ticks) after `enc` has been recorded and submits it.
    fn submit_with_stamps(
        &self,
        mut enc: wgpu::CommandEncoder,
        qs: &wgpu::QuerySet,
        count: u32,
    ) -> Result<(Vec<u64>, Duration)> {
        let dev = self.ctx.device();
        let bytes = 8 * count as u64;
        let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("eie/gpu/timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("eie/gpu/timestamps-read"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        enc.resolve_query_set(qs, 0..count, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, bytes);
        let start = Instant::now();
        let idx = {
            let _g = self.submit.lock().unwrap_or_else(|e| e.into_inner());
            self.ctx.queue().submit([enc.finish()])
        };
        let c = Self::map(&read, bytes);
        self.ctx.wait_for(idx, &c)?;
        let wall = start.elapsed();
        let ticks = {
            let view = read
                .get_mapped_range(..)
                .map_err(|e| Error::Gpu(format!("reading timestamps: {e}")))?;
            view.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
                .collect()
        };
        read.unmap();
        Ok((ticks, wall))
    }

    /// Times the model on `input` (at most `max_batch` inputs): GPU time from timestamp
    /// queries around `K` back-to-back runs in one compute pass (and between layers when the
    /// device allows), the wall time of that submission, and end-to-end wall time of `run`.
    pub(crate) fn time(&self, input: &[f32], opts: &TimingOptions) -> Result<Timing> {
        let batch = check_batch(self.in_size, input)?;
        if batch > self.max_batch {
            return Err(Error::InvalidArgument(format!(
                "timing a batch of {batch} on an engine built for at most {}",
                self.max_batch
            )));
        }
        let k = opts.reps_per_submit.max(1);
        let samples = opts.samples.max(1);
        let n_layers = self.layers.len();
        let dev = self.ctx.device();
        let period_us = self.ctx.queue().get_timestamp_period() as f64 / 1000.0;
        let has_ts = self.ctx.has_timestamps();
        let per_layer_count = (k * (n_layers + 1)) as u32;
        let inside = has_ts
            && self.ctx.has_timestamps_inside_passes()
            && per_layer_count <= wgpu::QUERY_SET_MAX_QUERIES;
        let qs = has_ts.then(|| {
            dev.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("eie/gpu/timing"),
                ty: wgpu::QueryType::Timestamp,
                count: if inside { per_layer_count.max(2) } else { 2 },
            })
        });
        let mut timing = Timing {
            gpu_us: has_ts.then(Vec::new),
            per_layer_us: inside.then(|| vec![Vec::new(); n_layers]),
            ..Timing::default()
        };
        // Warm-up (pipelines, caches, and at least 50 ms of work so the GPU leaves its idle
        // clocks) and the input upload the timed passes reuse.
        self.run(input)?;
        let warm = Instant::now();
        for _ in 0..1000 {
            if warm.elapsed() >= Duration::from_millis(50) {
                break;
            }
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("eie/gpu/warm-up"),
            });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("eie/gpu/warm-up"),
                    timestamp_writes: None,
                });
                for _ in 0..k {
                    self.record(&mut pass, batch, None);
                }
            }
            let idx = {
                let _g = self.submit.lock().unwrap_or_else(|e| e.into_inner());
                self.ctx.queue().submit([enc.finish()])
            };
            self.ctx.wait(idx)?;
        }
        for _ in 0..samples {
            let start = Instant::now();
            self.run(input)?;
            timing.wall_us.push(start.elapsed().as_secs_f64() * 1e6);

            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("eie/gpu/timed"),
            });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("eie/gpu/timed-layers"),
                    timestamp_writes: qs.as_ref().map(|qs| wgpu::ComputePassTimestampWrites {
                        query_set: qs,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    }),
                });
                for _ in 0..k {
                    self.record(&mut pass, batch, None);
                }
            }
            match &qs {
                Some(qs) => {
                    let (t, wall) = self.submit_with_stamps(enc, qs, 2)?;
                    timing
                        .submit_wall_us
                        .push(wall.as_secs_f64() * 1e6 / k as f64);
                    if let Some(g) = timing.gpu_us.as_mut() {
                        g.push(t[1].saturating_sub(t[0]) as f64 * period_us / k as f64);
                    }
                }
                None => {
                    let start = Instant::now();
                    let idx = {
                        let _g = self.submit.lock().unwrap_or_else(|e| e.into_inner());
                        self.ctx.queue().submit([enc.finish()])
                    };
                    self.ctx.wait(idx)?;
                    timing
                        .submit_wall_us
                        .push(start.elapsed().as_secs_f64() * 1e6 / k as f64);
                }
            }
            if let (true, Some(qs)) = (inside, &qs) {
                let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("eie/gpu/timed-per-layer"),
                });
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("eie/gpu/timed-per-layer"),
                        timestamp_writes: None,
                    });
                    for r in 0..k {
                        self.record(&mut pass, batch, Some((qs, (r * (n_layers + 1)) as u32)));
                    }
                }
                let (t, _) = self.submit_with_stamps(enc, qs, per_layer_count)?;
                let per = timing.per_layer_us.as_mut().expect("set when inside");
                for (l, v) in per.iter_mut().enumerate() {
                    let sum: u64 = (0..k)
                        .map(|r| {
                            let b = r * (n_layers + 1) + l;
                            t[b + 1].saturating_sub(t[b])
                        })
                        .sum();
                    v.push(sum as f64 * period_us / k as f64);
                }
            }
        }
        Ok(timing)
    }

    /// Pipelined single-frame runs: keeps `in_flight` submissions outstanding (each with its
    /// own output staging buffer), cycling through `inputs`, for `frames` frames.
    pub(crate) fn pipelined(
        &self,
        inputs: &[Vec<f32>],
        frames: usize,
        in_flight: usize,
    ) -> Result<PipelineTiming> {
        if inputs.is_empty() || frames == 0 || in_flight == 0 {
            return Err(Error::InvalidArgument(
                "pipelined runs need at least one input, one frame and one submission in flight"
                    .into(),
            ));
        }
        let encoded: Vec<(Encoded, usize)> = inputs
            .iter()
            .map(|x| {
                let b = check_batch(self.in_size, x)?;
                if b > self.max_batch {
                    return Err(Error::InvalidArgument(format!(
                        "a frame of {b} inputs exceeds max_batch {}",
                        self.max_batch
                    )));
                }
                Ok((self.encode(x), b))
            })
            .collect::<Result<_>>()?;
        type InFlight = (
            wgpu::SubmissionIndex,
            Instant,
            wgpu::Buffer,
            u64,
            usize,
            Arc<Completion>,
        );
        let mut queue: VecDeque<InFlight> = VecDeque::with_capacity(in_flight);
        let mut latency = Vec::with_capacity(frames);
        let start = Instant::now();
        let finish = |q: &mut VecDeque<InFlight>, latency: &mut Vec<f64>| -> Result<()> {
            let (idx, t0, staging, size, batch, c) = q.pop_front().expect("non-empty");
            self.ctx.wait_for(idx, &c)?;
            let t1 = c.completed_at().unwrap_or_else(Instant::now);
            let out = self.read_staging(staging, size, batch)?;
            debug_assert_eq!(out.len(), batch * self.out_size);
            latency.push(t1.duration_since(t0).as_secs_f64() * 1e6);
            Ok(())
        };
        for f in 0..frames {
            if queue.len() == in_flight {
                finish(&mut queue, &mut latency)?;
            }
            let (bytes, batch) = &encoded[f % encoded.len()];
            let t0 = Instant::now();
            let (idx, staging, size) = self.submit_chunk(bytes, *batch)?;
            let c = Self::map(&staging, size);
            queue.push_back((idx, t0, staging, size, *batch, c));
        }
        while !queue.is_empty() {
            finish(&mut queue, &mut latency)?;
        }
        let secs = start.elapsed().as_secs_f64();
        Ok(PipelineTiming {
            frames_per_s: frames as f64 / secs,
            latency_us: latency,
        })
    }
}
