//! Measuring a program: GPU time from timestamp queries (around back-to-back runs in one
//! compute pass, and between layers where the device allows), the wall time of those
//! submissions and of whole calls, and pipelined single-frame runs.

use super::buffers::Encoded;
use super::Program;
use crate::error::{Error, Result};
use crate::format::check_batch;
use crate::gpu::device::Completion;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Timing options of [`GpuEngine::time`](crate::gpu::GpuEngine::time) and
/// [`BaselineEngine::time`](crate::gpu::BaselineEngine::time): `Default` is 10 samples of 10 runs.
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

/// Measured times, microseconds: what [`GpuEngine::time`](crate::gpu::GpuEngine::time) and
/// [`BaselineEngine::time`](crate::gpu::BaselineEngine::time) return.
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

/// Result of [`GpuEngine::pipelined`](crate::gpu::GpuEngine::pipelined) and
/// [`BaselineEngine::pipelined`](crate::gpu::BaselineEngine::pipelined).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PipelineTiming {
    /// Frames completed per second of wall time.
    pub frames_per_s: f64,
    /// Per frame: submit to result on the host, microseconds.
    pub latency_us: Vec<f64>,
}

impl Program {
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

    /// Times the model on `inputs` (each at most `max_batch` inputs): GPU time from timestamp
    /// queries around `K` back-to-back runs in one compute pass (and between layers when the
    /// device allows), the wall time of that submission, and end-to-end wall time of `run`.
    ///
    /// Sample `s` runs `inputs[s % inputs.len()]` (all of one batch size), so that a
    /// cache-resident input does not flatter a kernel; the one warm-up runs the first.
    pub(crate) fn time(&self, inputs: &[&[f32]], opts: &TimingOptions) -> Result<Timing> {
        let Some(&input) = inputs.first() else {
            return Err(Error::InvalidArgument(
                "timing needs at least one input".into(),
            ));
        };
        let batch = check_batch(self.in_size, input)?;
        if batch > self.max_batch {
            return Err(Error::InvalidArgument(format!(
                "timing a batch of {batch} on an engine built for at most {}",
                self.max_batch
            )));
        }
        for x in &inputs[1..] {
            if check_batch(self.in_size, x)? != batch {
                return Err(Error::Shape(format!(
                    "timing inputs of different batch sizes: {batch} and {}",
                    x.len() / self.in_size.max(1)
                )));
            }
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
        // clocks), on the first input.
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
        for s in 0..samples {
            // The call's upload is the input the timed passes below read.
            let start = Instant::now();
            self.run(inputs[s % inputs.len()])?;
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
            let (out, _) = self.read_staging(staging, size, batch)?;
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
