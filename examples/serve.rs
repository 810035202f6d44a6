//! An inference server's load on `eie`: N concurrent clients on a tokio runtime, each sending
//! single-input requests back to back, served either one engine call per request or through
//! the dynamic-batching front end (`eie::batching`); throughput and p50 / p99 latency for each,
//! on the CPU engine and on the GPU.
//!
//! ```text
//! cargo run --release --example serve -- [--model M.eie] [--inputs X.npy] [--clients 64]
//!     [--requests 40] [--backend cpu|gpu|all] [--max-batch 64] [--max-delay-us 2000]
//! ```
//!
//! Without `--model` it serves the committed LeNet-300-100 MNIST model
//! (`assets/lenet/lenet-300-100.eie.safetensors`) on the committed test images
//! (`assets/lenet/test-images.npy`); when those are absent, a synthetic layer stack of
//! LeNet-300-100's shape (784 → 300 → 100 → 10 at 8 %, 9 % and 26 % weight density) on seeded
//! inputs.

use eie::batching::{BatchConfig, Batcher};
use eie::compress::{compress_layer, CompressConfig};
use eie::{Activation, Engine, Model, Precision, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    model: Option<PathBuf>,
    inputs: Option<PathBuf>,
    clients: usize,
    requests: usize,
    backend: String,
    max_batch: usize,
    max_delay: Duration,
}

fn parse() -> std::result::Result<Args, String> {
    let mut a = Args {
        model: None,
        inputs: None,
        clients: 64,
        requests: 40,
        backend: "all".into(),
        max_batch: 64,
        max_delay: Duration::from_micros(2000),
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>, f: &str| -> std::result::Result<usize, String> {
        v.ok_or(format!("{f} needs a value"))?
            .parse()
            .map_err(|e| format!("{f}: {e}"))
    };
    while let Some(f) = it.next() {
        match f.as_str() {
            "--model" => a.model = it.next().map(PathBuf::from),
            "--inputs" => a.inputs = it.next().map(PathBuf::from),
            "--clients" => a.clients = num(it.next(), &f)?,
            "--requests" => a.requests = num(it.next(), &f)?,
            "--backend" => a.backend = it.next().ok_or("--backend needs a value")?,
            "--max-batch" => a.max_batch = num(it.next(), &f)?,
            "--max-delay-us" => a.max_delay = Duration::from_micros(num(it.next(), &f)? as u64),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.clients == 0 || a.requests == 0 || a.max_batch == 0 {
        return Err("--clients, --requests and --max-batch must be at least 1".into());
    }
    Ok(a)
}

/// LeNet-300-100's shape at Deep Compression's densities, seeded.
fn synthetic_lenet() -> Result<Model> {
    let shapes = [(300, 784, 0.08), (100, 300, 0.09), (10, 100, 0.26)];
    let layers = shapes
        .iter()
        .enumerate()
        .map(|(i, &(rows, cols, density))| {
            let d =
                eie::synth::dense_layer(&format!("fc{}", i + 1), rows, cols, true, 7 + i as u64);
            let config = CompressConfig {
                density,
                bits: 4,
                pes: 16,
                ..CompressConfig::default()
            };
            let act = if i < 2 {
                Activation::Relu
            } else {
                Activation::Identity
            };
            compress_layer(&d, &config, act)
        })
        .collect::<Result<Vec<_>>>()?;
    Model::new(layers)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Outcome {
    requests: usize,
    seconds: f64,
    p50_us: f64,
    p99_us: f64,
    batches: Option<u64>,
}

/// `clients` tasks, each sending `requests` requests back to back through `call`.
async fn load<F, Fut>(
    inputs: Arc<Vec<Vec<f32>>>,
    clients: usize,
    requests: usize,
    call: F,
) -> Outcome
where
    F: Fn(Vec<f32>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Vec<f32>>> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (inputs, call) = (inputs.clone(), call.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(requests);
                for r in 0..requests {
                    let x = inputs[(c * requests + r) % inputs.len()].clone();
                    let t = Instant::now();
                    call(x).await.expect("request served");
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client task"));
    }
    let seconds = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Outcome {
        requests: lat.len(),
        seconds,
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        batches: None,
    }
}

async fn serve(engine: Engine, inputs: Arc<Vec<Vec<f32>>>, a: &Args) -> Result<(Outcome, Outcome)> {
    // Warm-up: pipelines, caches, thread pools.
    for x in inputs.iter().take(4) {
        engine.run_async(x.clone(), 1).await?;
    }
    let e = engine.clone();
    let single = load(inputs.clone(), a.clients, a.requests, move |x| {
        let run = e.run_async(x, 1);
        async move { run.await.map(eie::Outputs::into_vec) }
    })
    .await;
    let batcher = Batcher::new(
        engine,
        BatchConfig {
            max_batch: a.max_batch,
            max_delay: a.max_delay,
            queue_capacity: 4 * a.clients.max(a.max_batch),
        },
    )?;
    let b = batcher.clone();
    let mut batched = load(inputs, a.clients, a.requests, move |x| {
        let b = b.clone();
        async move { b.run_async(x).await }
    })
    .await;
    batcher.shutdown().await;
    batched.batches = Some(batcher.stats().batches);
    Ok((single, batched))
}

fn report(name: &str, (single, batched): &(Outcome, Outcome)) {
    let tput = |o: &Outcome| o.requests as f64 / o.seconds;
    for (mode, o) in [
        ("one call per request", single),
        ("dynamic batching", batched),
    ] {
        let mean_batch = o.batches.map_or("1".to_string(), |b| {
            format!("{:.1}", o.requests as f64 / b as f64)
        });
        println!(
            "| {name} | {mode} | {:.0} | {:.0} | {:.0} | {mean_batch} |",
            tput(o),
            o.p50_us,
            o.p99_us
        );
    }
    println!(
        "| {name} | batching speed-up | {:.2}× | | | |",
        tput(batched) / tput(single)
    );
}

fn main() -> std::process::ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/lenet");
    let default_model = root.join("lenet-300-100.eie.safetensors");
    let default_inputs = root.join("test-images.npy");
    let model_path = a
        .model
        .clone()
        .or_else(|| default_model.exists().then_some(default_model));
    let (model, what) = match &model_path {
        Some(p) => (Model::load(p)?, p.display().to_string()),
        None => (
            synthetic_lenet()?,
            "synthetic LeNet-300-100 shape".to_string(),
        ),
    };
    let n = model.input_size();
    let inputs_path = a
        .inputs
        .clone()
        .or_else(|| (model_path.is_some() && default_inputs.exists()).then_some(default_inputs));
    let inputs: Vec<Vec<f32>> = match &inputs_path {
        Some(p) => {
            // u8 pixels are scaled to [0, 1], as the model was trained.
            let (batch, features, values) = eie::classify::read_images(p)?;
            if features != n {
                return Err(eie::Error::Shape(format!(
                    "{} holds {features} values per input; the model takes {n}",
                    p.display()
                )));
            }
            (0..batch)
                .map(|b| values[b * n..(b + 1) * n].to_vec())
                .collect()
        }
        None => (0..256)
            .map(|i| eie::synth::activations(n, 0.2, 1000 + i))
            .collect(),
    };
    let inputs = Arc::new(inputs);
    println!(
        "model: {what} ({} layers, {n} inputs); {} clients × {} requests; max batch {}, max delay {} µs",
        model.layers().len(),
        a.clients,
        a.requests,
        a.max_batch,
        a.max_delay.as_micros()
    );
    println!("\n| engine | mode | requests/s | p50 µs | p99 µs | mean batch |");
    println!("|---|---|---|---|---|---|");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| eie::Error::InvalidArgument(format!("tokio runtime: {e}")))?;
    if a.backend == "cpu" || a.backend == "all" {
        let engine = Engine::builder(model.clone())
            .precision(Precision::F32)
            .device(eie::Device::Cpu)
            .build()?;
        let r = rt.block_on(serve(engine.clone(), inputs.clone(), a))?;
        report(
            &format!("{} ({} threads)", engine.id(), rayon::current_num_threads()),
            &r,
        );
    }
    #[cfg(feature = "gpu")]
    if a.backend == "gpu" || a.backend == "all" {
        use eie::gpu::{DeviceOptions, EngineOptions};
        let opts = EngineOptions {
            max_batch: a.max_batch,
            ..EngineOptions::default()
        };
        let builder = Engine::builder(model.clone())
            .device(eie::Device::Gpu(DeviceOptions::default()))
            .gpu_options(opts);
        match rt.block_on(builder.build_async()) {
            Ok(engine) => {
                let r = rt.block_on(serve(engine.clone(), inputs.clone(), a))?;
                report(&engine.id().to_string(), &r);
            }
            Err(e) if a.backend == "all" => eprintln!("GPU skipped: {e}"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
