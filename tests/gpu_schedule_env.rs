//! The schedule override of the environment (`EIE_GPU_SCHEDULE`) reaches engines built with
//! default options, options given in code win over it, and a malformed value is a typed error.
//! In its own test binary (its own process), since every engine reads the variable.
//!
//! Under the harness of `common::gpu::run` (`harness = false`): without an adapter it is
//! reported ignored (the count in the summary), except where a GPU is required (`CI=true` or
//! `EIE_REQUIRE_GPU=1`, as `.ci/run` sets): there it fails.

use eie::format::{Activation, EieLayer, Model, SparseCodes};
use eie::gpu::{EngineOptions, GpuEngine, Walk, SCHEDULE_ENV};

mod common;
use common::gpu::{gpu, gpu_main};

gpu_main!(schedule_override_from_the_environment);

fn schedule_override_from_the_environment() {
    let Some(ctx) = gpu() else { return };
    let codes: Vec<u8> = (0..40 * 300).map(|i| ((i * 7) % 13 % 4) as u8).collect();
    let sc = SparseCodes::from_dense(40, 300, &codes).unwrap();
    let layer = EieLayer::encode(
        &sc,
        vec![0.0, 0.5, -0.25, 1.0],
        2,
        2,
        None,
        Activation::Relu,
    )
    .unwrap();
    let m = Model::new(vec![layer]).unwrap();
    let x: Vec<f32> = (0..300).map(|i| (i % 5) as f32 * 0.1).collect();
    let coded = EngineOptions {
        walk: Some(Walk::Columns),
        ..EngineOptions::default()
    };
    std::env::set_var(SCHEDULE_ENV, "walk=rows,lanes=4,slices=2");
    let rows = GpuEngine::new(ctx.clone(), &m, EngineOptions::default()).unwrap();
    let cols = GpuEngine::new(ctx.clone(), &m, coded).unwrap();
    std::env::set_var(SCHEDULE_ENV, "walk=sideways");
    let bad = GpuEngine::new(ctx.clone(), &m, EngineOptions::default());
    std::env::remove_var(SCHEDULE_ENV);
    assert_eq!(rows.walks(), vec![Walk::Rows]);
    assert_eq!(rows.plans()[0].row_lanes, 4);
    assert_eq!(cols.walks(), vec![Walk::Columns]);
    assert_eq!(cols.plans()[0].single.slices, 2);
    // Both walks give the same layer (up to f32 summation order).
    let (a, b) = (rows.run(&x).unwrap(), cols.run(&x).unwrap());
    assert!(a
        .iter()
        .zip(&b)
        .all(|(p, q)| (p - q).abs() <= 1e-5 * (1.0 + q.abs())));
    assert!(b.iter().any(|&v| v != 0.0));
    let e = bad
        .err()
        .expect("a malformed override is an error")
        .to_string();
    assert!(e.contains(SCHEDULE_ENV) && e.contains("sideways"), "{e}");
}
