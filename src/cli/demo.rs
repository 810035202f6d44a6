use eie::bench::BenchConfig;
use eie::compress::{compress_layer, CompressConfig};
use eie::format::Activation;
use eie::{Model, Result};
use std::path::PathBuf;
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
}

pub fn run(a: &DemoArgs) -> Result<ExitCode> {
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
    Model::new(vec![layer])?.save(&path)?;
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
