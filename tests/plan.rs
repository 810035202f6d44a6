//! The GPU schedule without a GPU (`eie plan`): on the paper's nine layers at batch 1 the EIE
//! kernel's dispatches follow its column slices and its pointers, bitmaps and codebooks stay
//! within its entry bytes; every row has a modelled time on the chosen device profile; the
//! command's JSON has the documented shape; and the latency model's fit
//! (docs/measurements/latency-fit.json, `cargo run --release --example latency_fit`) is what
//! the profiles carry and what refitting its samples gives.

mod common;

use common::{eie, s};
use eie::schedule::cost::fit::{self, FitReport, Sample};
use eie::schedule::cost::latency::DeviceProfile;
use eie::schedule::cost::{model_costs, model_costs_on};
use eie::schedule::{DeviceLimits, EieLayerPlan, PePlan};
use std::path::Path;

/// A layer beyond a device's limits is a structured error carrying the numbers, for the
/// planner and for the dense baseline's row tiles.
#[test]
fn layers_beyond_the_device_limits_are_limit_errors() {
    let tiny = DeviceLimits {
        max_compute_workgroups_per_dimension: 4,
        max_storage_buffer_binding_size: 1024,
        max_buffer_size: 1024,
        ..DeviceLimits::default()
    };
    match eie::schedule::pe_bounds(4096, 64, &tiny) {
        Err(eie::Error::LimitExceeded { value, limit, .. }) => assert!(value > limit, "{value}"),
        other => panic!("{other:?}"),
    }
    match eie::schedule::dense_tiles(8, 4096, &tiny) {
        Err(eie::Error::LimitExceeded { value, limit, .. }) => {
            assert_eq!((value, limit), (16384, 1024))
        }
        other => panic!("{other:?}"),
    }
    // Within the limits: bounds and tiles.
    assert!(eie::schedule::pe_bounds(64, 64, &DeviceLimits::default()).is_ok());
}

#[test]
fn paper_layers_dispatches_metadata_and_modelled_time() {
    let limits = DeviceLimits::default();
    for p in &eie::paper::PAPER_LAYERS {
        let model = p.model(64, eie::paper::DEFAULT_SEED).unwrap();
        let x = p.input(1, eie::paper::DEFAULT_SEED);
        let costs = model_costs(&model, &x, PePlan::Auto, &limits).unwrap();
        let eie = costs
            .iter()
            .find(|c| c.kernel == "gpu-eie-columns/f32")
            .expect("the f32 EIE column walk is planned");
        let (rows, cols) = (model.layers()[0].rows(), model.layers()[0].cols());
        let plan = EieLayerPlan::new(
            PePlan::Auto,
            rows,
            cols,
            64,
            model.layers()[0].entry_bytes(),
            &limits,
        )
        .unwrap();
        // The walk, and the reduction of the partial sums when the columns are split.
        assert_eq!(eie.dispatches, plan.single.dispatches(), "{}", p.name);
        assert_eq!(eie.pes_slices, Some((plan.pes, plan.single.slices)));
        assert!(eie.bytes.entries > 0, "{}", p.name);
        // Partial sums count as metadata (and alone in `partial_sums`); what locates the
        // entries (pointers, bitmaps, codebooks, bias) stays within the entry bytes.
        assert_eq!(eie.bytes.partial_sums > 0, plan.single.slices > 1);
        assert!(eie.bytes.metadata >= eie.bytes.partial_sums);
        assert!(
            eie.bytes.metadata - eie.bytes.partial_sums <= eie.bytes.entries,
            "{}: metadata {} (of which partial sums {}) > entries {}",
            p.name,
            eie.bytes.metadata,
            eie.bytes.partial_sums,
            eie.bytes.entries
        );
        assert_eq!(
            eie.metadata_ratio(),
            eie.bytes.metadata as f64 / eie.bytes.entries as f64
        );
        // The plain CSR kernel reads every weight; EIE only the non-zero columns' entries.
        let csr = costs.iter().find(|c| c.kernel == "gpu-csr/f32").unwrap();
        assert!(eie.bytes.entries < csr.bytes.entries, "{}", p.name);
        // No profile applied: no modelled time.
        assert!(costs.iter().all(|c| c.modelled_us.is_none()));
        for profile in [DeviceProfile::H100, DeviceProfile::LAVAPIPE] {
            let on = model_costs_on(&model, &x, PePlan::Auto, &profile).unwrap();
            assert_eq!(on.len(), costs.len());
            for c in &on {
                let us = c.modelled_us.unwrap();
                assert!(us.is_finite() && us > 0.0, "{} {}: {us}", p.name, c.kernel);
                // At least the dispatches' cost.
                assert!(us >= c.dispatches as f64 * profile.dispatch_us * 0.999);
            }
        }
    }
}

#[test]
fn more_dispatches_model_slower_and_more_work_never_faster() {
    let p = &eie::paper::PAPER_LAYERS[6];
    let layer = p.generate(64, eie::paper::DEFAULT_SEED).unwrap();
    let x = p.input(1, eie::paper::DEFAULT_SEED);
    for profile in [DeviceProfile::H100, DeviceProfile::LAVAPIPE] {
        // The dense kernel in one, two and four row tiles (dispatches).
        let t: Vec<f64> = [1, 2, 4]
            .iter()
            .map(|&k| profile.modelled_us(&eie::schedule::cost::dense(&layer, &x, k).unwrap().work))
            .collect();
        assert!(t[0] < t[1] && t[1] < t[2], "{}: {t:?}", profile.name);
        // Batch 4 reads the same weights for four inputs: never faster than batch 1.
        let x4: Vec<f32> = (0..4).flat_map(|_| x.iter().copied()).collect();
        for k in [
            eie::schedule::cost::csr(&layer, &x).unwrap(),
            eie::schedule::cost::csr(&layer, &x4).unwrap(),
        ]
        .windows(2)
        {
            assert!(profile.modelled_us(&k[1].work) >= profile.modelled_us(&k[0].work));
        }
        // The EIE column walk on an input with more non-zero activations (a superset).
        let limits = profile.limits();
        let plan = EieLayerPlan::new(
            PePlan::Auto,
            layer.rows(),
            layer.cols(),
            layer.pes(),
            layer.entry_bytes(),
            &limits,
        )
        .unwrap();
        let sparse: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(j, &v)| if j % 2 == 0 { v } else { 0.0 })
            .collect();
        let eie_t = |x: &[f32]| {
            let l = layer.with_pes(plan.pes).unwrap();
            let c = eie::schedule::cost::eie(&l, &plan, x, eie::Precision::F32).unwrap();
            (c.bytes.entries, profile.modelled_us(&c.work))
        };
        let (e0, t0) = eie_t(&sparse);
        let (e1, t1) = eie_t(&x);
        assert!(e1 > e0 && t1 >= t0, "{}: {t0} then {t1}", profile.name);
    }
}

#[test]
fn plan_command_prints_the_documented_json_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.npy");
    let m = dir.path().join("m.eie");
    let dense = eie::synth::dense_layer("fc", 96, 200, true, 3);
    eie::import::write_npy(&w, &[96, 200], &dense.weights).unwrap();
    let ok = eie(&["compress", s(&w), "-o", s(&m), "--density", "0.2", "--relu"]);
    assert!(ok.status.success());
    for device in ["h100", "lavapipe", "auto", "H100"] {
        let out = eie(&["plan", s(&m), "--batch", "3", "--json", "--device", device]);
        assert!(
            out.status.success(),
            "{device}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let name = v["device"]["name"].as_str().unwrap();
        assert!(device == "auto" || name == device.to_lowercase(), "{name}");
        let layers = v["layers"].as_array().unwrap();
        assert_eq!(
            layers.len(),
            7,
            "three EIE precisions on the planner's walk, both walks forced, dense and CSR"
        );
        for l in layers {
            assert_eq!(l["batch"], 3);
            assert!(l["workgroups"].as_u64().unwrap() > 0);
            for k in [
                "entries",
                "metadata",
                "activations",
                "output",
                "partial_sums",
            ] {
                assert!(l["bytes"][k].is_u64(), "{k}");
            }
            assert!(l["entries_per_lane"]["max"].is_u64());
            assert!(l["entries_per_lane"]["mean"].is_f64());
            let us = l["modelled_us"].as_f64().expect("modelled_us in every row");
            assert!(us > 0.0 && us.is_finite());
            assert_eq!(
                l["work"]["dispatches"].as_array().unwrap().len() as u64,
                l["dispatches"].as_u64().unwrap()
            );
        }
        let names: Vec<&str> = layers
            .iter()
            .map(|l| l["kernel"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "gpu-eie/f32",
                "gpu-eie/fixed16",
                "gpu-eie/f16",
                "gpu-eie-columns/f32",
                "gpu-eie-rows/f32",
                "gpu-dense/f32",
                "gpu-csr/f32"
            ]
        );
        // The column walk: the walk, and the reduction where columns are split.
        let d = layers[3]["dispatches"].as_u64().unwrap();
        assert!(d == 1 || d == 2, "{d}");
        // The planner's walk: by columns on a GPU, by rows on a CPU adapter.
        let planned = if name == "lavapipe" { 4 } else { 3 };
        assert_eq!(layers[0]["bytes"], layers[planned]["bytes"], "{name}");
    }
    // The table names its profile.
    let out = eie(&["plan", s(&m), "--device", "lavapipe"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("profile `lavapipe`"), "{text}");
    assert!(text.contains("modelled µs (lavapipe)"), "{text}");
    // Bad arguments are one-line errors.
    let bad = eie(&["plan", s(&m), "--batch", "0"]);
    assert!(!bad.status.success());
    let bad = eie(&["plan", s(&m), "--device", "a100"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("a100") && err.contains("h100") && err.contains("lavapipe"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

fn recorded() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/measurements/latency-fit.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12)
}

#[test]
fn profiles_carry_the_recorded_fit_and_refitting_reproduces_it() {
    let doc = recorded();
    for shape in [DeviceProfile::H100, DeviceProfile::LAVAPIPE] {
        let d = &doc[shape.name];
        let samples: Vec<Sample> = serde_json::from_value(d["samples"].clone()).unwrap();
        let report: FitReport = serde_json::from_value(d["report"].clone()).unwrap();
        // The profile in the code is the recorded fit (to the digits written down).
        for (got, want) in [
            (shape.dispatch_us, report.dispatch_us),
            (shape.round_trip_us, report.round_trip_us),
            (shape.barrier_us, report.barrier_us),
            (shape.step_ns, report.step_ns),
            (shape.bandwidth_gb_s, report.bandwidth_gb_s),
        ] {
            assert!(
                close(got, want, 5e-3) || (got - want).abs() < 1e-4,
                "{}: {got} in the code, {want} fitted",
                shape.name
            );
        }
        // Refitting the recorded samples gives the recorded errors, per family and held out.
        let (_, again) = fit::fit(&samples, &shape).unwrap();
        for (a, b) in again
            .fit
            .iter()
            .zip(&report.fit)
            .chain(again.held_out.iter().zip(&report.held_out))
        {
            assert_eq!(a.family, b.family);
            assert_eq!(a.n, b.n);
            assert!(
                (a.mean_pct - b.mean_pct).abs() < 0.5 && (a.max_pct - b.max_pct).abs() < 1.0,
                "{} {}: {a:?} vs recorded {b:?}",
                shape.name,
                a.family
            );
        }
        // The profile's own errors on the samples are the recorded ones.
        for (a, b) in fit::errors(&samples, &shape).iter().zip(&report.fit) {
            assert!((a.mean_pct - b.mean_pct).abs() < 1.0, "{a:?} vs {b:?}");
        }
    }
}

#[test]
fn recorded_samples_are_what_the_cost_model_computes() {
    // The work stored with each sample is today's cost model's: recomputed for the smallest
    // layer at batch 1, every family of every device.
    let doc = recorded();
    let p = eie::paper::find("NT-LSTM").unwrap();
    let layer = p.generate(64, eie::paper::DEFAULT_SEED).unwrap();
    let input = fit::bench_input(layer.cols(), p.act_density, 1);
    let measurements = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/measurements");
    let mut checked = 0;
    for shape in [DeviceProfile::H100, DeviceProfile::LAVAPIPE] {
        let samples: Vec<Sample> =
            serde_json::from_value(doc[shape.name]["samples"].clone()).unwrap();
        let sources = match shape.name {
            "h100" => fit::h100_sources(&measurements),
            _ => fit::lavapipe_sources(&measurements),
        };
        for s in samples
            .iter()
            .filter(|s| s.layer == "NT-LSTM" && s.batch == 1)
        {
            let family = sources
                .iter()
                .flat_map(|src| src.kernels.iter())
                .find(|(_, f)| f.name() == s.family)
                .map(|(_, f)| *f)
                .unwrap();
            let work = family.work(&layer, &input, &shape).unwrap();
            assert_eq!(work.bytes, s.work.bytes, "{} {}", shape.name, s.family);
            assert_eq!(work.dispatches.len(), s.work.dispatches.len());
            for (a, b) in work.dispatches.iter().zip(&s.work.dispatches) {
                assert_eq!(a.workgroups, b.workgroups, "{} {}", shape.name, s.family);
                assert!(close(a.busiest.round_trips, b.busiest.round_trips, 1e-9));
                assert!(close(a.mean.lane_steps, b.mean.lane_steps, 1e-9));
            }
            checked += 1;
        }
    }
    assert!(checked >= 7, "{checked} samples checked");
}
