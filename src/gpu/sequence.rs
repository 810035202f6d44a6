//! The GPU sequence engine, [`GpuSequenceEngine`].

use super::baseline::{self, BaselineKind};
use super::device::GpuContext;
use super::engine::layer_dispatches;
use super::kernels::recurrent_cell::{self, CellBuffers, CellCall};
use super::kernels::ActLayout;
use super::program::{
    decode_rows, encode_rows, record_dispatches as record, storage_init, zeroed, Dispatch, Encoding,
};
use crate::error::{Error, Result};
use crate::fixed16;
use crate::format::{CellKind, EieLayer, SequenceModel};
use crate::kernel_id::{KernelId, KernelKind};
use crate::precision::Precision;
use crate::recurrent::{cell, check_input, SequenceEngine, SequenceState, StageParts};
use crate::schedule::{PePlan, ScheduleOverride, BATCH_TILE, EIE_BATCH_TILE};
use std::sync::{Arc, Mutex};

/// Options of [`GpuSequenceEngine::new`].
#[derive(Clone, Copy, Debug)]
pub struct SequenceOptions {
    /// f32 or EIE's fixed16 (the CPU engine's formats and bits); f16 recurrent layers run on
    /// the CPU engine ([`SequenceEngine`]).
    pub precision: Precision,
    /// Most sequences one submission carries; larger batches run in groups.
    pub max_batch: usize,
    /// Most steps one submission records; longer sequences take several submissions, the
    /// state staying on the device.
    pub max_steps: usize,
    /// PE count per matrix (workgroups of the EIE kernel).
    pub pes: PePlan,
    /// The kernel of every matrix product: `None` (the default) for EIE's; a baseline runs the
    /// same steps (the same recording, state and cell kernel) with every matrix decoded and
    /// multiplied by that baseline's f32 kernel instead (`dense_gemv.wgsl`, cuBLAS-style, or
    /// `csr_spmv.wgsl`), to compare against. Baselines run in f32 only.
    pub baseline: Option<BaselineKind>,
}

impl Default for SequenceOptions {
    fn default() -> Self {
        SequenceOptions {
            precision: Precision::F32,
            max_batch: 16,
            max_steps: 128,
            pes: PePlan::Auto,
            baseline: None,
        }
    }
}

/// The device side of one recurrent stage.
struct RecurrentStage {
    kind: CellKind,
    hidden: usize,
    ih: Vec<Dispatch>,
    hh: Vec<Dispatch>,
    /// One per step `0..max_steps`.
    cell: Vec<Dispatch>,
    h: (wgpu::Buffer, ActLayout),
    c: wgpu::Buffer,
}

enum Stage {
    Fc(Vec<Dispatch>),
    Recurrent(RecurrentStage),
}

/// A [`SequenceModel`] (LSTM / GRU layers beside fully-connected ones) on the GPU, with the
/// recurrent state kept on the device for the whole call.
///
/// One submission runs up to `max_steps` steps of up to `max_batch` sequences, every stage in
/// one compute pass: a fully-connected stage, and a recurrent stage's input part
/// `W_ih x_t + b_ih`, as one batched EIE product over all the submission's steps (rows
/// `b × steps + t`, the order the input arrives in, decoding each entry once per tile of
/// steps); then, step after step, the hidden part `W_hh h + b_hh` as an EIE product over the
/// sequences (in EIE's column walk only the non-zero entries of `h` are broadcast, from the
/// bitmap the cell step wrote), and the `recurrent_cell` dispatch, which updates `c` and `h` and writes `h` into the
/// stage's output sequence. Longer calls take several submissions; the state stays on the
/// device between them and is read back once, with the outputs, at the end.
///
/// The arithmetic and the fixed16 formats are the CPU engine's ([`SequenceEngine`]): the GPU
/// is built from the same one-matrix models, with the same sigmoid and tanh tables, so fixed16
/// gives the CPU engine's bits, and f32 differs from it by rounding (`exp` and `tanh`, the
/// order of the EIE sums, fused multiply-adds).
///
/// With [`SequenceOptions::baseline`] the same recording runs every matrix product on a
/// baseline kernel instead (the dense GPU LSTM step, or CSR), to measure EIE's against.
///
/// Cloning is cheap; calls on one engine take the device one group of at most `max_batch`
/// sequences at a time (the state buffers are the engine's). `docs/GPU.md` describes the
/// `recurrent_cell` kernel.
#[derive(Clone)]
pub struct GpuSequenceEngine {
    inner: Arc<Resident>,
}

struct Resident {
    ctx: Arc<GpuContext>,
    model: Arc<SequenceModel>,
    precision: Precision,
    /// How activations and `h` are stored: f32, or fixed16 as i32.
    encoding: Encoding,
    /// The matrices' kernel where it is a baseline's.
    baseline: Option<BaselineKind>,
    max_batch: usize,
    max_steps: usize,
    stages: Vec<Stage>,
    input: (wgpu::Buffer, ActLayout),
    output: (wgpu::Buffer, ActLayout),
    /// fixed16: fraction bits of the model's input and output.
    fracs: (u32, u32),
    /// Batches of more than one row are padded to a multiple of this.
    tile: usize,
    call: wgpu::Buffer,
    run: Mutex<()>,
    // Buffers the bind groups reference.
    _buffers: Vec<wgpu::Buffer>,
}

impl GpuSequenceEngine {
    /// Uploads `model` at `opts.precision` and builds every pipeline, buffer and bind group
    /// later calls reuse. The fixed16 formats are [`SequenceEngine::new`]'s.
    ///
    /// [`Error::UnsupportedPrecision`] for f16 (run it on [`SequenceEngine`]) and for a
    /// baseline in anything but f32; [`Error::InvalidArgument`] for a zero `max_batch` or
    /// `max_steps`; [`Error::LimitExceeded`] for sizes beyond the device's limits.
    pub fn new(
        ctx: Arc<GpuContext>,
        model: &SequenceModel,
        opts: SequenceOptions,
    ) -> Result<GpuSequenceEngine> {
        if opts.precision == Precision::F16 {
            return Err(Error::UnsupportedPrecision {
                backend: "the GPU sequence engine".into(),
                precision: opts.precision.name().into(),
                supported: "f32 or fixed16 (f16 sequence models run on the CPU engine)".into(),
            });
        }
        if let Some(kind) = opts.baseline.filter(|_| opts.precision != Precision::F32) {
            return Err(Error::UnsupportedPrecision {
                backend: format!("the {} baseline", kind.name()),
                precision: opts.precision.name().into(),
                supported: "f32".into(),
            });
        }
        if opts.max_batch == 0 || opts.max_steps == 0 {
            return Err(Error::InvalidArgument(
                "max_batch and max_steps must be at least 1".into(),
            ));
        }
        let rows = opts
            .max_batch
            .checked_mul(opts.max_steps)
            .ok_or_else(|| Error::InvalidArgument("max_batch × max_steps overflows".into()))?;
        let limits = ctx.device_limits();
        let wg_limit = limits.max_compute_workgroups_per_dimension as usize;
        // A layer's tile may be a single input: then every row is a workgroup row.
        if rows > wg_limit {
            return Err(Error::LimitExceeded {
                what: format!(
                    "workgroup rows of max_batch {} × max_steps {} (this device's workgroups \
                     per dimension)",
                    opts.max_batch, opts.max_steps
                ),
                value: rows as u64,
                limit: wg_limit as u64,
            });
        }
        // The CPU engine chooses the fixed16 formats; the GPU runs its one-matrix models.
        let cpu = SequenceEngine::new(model.clone(), opts.precision)?;
        let parts = cpu.stage_parts();
        let fixed = opts.precision == Precision::Fixed16;
        let encoding = Encoding::of(opts.precision);
        let seq_rows = rows.next_multiple_of(EIE_BATCH_TILE);
        let state_rows = opts.max_batch.next_multiple_of(EIE_BATCH_TILE);
        let classes: &[(usize, usize)] = if rows > 1 {
            &[(1, 1), (2, usize::MAX)]
        } else {
            &[(1, 1)]
        };
        let ov = ScheduleOverride::from_env()?;
        let c = ctx.clone();
        ctx.scoped("building the sequence engine", move || {
            let ctx = c;
            let mut buffers = Vec::new();
            let act = |label: &str, n: usize, rows: usize| -> Result<(wgpu::Buffer, ActLayout)> {
                let l = ActLayout::new(n, rows, encoding);
                Ok((zeroed(&ctx, label, l.words)?, l))
            };
            let input = act("eie/gpu/sequence/input", model.input_size(), seq_rows)?;
            let tables: Vec<u8> = cell::fixed16_tables()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            let tables = storage_init(&ctx, "eie/gpu/sequence/cell-tables", &tables);
            let call = ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("eie/gpu/sequence/call"),
                size: std::mem::size_of::<CellCall>() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            // The EIE kernels' fixed16 saturation counters: word 0 (the inputs to count) stays
            // 0, so they count nothing here.
            let counters = zeroed(&ctx, "eie/gpu/sequence/saturations", 2)?;
            let mut cur = (input.0.clone(), input.1);
            let mut stages = Vec::new();
            let mut tile = None;
            let mut out_frac = parts
                .first()
                .map_or(fixed16::DEFAULT_ACT_FRAC, |p| match p {
                    StageParts::Fc(m) => m.input_frac(),
                    StageParts::Recurrent { ih, .. } => ih.input_frac(),
                });
            let in_frac = out_frac;
            // One matrix of stage `si` from `x` to `y` (buffers of `rows` rows), by EIE's
            // kernel or the baseline's; with the tile its batches are padded to.
            type Act = (wgpu::Buffer, ActLayout);
            let matrix = |si: usize,
                          what: &str,
                          layer: &EieLayer,
                          rows: usize,
                          (x, y): (&Act, &Act),
                          buffers: &mut Vec<wgpu::Buffer>|
             -> Result<(Vec<Dispatch>, usize)> {
                let lbl = |w: &str| format!("eie/gpu/sequence/stage-{si}/{what}/{w}");
                let Some(kind) = opts.baseline else {
                    let (d, plan) = layer_dispatches(
                        &ctx,
                        layer,
                        opts.precision,
                        opts.pes,
                        &ov,
                        classes,
                        rows,
                        (&x.0, x.1),
                        (&y.0, y.1),
                        (&counters, 0),
                        &lbl,
                        buffers,
                    )?;
                    return Ok((d, plan.batched.tile));
                };
                let d = baseline::layer_dispatches(&ctx, kind, layer, (&x.0, &y.0), &lbl, buffers)?;
                Ok((d, BATCH_TILE))
            };
            for (si, part) in parts.iter().enumerate() {
                let name = |w: &str| format!("eie/gpu/sequence/stage-{si}/{w}");
                match part {
                    StageParts::Fc(m) => {
                        let layer = &m.layers()[0];
                        let y = act(&name("output"), layer.rows(), seq_rows)?;
                        let (d, t) = matrix(si, "fc", layer, seq_rows, (&cur, &y), &mut buffers)?;
                        tile.get_or_insert(t);
                        out_frac = m.output_frac();
                        buffers.push(std::mem::replace(&mut cur, y).0);
                        stages.push(Stage::Fc(d));
                    }
                    StageParts::Recurrent {
                        kind,
                        hidden,
                        ih,
                        hh,
                        gate_frac,
                    } => {
                        let (g, h) = (kind.gates() * hidden, *hidden);
                        let gx = act(&name("gx"), g, seq_rows)?;
                        let gh = act(&name("gh"), g, state_rows)?;
                        let hb = act(&name("h"), h, state_rows)?;
                        let cb = zeroed(&ctx, &name("c"), state_rows * h)?;
                        let out = act(&name("output"), h, seq_rows)?;
                        let ih = &ih.layers()[0];
                        let (ih_d, t) = matrix(si, "ih", ih, seq_rows, (&cur, &gx), &mut buffers)?;
                        tile.get_or_insert(t);
                        let hh = &hh.layers()[0];
                        let (hh_d, _) = matrix(si, "hh", hh, state_rows, (&hb, &gh), &mut buffers)?;
                        if fixed && *gate_frac > 24 {
                            return Err(Error::InvalidArgument(format!(
                                "fixed16: gate format Q.{gate_frac} has more fraction bits than \
                                 the cell's 24"
                            )));
                        }
                        let cell_d = recurrent_cell::dispatches(
                            &ctx,
                            *kind,
                            h,
                            opts.precision,
                            *gate_frac,
                            opts.max_steps,
                            &CellBuffers {
                                call: &call,
                                gx: (&gx.0, gx.1),
                                gh: (&gh.0, gh.1),
                                h: (&hb.0, hb.1),
                                c: &cb,
                                out: (&out.0, out.1),
                                tables: &tables,
                            },
                            &|w| name(&format!("cell/{w}")),
                            &mut buffers,
                        )?;
                        out_frac = cell::H_FRAC;
                        buffers.extend([gx.0, gh.0]);
                        buffers.push(std::mem::replace(&mut cur, out).0);
                        stages.push(Stage::Recurrent(RecurrentStage {
                            kind: *kind,
                            hidden: h,
                            ih: ih_d,
                            hh: hh_d,
                            cell: cell_d,
                            h: hb,
                            c: cb,
                        }));
                    }
                }
            }
            buffers.extend([tables, counters]);
            Ok(GpuSequenceEngine {
                inner: Arc::new(Resident {
                    ctx: ctx.clone(),
                    model: Arc::new(model.clone()),
                    precision: opts.precision,
                    encoding,
                    baseline: opts.baseline,
                    max_batch: opts.max_batch,
                    max_steps: opts.max_steps,
                    stages,
                    input,
                    output: cur,
                    fracs: (in_frac, out_frac),
                    tile: tile.unwrap_or(1),
                    call,
                    run: Mutex::new(()),
                    _buffers: buffers,
                }),
            })
        })?
    }

    /// The model, as given.
    pub fn model(&self) -> &SequenceModel {
        &self.inner.model
    }

    /// The arithmetic.
    pub fn precision(&self) -> Precision {
        self.inner.precision
    }

    /// Which kernel variant runs the matrix products: `gpu-eie/f32`, `gpu-eie/fixed16`, or for
    /// a baseline (see [`SequenceOptions::baseline`]) `gpu-dense/f32` or `gpu-csr/f32`.
    pub fn id(&self) -> KernelId {
        let kind = self
            .inner
            .baseline
            .map_or(KernelKind::Eie, BaselineKind::kernel_kind);
        KernelId::gpu(kind, self.inner.precision)
    }

    /// The device context.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.inner.ctx
    }

    /// The zero state (see [`SequenceState::zeros`]).
    pub fn zero_state(&self) -> SequenceState {
        SequenceState::zeros(&self.inner.model)
    }

    /// Runs one sequence of `steps` steps (`steps × input_size` values) from `state`, which it
    /// leaves at the state after the last step; returns every step's output (`steps ×
    /// output_size`), as [`SequenceEngine::run`] does. Blocks the calling thread.
    pub fn run(&self, input: &[f32], steps: usize, state: &mut SequenceState) -> Result<Vec<f32>> {
        self.run_batch(input, 1, steps, std::slice::from_mut(state))
    }

    /// Runs `batch` sequences of `steps` steps each (`batch × steps × input_size` values),
    /// sequence `b` from `states[b]`; returns `batch × steps × output_size` values, as
    /// [`SequenceEngine::run_batch`] does. Blocks the calling thread.
    pub fn run_batch(
        &self,
        input: &[f32],
        batch: usize,
        steps: usize,
        states: &mut [SequenceState],
    ) -> Result<Vec<f32>> {
        let r = &*self.inner;
        check_input(&r.model, input, batch, steps, states)?;
        let (n_in, n_out) = (r.model.input_size(), r.model.output_size());
        let mut out = vec![0f32; batch * steps * n_out];
        for g0 in (0..batch).step_by(r.max_batch) {
            let nb = r.max_batch.min(batch - g0);
            let x = &input[g0 * steps * n_in..(g0 + nb) * steps * n_in];
            let y = self.group(x, nb, steps, &mut states[g0..g0 + nb])?;
            out[g0 * steps * n_out..(g0 + nb) * steps * n_out].copy_from_slice(&y);
        }
        Ok(out)
    }

    /// The state of `states` in the device layout: per recurrent stage, `h` (encoded, with
    /// its bitmaps) and `c`.
    fn encode_state(&self, states: &[SequenceState]) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let r = &*self.inner;
        let (fixed, encoding) = (r.precision == Precision::Fixed16, r.encoding);
        let mut offset = 0;
        let mut out = Vec::new();
        for s in &r.stages {
            let Stage::Recurrent(st) = s else { continue };
            let h_len = st.hidden;
            let has_c = st.kind.has_cell_state();
            let mut hs = Vec::with_capacity(states.len() * h_len);
            let mut cs = Vec::with_capacity(states.len() * h_len);
            for state in states {
                let v = &state.values()[offset..];
                hs.extend_from_slice(&v[..h_len]);
                if has_c {
                    cs.extend_from_slice(&v[h_len..2 * h_len]);
                } else {
                    cs.extend(std::iter::repeat_n(0.0, h_len));
                }
            }
            offset += if has_c { 2 * h_len } else { h_len };
            let (h, bits, _) = encode_rows(
                &hs,
                h_len,
                states.len(),
                encoding,
                cell::H_FRAC,
                Some(st.h.1.bits_stride),
            );
            let c: Vec<u8> = cs
                .iter()
                .flat_map(|&v| {
                    if fixed {
                        cell::quantize_c(v).to_le_bytes()
                    } else {
                        v.to_le_bytes()
                    }
                })
                .collect();
            out.push((h, bits.expect("bitmaps asked for"), c));
        }
        out
    }

    /// Up to `max_batch` sequences: every submission of the call, then one read-back.
    fn group(
        &self,
        input: &[f32],
        batch: usize,
        steps: usize,
        states: &mut [SequenceState],
    ) -> Result<Vec<f32>> {
        let r = &*self.inner;
        r.ctx.check()?;
        let (fixed, encoding) = (r.precision == Precision::Fixed16, r.encoding);
        let (n_in, n_out) = (r.model.input_size(), r.model.output_size());
        let dev = r.ctx.device();
        let queue = r.ctx.queue();
        let _g = r.run.lock().unwrap_or_else(|e| e.into_inner());
        // The state, uploaded once.
        for (s, (h, bits, c)) in r
            .stages
            .iter()
            .filter_map(|s| match s {
                Stage::Recurrent(st) => Some(st),
                Stage::Fc(_) => None,
            })
            .zip(self.encode_state(states))
        {
            queue.write_buffer(&s.h.0, 0, &h);
            queue.write_buffer(&s.h.0, (4 * s.h.1.bits_base) as u64, &bits);
            queue.write_buffer(&s.c, 0, &c);
        }
        let staging = |size: u64, label: &str| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: size.max(4),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let row_bytes = (r.output.1.stride * encoding.bytes()) as u64;
        let mut chunks = Vec::new();
        let mut last = None;
        for t0 in (0..steps).step_by(r.max_steps) {
            let sc = r.max_steps.min(steps - t0);
            let rows = batch * sc;
            // Rows b × sc + t of this chunk, from the input's rows b × steps + t0 + t.
            let mut x = Vec::with_capacity(rows * n_in);
            for b in 0..batch {
                let s = (b * steps + t0) * n_in;
                x.extend_from_slice(&input[s..s + sc * n_in]);
            }
            let padded = if rows > 1 {
                rows.next_multiple_of(r.tile)
            } else {
                rows
            };
            let (values, bits, _) = encode_rows(
                &x,
                n_in,
                padded,
                encoding,
                r.fracs.0,
                Some(r.input.1.bits_stride),
            );
            queue.write_buffer(&r.input.0, 0, &values);
            queue.write_buffer(
                &r.input.0,
                (4 * r.input.1.bits_base) as u64,
                &bits.expect("bitmaps asked for"),
            );
            let call = CellCall {
                steps: sc as u32,
                batch: batch as u32,
                pad0: 0,
                pad1: 0,
            };
            queue.write_buffer(&r.call, 0, bytemuck::bytes_of(&call));
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("eie/gpu/sequence/run"),
            });
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("eie/gpu/sequence/steps"),
                    timestamp_writes: None,
                });
                for s in &r.stages {
                    match s {
                        Stage::Fc(d) => record(&mut pass, d, rows),
                        Stage::Recurrent(st) => {
                            record(&mut pass, &st.ih, rows);
                            for t in 0..sc {
                                record(&mut pass, &st.hh, batch);
                                record(&mut pass, std::slice::from_ref(&st.cell[t]), batch);
                            }
                        }
                    }
                }
            }
            let size = rows as u64 * row_bytes;
            let out = staging(size, "eie/gpu/sequence/readback");
            enc.copy_buffer_to_buffer(&r.output.0, 0, &out, 0, size);
            let is_last = t0 + sc >= steps;
            let mut state_copies = Vec::new();
            if is_last {
                for s in &r.stages {
                    let Stage::Recurrent(st) = s else { continue };
                    let hb = (batch * st.h.1.stride * encoding.bytes()) as u64;
                    let cb = (batch * st.hidden * 4) as u64;
                    let buf = staging(hb + cb, "eie/gpu/sequence/state-readback");
                    enc.copy_buffer_to_buffer(&st.h.0, 0, &buf, 0, hb);
                    enc.copy_buffer_to_buffer(&st.c, 0, &buf, hb, cb);
                    state_copies.push((buf, hb, cb));
                }
            }
            let idx = queue.submit([enc.finish()]);
            // The output's map now; waited for below, chunk after chunk, each submission
            // within the poll timeout of its own.
            let m = map(&out, size);
            if is_last {
                last = Some((idx.clone(), state_copies));
            }
            chunks.push((out, size, sc, idx, m));
        }
        let (idx, state_copies) = last.expect("at least one step");
        for (_, _, _, i, m) in &chunks {
            r.ctx.wait_for(i.clone(), m)?;
        }
        for (buf, h, c) in &state_copies {
            r.ctx.wait_for(idx.clone(), &map(buf, h + c))?;
        }
        // Outputs: chunk rows b × sc + t to the call's rows b × steps + t0 + t.
        let mut y = vec![0f32; batch * steps * n_out];
        let mut t0 = 0;
        for (buf, size, sc, _, _) in &chunks {
            let v = {
                let view = buf
                    .get_mapped_range(..*size)
                    .map_err(|e| Error::Gpu(format!("reading back the output: {e}")))?;
                decode_rows(&view, batch * sc, n_out, encoding, r.fracs.1)
            };
            buf.unmap();
            for b in 0..batch {
                let d = (b * steps + t0) * n_out;
                y[d..d + sc * n_out].copy_from_slice(&v[b * sc * n_out..(b + 1) * sc * n_out]);
            }
            t0 += sc;
        }
        // The state: per sequence, per recurrent stage, h then c.
        let mut values: Vec<Vec<f32>> = vec![Vec::with_capacity(r.model.state_size()); batch];
        let mut copies = state_copies.iter();
        for s in &r.stages {
            let Stage::Recurrent(st) = s else { continue };
            let (buf, hb, cb) = copies.next().expect("a copy per recurrent stage");
            let (h, c) = {
                let view = buf
                    .get_mapped_range(..hb + cb)
                    .map_err(|e| Error::Gpu(format!("reading back the state: {e}")))?;
                let h = decode_rows(
                    &view[..*hb as usize],
                    batch,
                    st.hidden,
                    encoding,
                    cell::H_FRAC,
                );
                let c: Vec<f32> = view[*hb as usize..]
                    .chunks_exact(4)
                    .map(|w| {
                        let w = [w[0], w[1], w[2], w[3]];
                        if fixed {
                            cell::dequantize_c(i32::from_le_bytes(w))
                        } else {
                            f32::from_le_bytes(w)
                        }
                    })
                    .collect();
                (h, c)
            };
            buf.unmap();
            for (b, v) in values.iter_mut().enumerate() {
                v.extend_from_slice(&h[b * st.hidden..(b + 1) * st.hidden]);
                if st.kind.has_cell_state() {
                    v.extend_from_slice(&c[b * st.hidden..(b + 1) * st.hidden]);
                }
            }
        }
        for (state, v) in states.iter_mut().zip(values) {
            *state = SequenceState::from_values(&r.model, v)?;
        }
        Ok(y)
    }
}

/// Starts mapping the first `size` bytes of `buf` for reading.
fn map(buf: &wgpu::Buffer, size: u64) -> Arc<super::device::Completion> {
    let c = super::device::Completion::new();
    let c2 = c.clone();
    buf.map_async(wgpu::MapMode::Read, ..size, move |r| {
        c2.complete(r.map_err(|e| Error::Gpu(format!("mapping the output: {e}"))))
    });
    c
}
