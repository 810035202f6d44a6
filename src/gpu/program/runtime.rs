//! Running a program: uploading a chunk of inputs, recording every layer and the output copy
//! into one submission under the submit lock, waiting for it (blocking with the poll timeout,
//! or as a future the context's poller thread completes) and mapping the output back through a
//! pool of staging buffers.

use super::buffers::Encoded;
use super::Program;
use crate::error::{Error, Result};
use crate::format::check_batch;
use crate::gpu::device::{Completion, CompletionFuture};
use crate::schedule::batch_chunks;
use std::sync::Arc;

impl Program {
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
    pub(super) fn submit_chunk(
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
    pub(super) fn read_staging(
        &self,
        staging: wgpu::Buffer,
        size: u64,
        batch: usize,
    ) -> Result<Vec<f32>> {
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
    fn run_chunk(&self, x: &[f32]) -> Result<Vec<f32>> {
        let batch = x.len() / self.in_size;
        let (idx, staging, size) = self.submit_chunk(&self.encode(x), batch)?;
        let c = Self::map(&staging, size);
        self.ctx.wait_for(idx, &c)?;
        self.read_staging(staging, size, batch)
    }

    /// Runs a batch, blocking the calling thread (at most the poll timeout per chunk).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        let batch = check_batch(self.in_size, input)?;
        let mut out = Vec::with_capacity(batch * self.out_size);
        for (s, n) in batch_chunks(batch, self.max_batch) {
            out.extend(self.run_chunk(&input[s * self.in_size..(s + n) * self.in_size])?);
        }
        Ok(out)
    }

    /// Runs a batch without blocking: the upload, submission and mapping of each chunk are
    /// handed to the context's submission thread, the device is polled by its poller thread,
    /// and the caller only awaits. A lost device is [`Error::DeviceLost`] here as on the
    /// blocking path.
    pub(crate) async fn run_async(self: &Arc<Self>, input: &[f32]) -> Result<Vec<f32>> {
        let batch = check_batch(self.in_size, input)?;
        let mut out = Vec::with_capacity(batch * self.out_size);
        for (s, n) in batch_chunks(batch, self.max_batch) {
            let encoded = self.encode(&input[s * self.in_size..(s + n) * self.in_size]);
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
            out.extend(
                self.ctx
                    .hand_off(move || program.read_staging(staging, size, n))
                    .await?,
            );
        }
        Ok(out)
    }
}
