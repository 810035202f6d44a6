use eie::bench::BenchConfig;
use eie::classify::{self, LenetAssets};
use eie::compress::{compress_layer, CompressConfig};
use eie::format::{Activation, SequenceModel};
use eie::kernel_id::{KernelId, KernelKind};
use eie::recurrent::SequenceEngine;
use eie::{Model, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Outputs of the generated layer (Alex-7: 4096).
    #[arg(long, default_value_t = 4096)]
    rows: usize,
    /// Inputs of the generated layer (Alex-7: 4096).
    #[arg(long, default_value_t = 4096)]
    cols: usize,
    /// Weight density after pruning (Alex-7: 9 %).
    #[arg(long, default_value_t = 0.09)]
    density: f64,
    /// Input activation density (Alex-7: 35.3 %).
    #[arg(long, default_value_t = 0.353)]
    input_density: f64,
    /// Codebook bits.
    #[arg(long, default_value_t = 4)]
    bits: u8,
    /// Processing elements.
    #[arg(long, default_value_t = 64)]
    pes: usize,
    /// Seed for weights and input.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Skip the closing benchmark of the paper's nine layers.
    #[arg(long)]
    no_bench: bool,
    /// Folder for the demo's model file (default: the system's temporary folder).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Instead: run the committed LeNet-300-100 on its 1000 MNIST test images on every backend
    /// and print each one's top-1 accuracy beside the dense model's.
    #[arg(long)]
    mnist: bool,
    /// Folder of the MNIST model and images (default: `assets/lenet` in the working folder, else
    /// in the source tree this binary was built from).
    #[arg(long, requires = "mnist")]
    assets: Option<PathBuf>,
}

/// `eie demo --mnist`: the committed classifier on every backend.
fn run_mnist(a: &DemoArgs) -> Result<ExitCode> {
    let dir = a.assets.clone().unwrap_or_else(|| {
        let local = PathBuf::from("assets/lenet");
        if local.join(LenetAssets::MODEL).exists() {
            local
        } else {
            LenetAssets::source_dir()
        }
    });
    let sp = super::spinner(format!("loading {}", dir.display()));
    let assets = LenetAssets::load(&dir)?;
    sp.finish_and_clear();
    let model = &assets.model;
    let n = assets.labels.len();
    let dense_bytes: usize = model.layers().iter().map(|l| l.dense_bytes()).sum();
    let comp_bytes: usize = model.layers().iter().map(|l| l.compressed_bytes()).sum();
    let file = dir.join(LenetAssets::MODEL);
    let file_bytes = std::fs::metadata(&file)
        .map_err(|e| eie::Error::io(&file, e))?
        .len() as usize;
    println!("LeNet-300-100 on {n} MNIST test images ({})", dir.display());
    for l in model.layers() {
        println!(
            "  {:<11} {:>4}x{:<4} density {:>5.2} %, {} bits, {:>2} PEs, {}",
            l.name(),
            l.rows(),
            l.cols(),
            100.0 * l.density(),
            l.bits(),
            l.pes(),
            l.activation().name()
        );
    }
    println!(
        "  storage: {} dense f32 -> {} EIE ({:.1}x); model file {} ({:.1}x)",
        super::human_bytes(dense_bytes),
        super::human_bytes(comp_bytes),
        dense_bytes as f64 / comp_bytes as f64,
        super::human_bytes(file_bytes),
        dense_bytes as f64 / file_bytes as f64
    );
    let r = &assets.recorded;
    println!(
        "  recorded by train.py: 10k test-set error {:.2} % dense, {:.2} % compressed; \
         on these {n}: {} and {} correct",
        r.test_error_10k_pct.dense,
        r.test_error_10k_pct.compressed,
        r.correct_of_first_1000.dense,
        r.correct_of_first_1000.compressed
    );
    println!();
    println!(
        "{:<26} {:>9} {:>10} {:>10}",
        "backend", "top-1", "correct", "time ms"
    );
    let row = |name: &str, outputs: &[f32], seconds: f64| {
        let predicted = classify::top1(outputs, LenetAssets::CLASSES);
        let correct = classify::correct(&predicted, &assets.labels);
        println!(
            "{:<26} {:>8.2}% {:>10} {:>10.2}",
            name,
            100.0 * correct as f64 / n as f64,
            format!("{correct}/{n}"),
            seconds * 1e3
        );
    };
    let t = Instant::now();
    let dense = assets.dense_outputs(&assets.images)?;
    row(
        "dense f32 (uncompressed)",
        &dense,
        t.elapsed().as_secs_f64(),
    );
    let backends = super::verify::available_backends(model, false)?;
    let mut ok = true;
    for b in &backends {
        let t = Instant::now();
        match b.run(&assets.images) {
            Ok(y) => row(&b.id().to_string(), &y, t.elapsed().as_secs_f64()),
            Err(e) => {
                ok = false;
                println!("{:<26} FAILED: {e}", b.id().to_string());
            }
        }
    }
    println!(
        "\n(cpu-dense and gpu-dense run the compressed model's shared weights as dense \
         matrices; the first row is the uncompressed network)"
    );
    // fixed16 against f32 on the CPU model, image by image (normwise, as `eie verify`).
    let engine = eie::CpuEngine::new(model.clone())?;
    let float = engine.run(&assets.images)?;
    let (fixed, sat) = engine
        .with_precision(eie::Precision::Fixed16)
        .run_fixed16(&assets.images)?;
    let worst = fixed
        .chunks(LenetAssets::CLASSES)
        .zip(float.chunks(LenetAssets::CLASSES))
        .map(|(q, f)| eie::reference::ErrorStats::compare(q, f).max_rel)
        .fold(0f64, f64::max);
    let formats: Vec<String> = model
        .layers()
        .iter()
        .map(|l| eie::fixed16::format_name(l.fixed16_format().output_frac()))
        .collect();
    println!(
        "fixed16 (input {}, layer outputs {}): largest relative difference from f32 on one \
         image {worst:.1e}; saturations: {}",
        eie::fixed16::format_name(model.input_frac()),
        formats.join(", "),
        sat.summary(model)
    );
    seqmnist(&dir, &assets)?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The sequential-MNIST LSTM (`assets/seqmnist`, beside the LeNet folder) on the same test
/// images, each read as 28 steps of 28 pixels, in f32 and fixed16 on the CPU engine; skipped
/// with a note when the folder has no model.
fn seqmnist(lenet_dir: &Path, assets: &LenetAssets) -> Result<()> {
    let dir = lenet_dir
        .parent()
        .map_or_else(|| PathBuf::from("seqmnist"), |p| p.join("seqmnist"));
    let file = dir.join(SEQMNIST_MODEL);
    if !file.exists() {
        println!(
            "\n(no sequential-MNIST model at {}: skipped)",
            file.display()
        );
        return Ok(());
    }
    let model = SequenceModel::load(&file)?;
    let (steps, n) = (28, assets.labels.len());
    if model.input_size() * steps != PIXELS || model.output_size() != LenetAssets::CLASSES {
        return Err(eie::Error::Shape(format!(
            "{} takes {} inputs and gives {} outputs per step; reading {}-pixel digits row by \
             row needs {} and {}",
            file.display(),
            model.input_size(),
            model.output_size(),
            PIXELS,
            PIXELS / steps,
            LenetAssets::CLASSES
        )));
    }
    let recorded: serde_json::Value = std::fs::read_to_string(dir.join("results.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    println!(
        "\nSequential MNIST: {} ({} -> LSTM {} hidden -> {}), each image as {steps} rows of {} \
         pixels; the last step's output classifies",
        file.display(),
        model.input_size(),
        model.recurrent_layers().map(|r| r.hidden()).sum::<usize>(),
        model.output_size(),
        model.input_size()
    );
    println!(
        "{:<26} {:>9} {:>10} {:>10} {:>10}",
        "backend", "top-1", "correct", "recorded", "time ms"
    );
    for precision in [eie::Precision::F32, eie::Precision::Fixed16] {
        let engine = SequenceEngine::new(model.clone(), precision)?;
        let mut states = vec![engine.zero_state(); n];
        let t = Instant::now();
        let out = engine.run_batch(&assets.images, n, steps, &mut states)?;
        let seconds = t.elapsed().as_secs_f64();
        let last: Vec<f32> = out
            .chunks(steps * LenetAssets::CLASSES)
            .flat_map(|y| y[(steps - 1) * LenetAssets::CLASSES..].to_vec())
            .collect();
        let predicted = classify::top1(&last, LenetAssets::CLASSES);
        let correct = classify::correct(&predicted, &assets.labels);
        let want = recorded[format!("eie_{}_correct_first_1000", precision.name())]
            .as_u64()
            .filter(|_| n == 1000)
            .map_or_else(|| "-".to_string(), |v| v.to_string());
        println!(
            "{:<26} {:>8.2}% {:>10} {:>10} {:>10.2}",
            format!("{} (sequence)", KernelId::cpu(KernelKind::Eie, precision)),
            100.0 * correct as f64 / n as f64,
            format!("{correct}/{n}"),
            want,
            seconds * 1e3
        );
    }
    Ok(())
}

/// Pixels of one MNIST image (28 × 28).
const PIXELS: usize = 784;

/// The sequential-MNIST model's file name in its folder.
const SEQMNIST_MODEL: &str = "seqmnist-lstm.eie.safetensors";

pub fn run(a: &DemoArgs) -> Result<ExitCode> {
    if a.mnist {
        return run_mnist(a);
    }
    let dir = a
        .out_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("eie-demo"));
    std::fs::create_dir_all(&dir).map_err(|e| eie::Error::io(&dir, e))?;
    let path = dir.join("alex7.eie.safetensors");
    println!(
        "EIE demo: a {}x{} layer (Alex-7 shape), {:.1} % weights kept, {}-bit codebook, {} PEs",
        a.rows,
        a.cols,
        100.0 * a.density,
        a.bits,
        a.pes
    );

    let sp = super::spinner("generating Gaussian weights");
    let t = Instant::now();
    let dense = eie::synth::dense_layer("alex7", a.rows, a.cols, true, a.seed);
    sp.finish_and_clear();
    println!(
        "  generated weights        {:>9.3} s",
        t.elapsed().as_secs_f64()
    );

    let sp = super::spinner("compressing (prune, k-means, encode)");
    let t = Instant::now();
    let config = CompressConfig {
        density: a.density,
        bits: a.bits,
        pes: a.pes,
        ..CompressConfig::default()
    };
    let layer = compress_layer(&dense, &config, Activation::Relu)?;
    sp.finish_and_clear();
    println!(
        "  compressed               {:>9.3} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let mut model = Model::new(vec![layer])?;
    eie::calibration::choose_formats(&mut model, None)?;
    model.save(&path)?;
    let model = Model::load(&path)?;
    println!(
        "  saved + reloaded         {:>9.3} s   {}",
        t.elapsed().as_secs_f64(),
        path.display()
    );
    let l = &model.layers()[0];
    println!(
        "  storage: {} dense f32 -> {} EIE ({:.1}x), {} entries, {} padding",
        super::human_bytes(l.dense_bytes()),
        super::human_bytes(l.compressed_bytes()),
        l.dense_bytes() as f64 / l.compressed_bytes() as f64,
        l.entry_count(),
        l.padding_count()
    );

    let input = eie::synth::activations(model.input_size(), a.input_density, a.seed + 1);
    let backends = super::verify::available_backends(&model, false)?;
    let reports = super::verify::check(&model, &input, &backends)?;
    println!();
    super::verify::print_reports(&reports);
    super::verify::print_saturations(&model, &reports);
    let mut ok = reports.iter().all(|r| r.passed);
    println!(
        "\n{}",
        if ok {
            "all backends agree with the dense oracle"
        } else {
            "some backend disagrees with the dense oracle"
        }
    );
    if !a.no_bench {
        println!(
            "\nThe paper's nine layers (EIE Table III sizes and densities) on this machine, \
             a quick run of `eie bench` beside the paper's figures:\n"
        );
        let devices = super::bench::Devices::open_hardware();
        let workloads = eie::bench::Workload::paper_layers(&[], a.pes, a.seed)?;
        let results = super::bench::measure(&workloads, &BenchConfig::quick(), &devices)?;
        println!("{}", eie::bench::markdown(&results));
        ok &= results
            .iter()
            .all(|r| r.kernels.iter().all(|k| k.failure.is_none()));
        println!("full measurement: `eie bench` (batch 1 and 64, 15 samples; see BENCHMARKS.md)");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
