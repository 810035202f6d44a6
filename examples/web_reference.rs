//! The reference the browser page's self-test (`web/`) compares with: the native CPU engine's
//! f32 outputs on the committed MNIST test images, written as a float32 `.npy` `[n, 10]`; it
//! also prints the engine's wall time per image on the whole set at once (median of 9 runs),
//! the figure BENCHMARKS.md sets beside the page's. `web/build.sh` runs it:
//!
//! ```text
//! cargo run --example web_reference -- OUT.npy
//! ```

use eie::classify::read_images;
use eie::import::write_npy;
use eie::{Device, Engine, Inputs, Model, Precision};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

fn run(out: &Path) -> eie::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/lenet");
    let model = Model::load(dir.join("lenet-300-100.eie.safetensors"))?;
    let (n, width, pixels) = read_images(&dir.join("test-images.npy"))?;
    let engine = Engine::builder(model)
        .precision(Precision::F32)
        .device(Device::Cpu)
        .build()?;
    let inputs = Inputs::new(&pixels, n, width)?;
    let y = engine.run(inputs)?;
    write_npy(out, &[n, y.width()], y.as_slice())?;
    let mut ms = (0..9)
        .map(|_| {
            let t = Instant::now();
            engine.run(inputs).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<eie::Result<Vec<f64>>>()?;
    ms.sort_by(f64::total_cmp);
    println!(
        "{}: {n} × {} outputs of {} on {}; {:.4} ms per image (median of 9 runs of all {n})",
        out.display(),
        y.width(),
        engine.id(),
        engine.device(),
        ms[4] / n as f64
    );
    Ok(())
}

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: web_reference OUT.npy");
        return ExitCode::from(2);
    };
    match run(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("web_reference: {e}");
            ExitCode::FAILURE
        }
    }
}
