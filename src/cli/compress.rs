use eie::compress::{compress_layer, CompressPlan, Setting};
use eie::format::Activation;
use eie::{Error, Model, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CompressArgs {
    /// Dense weights: a .npy matrix [out, in] or a .safetensors file.
    input: PathBuf,
    /// The model file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Weight tensor(s) to take from a .safetensors file, in layer order (repeatable). Default:
    /// every 2-D tensor in storage order.
    #[arg(long = "tensor", value_name = "NAME")]
    tensors: Vec<String>,
    /// Bias: a tensor name in the .safetensors file or a .npy file (single layer only). By
    /// default `<prefix>.bias` is used for `<prefix>.weight` when present.
    #[arg(long, value_name = "FILE_OR_NAME")]
    bias: Option<String>,
    /// Fraction of weights kept by magnitude pruning, in (0, 1]; 1.0 (the default) keeps every
    /// non-zero. One value, or per layer: `name=D,...` (layer names as `eie info` prints them;
    /// a bare value among the pairs is the default for the others).
    #[arg(long, value_name = "D | NAME=D,...")]
    density: Option<String>,
    /// Codebook index bits (2..=8, default 4): 2^bits shared weights, index 0 = zero. One value
    /// or per layer, `name=B,...`.
    #[arg(long, value_name = "B | NAME=B,...")]
    bits: Option<String>,
    /// Processing elements the rows are stored interleaved over. One value or per layer,
    /// `name=N,...`. A layer not given a count is stored at the count (at most its rows) that
    /// makes its file smallest; engines re-interleave at load for their own hardware.
    #[arg(long, value_name = "N | NAME=N,...")]
    pes: Option<String>,
    /// Per-layer settings from a JSON file:
    /// `{"default": {...}, "layers": {"fc1.weight": {"density": 0.08, "bits": 4, "pes": 1}}}`.
    #[arg(long, value_name = "PLAN.json", conflicts_with_all = ["density", "bits", "pes"])]
    plan: Option<PathBuf>,
    /// Apply ReLU after every layer.
    #[arg(long, conflicts_with = "activations")]
    relu: bool,
    /// Per-layer activations, comma-separated (relu|identity), e.g. relu,relu,identity.
    #[arg(long, value_delimiter = ',')]
    activations: Vec<Activation>,
}

pub fn run(a: &CompressArgs) -> Result<ExitCode> {
    let plan = match &a.plan {
        Some(p) => CompressPlan::load(p)?,
        None => {
            let mut plan = CompressPlan::default();
            for (setting, spec) in [
                (Setting::Density, &a.density),
                (Setting::Bits, &a.bits),
                (Setting::Pes, &a.pes),
            ] {
                if let Some(spec) = spec {
                    plan.set_from_list(setting, spec)?;
                }
            }
            plan
        }
    };
    plan.default.validate()?;
    if same_file(&a.input, &a.output) {
        return Err(Error::InvalidArgument(format!(
            "output {} is the input file; refusing to overwrite it",
            a.output.display()
        )));
    }
    let sp = super::spinner(format!("reading {}", a.input.display()));
    let dense = eie::import::load_dense_layers(&a.input, &a.tensors, a.bias.as_deref())?;
    sp.finish_and_clear();
    if !a.activations.is_empty() && a.activations.len() != dense.len() {
        return Err(Error::InvalidArgument(format!(
            "--activations lists {} functions for {} layers",
            a.activations.len(),
            dense.len()
        )));
    }
    let names: Vec<&str> = dense.iter().map(|d| d.name.as_str()).collect();
    plan.check_names(&names)?;
    let pb = super::bar(dense.len() as u64, "compressing");
    let mut layers = Vec::with_capacity(dense.len());
    for (i, d) in dense.iter().enumerate() {
        pb.set_message(format!("compressing {} ({}x{})", d.name, d.rows, d.cols));
        let act = if a.relu {
            Activation::Relu
        } else {
            a.activations.get(i).copied().unwrap_or_default()
        };
        let layer = compress_layer(d, &plan.config_for(&d.name), act)?;
        layers.push(if pes_given(a, &plan, &d.name)? {
            layer
        } else {
            layer.compact()?
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    let model = Model::new(layers)
        .and_then(|mut m| eie::fixed16::choose_formats(&mut m, None).map(|()| m))?;
    model.save(&a.output)?;
    for l in model.layers() {
        println!(
            "{}: {}x{} -> density {:.2} %, {} bits, {} PEs, {} entries ({} padding), {} -> {} ({:.1}x)",
            l.name(),
            l.rows(),
            l.cols(),
            100.0 * l.density(),
            l.bits(),
            l.pes(),
            l.entry_count(),
            l.padding_count(),
            super::human_bytes(l.dense_bytes()),
            super::human_bytes(l.compressed_bytes()),
            l.dense_bytes() as f64 / l.compressed_bytes() as f64
        );
    }
    println!("wrote {}", a.output.display());
    Ok(ExitCode::SUCCESS)
}

/// Whether the user gave layer `name` a PE count: `--pes` with a bare value or naming the
/// layer, or a plan file whose default or entry for the layer sets `pes`.
fn pes_given(a: &CompressArgs, plan: &CompressPlan, name: &str) -> Result<bool> {
    let named = plan.layers.get(name).is_some_and(|s| s.pes.is_some());
    if let Some(spec) = &a.pes {
        return Ok(named || spec.split(',').any(|item| !item.contains('=')));
    }
    if let Some(path) = &a.plan {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Parse {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        return Ok(named || json["default"].get("pes").is_some());
    }
    Ok(false)
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
