//! Modelled time of a kernel on a layer (`eie plan`'s `modelled µs`): a few device constants
//! applied to what [`super`] counts for each dispatch.
//!
//! For every dispatch of a layer the cost module describes the work of one workgroup as a
//! [`WorkPath`]: the dependent global-memory round trips on its critical path, its workgroup
//! barriers, the steps of its busiest lane (one step per entry decoded, per word of four runs
//! summed, per loop iteration of a streamed row) and the steps of all its lanes together. The
//! model then charges
//!
//! ```text
//! µs = dispatches · dispatch + max(paths, bytes / bandwidth)
//! paths = Σ over dispatches [ (waves − 1) · T(mean workgroup) + T(busiest workgroup) ]
//! T(path) = round trips · round_trip + barriers · barrier
//!           + step · max(busiest lane's steps, resident · workgroup's steps / lanes_per_cu)
//! waves = ceil(workgroups / (compute units · resident workgroups per compute unit))
//! ```
//!
//! where `resident` is the number of workgroups sharing a compute unit (at most
//! [`DeviceProfile::workgroups_per_cu`]): a compute unit advances `lanes_per_cu` lanes at a
//! time, so a workgroup finishes no sooner than its busiest lane, nor sooner than its share of
//! the unit's lanes allows. Bytes are all bytes the kernel reads and writes (entries, metadata
//! with partial sums, activations, outputs; cache hits included) over one effective
//! bandwidth; a kernel takes the longer of its workgroups' paths and its bytes (latency-bound
//! or bandwidth-bound), plus its dispatches. The four time
//! constants and the bandwidth of a profile are fitted to measured runs
//! (`cargo run --release --example latency_fit`, docs/GPU.md "The latency model"); the
//! compute units, residency and lanes per unit are the device's own figures.
//!
//! [`DeviceProfile::named`] picks a profile and [`DeviceProfile::modelled_us`] applies it to a
//! [`LatencyWork`] (a [`super::KernelCost`]'s `work`).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The work of one workgroup of a dispatch, as the latency model sees it.
///
/// Part of a [`DispatchWork`]; [`PathStats`] collects them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkPath {
    /// Dependent global-memory round trips on the critical path (a load whose address or use
    /// waits on the previous one: bitmap word → list → pointer pair → entry word ...).
    pub round_trips: f64,
    /// Workgroup barriers passed.
    pub barriers: f64,
    /// Steps of the busiest lane (entries decoded, words of runs summed, loop iterations).
    pub lane_steps: f64,
    /// Steps of all lanes of the workgroup together.
    pub workgroup_steps: f64,
}

impl WorkPath {
    /// Field-wise maximum (an upper bound on the busiest workgroup).
    ///
    /// See [`WorkPath`].
    pub fn max(self, o: WorkPath) -> WorkPath {
        WorkPath {
            round_trips: self.round_trips.max(o.round_trips),
            barriers: self.barriers.max(o.barriers),
            lane_steps: self.lane_steps.max(o.lane_steps),
            workgroup_steps: self.workgroup_steps.max(o.workgroup_steps),
        }
    }

    /// Field-wise sum.
    ///
    /// See [`WorkPath`].
    pub fn plus(self, o: WorkPath) -> WorkPath {
        WorkPath {
            round_trips: self.round_trips + o.round_trips,
            barriers: self.barriers + o.barriers,
            lane_steps: self.lane_steps + o.lane_steps,
            workgroup_steps: self.workgroup_steps + o.workgroup_steps,
        }
    }

    /// Every field multiplied by `k`.
    ///
    /// See [`WorkPath`].
    pub fn scale(self, k: f64) -> WorkPath {
        WorkPath {
            round_trips: self.round_trips * k,
            barriers: self.barriers * k,
            lane_steps: self.lane_steps * k,
            workgroup_steps: self.workgroup_steps * k,
        }
    }
}

/// One dispatch of a kernel on a layer: its workgroups and their work.
///
/// Part of a [`LatencyWork`]; [`PathStats::dispatch`] or [`DispatchWork::uniform`] makes one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DispatchWork {
    /// Workgroups launched.
    pub workgroups: u64,
    /// The busiest workgroup (field-wise maximum over the workgroups).
    pub busiest: WorkPath,
    /// The mean workgroup.
    pub mean: WorkPath,
}

impl DispatchWork {
    /// A dispatch of `workgroups` identical workgroups.
    ///
    /// See [`PathStats`] for workgroups that differ.
    pub fn uniform(workgroups: u64, path: WorkPath) -> DispatchWork {
        DispatchWork {
            workgroups,
            busiest: path,
            mean: path,
        }
    }
}

/// Collects the paths of a dispatch's workgroups one by one.
///
/// [`PathStats::dispatch`] gives the [`DispatchWork`].
#[derive(Clone, Debug, Default)]
pub struct PathStats {
    n: u64,
    sum: WorkPath,
    max: WorkPath,
}

impl PathStats {
    /// Adds one workgroup.
    ///
    /// See [`PathStats::push_n`].
    pub fn push(&mut self, p: WorkPath) {
        self.n += 1;
        self.sum = self.sum.plus(p);
        self.max = self.max.max(p);
    }

    /// Adds `n` workgroups with the same path.
    ///
    /// See [`PathStats::push`].
    pub fn push_n(&mut self, p: WorkPath, n: u64) {
        if n > 0 {
            self.n += n;
            self.sum = self.sum.plus(p.scale(n as f64));
            self.max = self.max.max(p);
        }
    }

    /// The dispatch of the workgroups pushed.
    ///
    /// See [`DispatchWork`].
    pub fn dispatch(&self) -> DispatchWork {
        DispatchWork {
            workgroups: self.n,
            busiest: self.max,
            mean: if self.n == 0 {
                WorkPath::default()
            } else {
                self.sum.scale(1.0 / self.n as f64)
            },
        }
    }
}

/// What the model charges for, per run of a kernel on a layer: the dispatches and the bytes.
///
/// The `work` of a [`super::KernelCost`]; [`DeviceProfile::modelled_us`] turns it into µs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyWork {
    /// The layer's dispatches, each dependent on the one before.
    pub dispatches: Vec<DispatchWork>,
    /// Bytes read and written, all categories.
    pub bytes: u64,
}

/// The five terms of [`LatencyWork`] that the fitted constants multiply, for one device's
/// residency and lanes: dispatches, round trips, barriers, lane steps and bytes (each summed
/// over the dispatches, waves included). [`combine`] turns them and
/// [`DeviceProfile::constants`] into µs.
pub fn terms(work: &LatencyWork, p: &DeviceProfile) -> [f64; 5] {
    let mut t = [0.0; 5];
    let slots = (p.compute_units as u64 * p.workgroups_per_cu as u64).max(1);
    for d in &work.dispatches {
        if d.workgroups == 0 {
            continue;
        }
        let waves = d.workgroups.div_ceil(slots) as f64;
        let per_cu = d.workgroups.div_ceil(p.compute_units.max(1) as u64) as f64;
        let resident = per_cu.min(p.workgroups_per_cu as f64).max(1.0);
        let steps = |w: &WorkPath| -> f64 {
            w.lane_steps
                .max(resident * w.workgroup_steps / p.lanes_per_cu.max(1) as f64)
        };
        t[0] += 1.0;
        t[1] += (waves - 1.0) * d.mean.round_trips + d.busiest.round_trips;
        t[2] += (waves - 1.0) * d.mean.barriers + d.busiest.barriers;
        t[3] += (waves - 1.0) * steps(&d.mean) + steps(&d.busiest);
    }
    t[4] = work.bytes as f64;
    t
}

/// Modelled µs from [`terms`] `t` and constants `c`:
/// `t0·c0 + max(t1·c1 + t2·c2 + t3·c3, t4·c4)`.
pub fn combine(t: &[f64; 5], c: &[f64; 5]) -> f64 {
    t[0] * c[0] + (t[1] * c[1] + t[2] * c[2] + t[3] * c[3]).max(t[4] * c[4])
}

/// A device as the latency model sees it: its shape (compute units, resident workgroups,
/// lanes) and five fitted costs.
///
/// [`DeviceProfile::named`] picks one ([`DeviceProfile::H100`], [`DeviceProfile::LAVAPIPE`]);
/// [`super::fit::fit`] fits its costs. The [module docs](self) give the formula.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DeviceProfile {
    /// Name (`h100`, `lavapipe`).
    pub name: &'static str,
    /// Compute units (streaming multiprocessors; CPU threads for a CPU adapter).
    pub compute_units: u32,
    /// Workgroups of 256 invocations resident on one compute unit at once.
    pub workgroups_per_cu: u32,
    /// Lanes one compute unit advances per step (FP32 lanes; SIMD width for a CPU adapter).
    pub lanes_per_cu: u32,
    /// Whether the engine schedules for a CPU adapter on it (fewer, larger workgroups, no
    /// input tiles: [`crate::schedule::EIE_TARGET_WORKGROUPS_CPU`]).
    pub cpu_adapter: bool,
    /// Largest storage binding, bytes (how many row tiles, so dispatches, a dense layer
    /// needs).
    pub max_binding: u64,
    /// Workgroup memory per workgroup, bytes (the EIE kernel's accumulators, so its column
    /// groups and tile).
    pub workgroup_bytes: u32,
    /// Fitted: cost of one dependent dispatch inside a compute pass, µs.
    pub dispatch_us: f64,
    /// Fitted: one dependent global-memory round trip, µs.
    pub round_trip_us: f64,
    /// Fitted: one workgroup barrier, µs.
    pub barrier_us: f64,
    /// Fitted: one lane step, ns.
    pub step_ns: f64,
    /// Fitted: effective bandwidth over all bytes, GB/s.
    pub bandwidth_gb_s: f64,
}

/// The profile names `--device` accepts (besides `auto`).
///
/// See [`DeviceProfile::named`].
pub const PROFILE_NAMES: [&str; 2] = ["h100", "lavapipe"];

impl DeviceProfile {
    /// NVIDIA H100 (SXM, 132 SMs; 8 workgroups of 256 invocations and 128 FP32 lanes per SM),
    /// costs fitted to the recorded H100 runs of 2026-11-27 (three first-generation EIE
    /// kernels, dense and CSR; BENCHMARKS.md "Latency model"): the dispatch cost is measured
    /// alone (the device README); the barrier cost is not resolved by those runs (at the low
    /// end of its range); the bandwidth is the lowest at which no measured run is
    /// bandwidth-bound (all bytes, cache hits included).
    ///
    /// See [`DeviceProfile::named`].
    pub const H100: DeviceProfile = DeviceProfile {
        name: "h100",
        compute_units: 132,
        workgroups_per_cu: 8,
        lanes_per_cu: 128,
        cpu_adapter: false,
        max_binding: 1 << 31,
        workgroup_bytes: 49152,
        dispatch_us: 2.3,
        round_trip_us: 0.42224,
        barrier_us: 3.0721e-7,
        step_ns: 28.121,
        bandwidth_gb_s: 19238.0,
    };

    /// lavapipe (Mesa's CPU Vulkan driver) on the 2-core development machine: one workgroup
    /// per thread, 8 lanes per step (256-bit SIMD); costs fitted to `eie bench` runs there
    /// (docs/measurements/lavapipe-latency-2026-12-02, on a machine shared with other work):
    /// the dispatch cost is measured alone; the round trip is not resolved (memory latency
    /// hides in a CPU's caches and per-lane loops).
    pub const LAVAPIPE: DeviceProfile = DeviceProfile {
        name: "lavapipe",
        compute_units: 2,
        workgroups_per_cu: 1,
        lanes_per_cu: 8,
        cpu_adapter: true,
        max_binding: 1 << 27,
        workgroup_bytes: 32768,
        dispatch_us: 64.0,
        round_trip_us: 6.1442e-6,
        barrier_us: 75.524,
        step_ns: 309.82,
        bandwidth_gb_s: 0.20396,
    };

    /// The profile called `name` (`h100` or `lavapipe`, any case).
    ///
    /// Names from [`PROFILE_NAMES`].
    pub fn named(name: &str) -> Result<DeviceProfile> {
        match name.to_ascii_lowercase().as_str() {
            "h100" => Ok(Self::H100),
            "lavapipe" => Ok(Self::LAVAPIPE),
            other => Err(Error::InvalidArgument(format!(
                "unknown device profile `{other}`: expected one of {}, or auto",
                PROFILE_NAMES.join(", ")
            ))),
        }
    }

    /// The fitted constants in the order of [`terms`]: µs per dispatch, per round trip, per
    /// barrier, per lane step and per byte.
    pub fn constants(&self) -> [f64; 5] {
        [
            self.dispatch_us,
            self.round_trip_us,
            self.barrier_us,
            self.step_ns * 1e-3,
            1e-3 / self.bandwidth_gb_s,
        ]
    }

    /// This profile with the constants `c` (in the order of [`DeviceProfile::constants`]).
    pub fn with_constants(&self, c: [f64; 5]) -> DeviceProfile {
        DeviceProfile {
            dispatch_us: c[0],
            round_trip_us: c[1],
            barrier_us: c[2],
            step_ns: c[3] * 1e3,
            bandwidth_gb_s: 1e-3 / c[4],
            ..*self
        }
    }

    /// The planner limits the engine uses on this device: the WebGPU defaults with the
    /// device's storage binding, and a CPU adapter's workgroup target, batch tile and row-walk
    /// lanes where it is one.
    ///
    /// See [`crate::schedule::DeviceLimits`].
    pub fn limits(&self) -> crate::schedule::DeviceLimits {
        let l = crate::schedule::DeviceLimits {
            max_storage_buffer_binding_size: self.max_binding,
            max_buffer_size: self.max_binding.max(1 << 28),
            max_compute_workgroup_storage_size: self.workgroup_bytes,
            ..crate::schedule::DeviceLimits::default()
        };
        if self.cpu_adapter {
            l.for_cpu_adapter()
        } else {
            l
        }
    }

    /// Modelled µs of `work` on this device.
    ///
    /// [`DeviceProfile::breakdown`] splits it into its parts.
    pub fn modelled_us(&self, work: &LatencyWork) -> f64 {
        combine(&terms(work, self), &self.constants())
    }

    /// The modelled µs split into its parts: dispatches, workgroup paths (round trips,
    /// barriers, lane steps) and bytes.
    ///
    /// See [`Breakdown::total`].
    pub fn breakdown(&self, work: &LatencyWork) -> Breakdown {
        let t = terms(work, self);
        let c = self.constants();
        Breakdown {
            dispatch_us: t[0] * c[0],
            round_trip_us: t[1] * c[1],
            barrier_us: t[2] * c[2],
            step_us: t[3] * c[3],
            bytes_us: t[4] * c[4],
        }
    }
}

/// [`DeviceProfile::modelled_us`] by term (the time is dispatches plus the larger of the
/// paths' sum and the bytes' time: [`Breakdown::total`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Breakdown {
    /// Dispatches.
    pub dispatch_us: f64,
    /// Round trips on the workgroups' critical paths, over the waves.
    pub round_trip_us: f64,
    /// Barriers, over the waves.
    pub barrier_us: f64,
    /// Lane steps, over the waves.
    pub step_us: f64,
    /// Bytes over bandwidth.
    pub bytes_us: f64,
}

impl Breakdown {
    /// The modelled µs: dispatches plus the larger of the paths and the bytes.
    ///
    /// See [`DeviceProfile::breakdown`].
    pub fn total(&self) -> f64 {
        self.dispatch_us + (self.round_trip_us + self.barrier_us + self.step_us).max(self.bytes_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(rt: f64, bar: f64, lane: f64, wg: f64) -> WorkPath {
        WorkPath {
            round_trips: rt,
            barriers: bar,
            lane_steps: lane,
            workgroup_steps: wg,
        }
    }

    #[test]
    fn more_work_is_never_faster() {
        let p = DeviceProfile::H100;
        let base = LatencyWork {
            dispatches: vec![DispatchWork::uniform(1000, path(4.0, 10.0, 20.0, 200.0))],
            bytes: 1 << 16,
        };
        let t0 = p.modelled_us(&base);
        assert!(t0 > 0.0);
        for f in 0..4 {
            let mut w = base.clone();
            let d = &mut w.dispatches[0];
            match f {
                0 => d.busiest.round_trips += 1.0,
                1 => d.busiest.barriers += 1.0,
                2 => d.busiest.lane_steps += 5.0,
                _ => d.workgroups *= 3,
            }
            // Barriers may cost next to nothing on a fitted profile, never less.
            if f == 1 {
                assert!(p.modelled_us(&w) >= t0, "term {f}");
            } else {
                assert!(p.modelled_us(&w) > t0, "term {f}");
            }
        }
        let mut two = base.clone();
        two.dispatches
            .push(DispatchWork::uniform(1, WorkPath::default()));
        assert!(p.modelled_us(&two) >= t0 + p.dispatch_us * 0.999);
        // Bytes count once they outweigh the paths.
        let mut more = base.clone();
        more.bytes *= 2;
        assert!(p.modelled_us(&more) >= t0);
        more.bytes = 1 << 40;
        assert!(p.modelled_us(&more) > t0);
        let b = p.breakdown(&base);
        assert!((b.total() - t0).abs() < 1e-9 * t0);
    }

    #[test]
    fn waves_count_resident_workgroups() {
        let p = DeviceProfile::H100;
        let one = LatencyWork {
            dispatches: vec![DispatchWork::uniform(1056, path(1.0, 0.0, 0.0, 0.0))],
            bytes: 0,
        };
        let two = LatencyWork {
            dispatches: vec![DispatchWork::uniform(1057, path(1.0, 0.0, 0.0, 0.0))],
            bytes: 0,
        };
        assert_eq!(terms(&one, &p)[1], 1.0);
        assert_eq!(terms(&two, &p)[1], 2.0);
    }

    #[test]
    fn profiles_parse_and_round_trip_their_constants() {
        assert_eq!(DeviceProfile::named("h100").unwrap(), DeviceProfile::H100);
        assert_eq!(
            DeviceProfile::named("LavaPipe").unwrap(),
            DeviceProfile::LAVAPIPE
        );
        let e = DeviceProfile::named("a100").unwrap_err().to_string();
        assert!(e.contains("a100") && e.contains("h100"), "{e}");
        for p in [DeviceProfile::H100, DeviceProfile::LAVAPIPE] {
            let q = p.with_constants(p.constants());
            for (a, b) in q.constants().iter().zip(p.constants()) {
                assert!((a - b).abs() <= 1e-12 * b.abs());
            }
            assert!(p.constants().iter().all(|c| *c > 0.0 && c.is_finite()));
        }
        assert!(
            DeviceProfile::LAVAPIPE.limits().target_workgroups
                < DeviceProfile::H100.limits().target_workgroups
        );
    }
}
