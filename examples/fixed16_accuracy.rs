//! fixed16 against the dense f32 oracle with per-layer formats: seeded Gaussian layers
//! compressed as `eie compress --density 0.5 --relu` does (formats chosen from the weights for
//! inputs within ±1) and checked on `eie verify`'s default input (a seeded ReLU-like batch of
//! 4), then the committed LeNet-300-100 on its 1000 test images. Each row gives the normwise
//! relative error (max |error| / max |oracle|, as `eie verify`) with the chosen formats, with
//! formats calibrated on the same inputs, and with Q5.10 throughout (what files without stored
//! formats run), and the saturations of each.
//!
//! ```text
//! cargo run --release --example fixed16_accuracy
//! ```
//! The GPU kernels give the CPU model's bits in fixed16 (`tests/gpu.rs`), so the errors hold
//! for `gpu-eie/fixed16` too.

use eie::calibration::choose_formats;
use eie::classify::LenetAssets;
use eie::compress::{compress_model, CompressPlan};
use eie::fixed16::{format_name, Saturations};
use eie::reference::ErrorStats;
use eie::{Activation, CpuEngine, DenseOracle, Model, Precision};

/// The error of the CPU model's fixed16 against `oracle`, and the saturations.
fn fixed16_error(model: &Model, x: &[f32], oracle: &[f32]) -> (f64, Saturations) {
    let (y, sat) = CpuEngine::new(model.clone())
        .and_then(|e| e.with_precision(Precision::Fixed16).run_fixed16(x))
        .expect("the model runs");
    (ErrorStats::compare(&y, oracle).max_rel, sat)
}

fn row(name: &str, model: &Model, x: &[f32]) {
    let oracle = DenseOracle::try_new(model)
        .and_then(|o| o.run(x))
        .expect("the oracle runs");
    let (chosen, sat) = fixed16_error(model, x, oracle.as_slice());
    let mut calibrated = model.clone();
    choose_formats(&mut calibrated, Some(x)).expect("calibration inputs fit");
    let (cal, cal_sat) = fixed16_error(&calibrated, x, &oracle);
    let mut q510 = model.clone();
    q510.set_fixed16_fracs(10, &vec![10; model.layers().len()])
        .expect("Q5.10 is a format");
    let (old, old_sat) = fixed16_error(&q510, x, &oracle);
    let formats: Vec<String> = std::iter::once(model.input_frac())
        .chain(
            model
                .layers()
                .iter()
                .map(|l| l.fixed16_format().output_frac()),
        )
        .map(format_name)
        .collect();
    println!(
        "| {name} | {} | {chosen:.1e} ({}) | {cal:.1e} ({}) | {old:.1e} ({}) |",
        formats.join(" → "),
        sat.total(),
        cal_sat.total(),
        old_sat.total()
    );
}

fn main() {
    println!(
        "| layer | chosen formats (input → outputs) | chosen: error (saturations) | \
         calibrated | Q5.10 |"
    );
    println!("|---|---|---|---|---|");
    // (rows, cols, weight standard deviation × sqrt(cols)): 1.0 is synth's N(0, 1/cols).
    let cases: &[(usize, usize, f32)] = &[
        (300, 40, 1.0),
        (300, 40, 40f32.sqrt()),
        (300, 40, 10.0 * 40f32.sqrt()),
        (10, 100, 30.0),
        (64, 2000, 0.01),
        (1000, 1000, 1000f32.sqrt()),
        (4096, 1024, 1.0),
    ];
    let plan = CompressPlan::uniform(eie::compress::CompressConfig {
        density: 0.5,
        ..Default::default()
    });
    for &(rows, cols, k) in cases {
        let mut d = eie::synth::dense_layer("w", rows, cols, false, 7);
        d.weights.iter_mut().for_each(|w| *w *= k);
        let model = compress_model(&[d], &plan, &[Activation::Relu]).expect("compresses");
        let x = eie::synth::activations(cols * 4, 0.5, 1);
        let std = k / (cols as f32).sqrt();
        let std = if std >= 0.01 {
            format!("{std:.3}")
        } else {
            format!("{std:.1e}")
        };
        row(&format!("{rows} × {cols}, weights σ = {std}"), &model, &x);
    }
    match LenetAssets::load(LenetAssets::source_dir()) {
        Ok(a) => row("LeNet-300-100, 1000 MNIST images", &a.model, &a.images),
        Err(e) => eprintln!("LeNet-300-100 skipped: {e}"),
    }
}
