//! Running a program: uploading a chunk of inputs (and starting its run counters), recording
//! every layer and the output copy (and the counters') into one submission under the submit
//! lock, waiting for it (blocking with the poll timeout, or as a future the context's poller
//! thread completes) and mapping the output and counts back through a pool of staging buffers.

use super::buffers::Encoded;
use super::Program;
use crate::error::{Error, Result};
use crate::format::check_batch;
use crate::gpu::device::{Completion, CompletionFuture};
use crate::schedule::batch_chunks;
use std::sync::Arc;

/// What a run gives back: the outputs, the run counters' counts (summed over the chunks of
/// the batch; empty for a program without counters) and the fixed16 input values clipped.
pub(crate) struct RunOutput {
    pub output: Vec<f32>,
    pub counts: Vec<u64>,
    pub inputs_clipped: u64,
}

impl RunOutput {
    fn new(capacity: usize) -> Self {
        RunOutput {
            output: Vec::with_capacity(capacity),
            counts: Vec::new(),
            inputs_clipped: 0,
        }
    }

    /// Adds one chunk's outputs and counts.
    fn add(&mut self, (output, counts): (Vec<f32>, Vec<u32>), clipped: u64) {
        self.output.extend(output);
        self.counts.resize(self.counts.len().max(counts.len()), 0);
        for (a, &b) in self.counts.iter_mut().zip(&counts) {
            *a += b as u64;
        }
        self.inputs_clipped += clipped;
    }
}

impl Program {
    /// Bytes of the counts copied after the output.
    fn count_bytes(&self) -> u64 {
        self.counters.as_ref().map_or(0, |c| c.read_bytes())
    }

    fn take_staging(&self, size: u64) -> wgpu::Buffer {
        let mut pool = self.staging.lock().unwrap_or_else(|e| e.into_inner());
        match pool.iter().position(|b| b.size() >= size) {
            Some(i) => pool.swap_remove(i),
            None => self.ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("eie/gpu/readback"),
                size: (self.output_bytes(self.max_batch) + self.count_bytes()).max(size),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        }
    }

    /// Uploads one chunk and starts the run counters, records the whole model and a copy of the
    /// output (then of the counts) to a staging buffer, and submits, all under the submit lock
    /// so concurrent callers never interleave their uploads and runs. Returns the bytes to map.
    pub(super) fn submit_chunk(
        &self,
        input: &Encoded,
        batch: usize,
    ) -> Result<(wgpu::SubmissionIndex, wgpu::Buffer, u64)> {
        self.ctx.check()?;
        let out_bytes = self.output_bytes(batch);
        let size = out_bytes + self.count_bytes();
        let staging = self.take_staging(size);
        let _g = self.submit.lock().unwrap_or_else(|e| e.into_inner());
        let queue = self.ctx.queue();
        queue.write_buffer(&self.input, 0, &input.values);
        if let Some((offset, bits)) = &input.bits {
            queue.write_buffer(&self.input, *offset, bits);
        }
        // Queue writes take effect before the next submission's commands (this one's, under
        // the lock) and after every earlier submission's.
        if let Some(c) = &self.counters {
            let mut start = vec![0u32; c.words];
            start[0] = batch as u32;
            queue.write_buffer(&c.buffer, 0, bytemuck::cast_slice(&start));
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
        if let Some(c) = &self.counters {
            enc.copy_buffer_to_buffer(&c.buffer, 4, &staging, out_bytes, c.read_bytes());
        }
        let idx = queue.submit([enc.finish()]);
        Ok((idx, staging, size))
    }

    /// Copies the mapped result (outputs, then counts) out, unmaps and returns the staging
    /// buffer to the pool.
    pub(super) fn read_staging(
        &self,
        staging: wgpu::Buffer,
        size: u64,
        batch: usize,
    ) -> Result<(Vec<f32>, Vec<u32>)> {
        let out = {
            let view = staging
                .get_mapped_range(..size)
                .map_err(|e| Error::Gpu(format!("reading back the output: {e}")))?;
            let (values, counts) = view.split_at(self.output_bytes(batch) as usize);
            let counts = counts
                .chunks_exact(4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                .collect();
            (self.decode(values, batch), counts)
        };
        staging.unmap();
        self.staging
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(staging);
        Ok(out)
    }

    /// Starts mapping the first `size` bytes of `staging` for reading; the completion is set
    /// when the device has finished with it.
    pub(super) fn map(staging: &wgpu::Buffer, size: u64) -> Arc<Completion> {
        let c = Completion::new();
        let c2 = c.clone();
        staging.map_async(wgpu::MapMode::Read, ..size, move |r| {
            c2.complete(r.map_err(|e| Error::Gpu(format!("mapping the output: {e}"))))
        });
        c
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn run_chunk(&self, x: &[f32], out: &mut RunOutput) -> Result<()> {
        let batch = x.len() / self.in_size;
        let encoded = self.encode(x);
        let (idx, staging, size) = self.submit_chunk(&encoded, batch)?;
        let c = Self::map(&staging, size);
        self.ctx.wait_for(idx, &c)?;
        out.add(self.read_staging(staging, size, batch)?, encoded.clipped);
        Ok(())
    }

    /// Runs a batch, blocking the calling thread (at most the poll timeout per chunk).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        Ok(self.run_counted(input)?.output)
    }

    /// [`run`](Self::run) with the run's counts.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn run_counted(&self, input: &[f32]) -> Result<RunOutput> {
        let batch = check_batch(self.in_size, input)?;
        let mut out = RunOutput::new(batch * self.out_size);
        for (s, n) in batch_chunks(batch, self.max_batch) {
            self.run_chunk(&input[s * self.in_size..(s + n) * self.in_size], &mut out)?;
        }
        Ok(out)
    }

    /// Runs a batch without blocking: the upload, submission and mapping of each chunk are
    /// handed to the context's submission thread, the device is polled by its poller thread,
    /// and the caller only awaits. A lost device is [`Error::DeviceLost`] here as on the
    /// blocking path.
    pub(crate) async fn run_async(self: &Arc<Self>, input: &[f32]) -> Result<Vec<f32>> {
        Ok(self.run_async_counted(input).await?.output)
    }

    /// [`run_async`](Self::run_async) with the run's counts.
    pub(crate) async fn run_async_counted(self: &Arc<Self>, input: &[f32]) -> Result<RunOutput> {
        let batch = check_batch(self.in_size, input)?;
        let mut out = RunOutput::new(batch * self.out_size);
        for (s, n) in batch_chunks(batch, self.max_batch) {
            let encoded = self.encode(&input[s * self.in_size..(s + n) * self.in_size]);
            let clipped = encoded.clipped;
            let program = self.clone();
            let (staging, size, c) = self
                .ctx
                .hand_off(move || {
                    let (_idx, staging, size) = program.submit_chunk(&encoded, n)?;
                    let c = Self::map(&staging, size);
                    program.ctx.watch(c.clone());
                    Ok((staging, size, c))
                })
                .await?;
            if let Err(e) = CompletionFuture(c).await {
                // A device lost while this run was in flight says so, not "mapping failed".
                self.ctx.check()?;
                return Err(e);
            }
            self.ctx.check()?;
            let program = self.clone();
            out.add(
                self.ctx
                    .hand_off(move || program.read_staging(staging, size, n))
                    .await?,
                clipped,
            );
        }
        Ok(out)
    }
}
