//! Any bytes as a model file: a typed error, or a model that runs on the CPU engine in both
//! arithmetics with results independent of the PE count.
#![no_main]

use eie::format::file::{from_bytes, from_bytes_with_limits};
use eie::{CpuEngine, LoadLimits, Precision};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Tight limits keep a run fast; the default limits must hold as well.
    let limits = LoadLimits {
        max_rows: 1 << 16,
        ..LoadLimits::default()
    };
    let Ok(model) = from_bytes_with_limits(data, &limits) else {
        let _ = from_bytes(data);
        return;
    };
    let x: Vec<f32> = (0..model.input_size())
        .map(|i| (i % 5) as f32 * 0.5 - 1.0)
        .collect();
    let engine = CpuEngine::new(model.clone()).expect("the CPU engine takes a loaded model");
    let stored = CpuEngine::as_stored(model);
    for precision in [Precision::F32, Precision::Fixed16] {
        let y = engine.with_precision(precision).run(&x).expect("a loaded model runs");
        let z = stored.with_precision(precision).run(&x).expect("a loaded model runs");
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&y), bits(&z), "results depend on the PE count");
    }
});
