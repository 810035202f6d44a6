use eie::compress::{compress_layer, CompressConfig};
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
    /// Fraction of weights kept by magnitude pruning, in (0, 1]; 1.0 keeps every non-zero.
    #[arg(long, default_value_t = 1.0)]
    density: f64,
    /// Codebook index bits (2..=8): 2^bits shared weights, index 0 = zero.
    #[arg(long, default_value_t = 4)]
    bits: u8,
    /// Processing elements the rows are interleaved over.
    #[arg(long, default_value_t = 64)]
    pes: usize,
    /// Apply ReLU after every layer.
    #[arg(long, conflicts_with = "activations")]
    relu: bool,
    /// Per-layer activations, comma-separated (relu|identity), e.g. relu,relu,identity.
    #[arg(long, value_delimiter = ',')]
    activations: Vec<Activation>,
}

pub fn run(a: &CompressArgs) -> Result<ExitCode> {
    let config = CompressConfig {
        density: a.density,
        bits: a.bits,
        pes: a.pes,
        ..CompressConfig::default()
    };
    config.validate()?;
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
    let pb = super::bar(dense.len() as u64, "compressing");
    let mut layers = Vec::with_capacity(dense.len());
    for (i, d) in dense.iter().enumerate() {
        pb.set_message(format!("compressing {} ({}x{})", d.name, d.rows, d.cols));
        let act = if a.relu {
            Activation::Relu
        } else {
            a.activations.get(i).copied().unwrap_or_default()
        };
        layers.push(compress_layer(d, &config, act)?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let model = Model::new(layers)?;
    model.save(&a.output)?;
    for l in model.layers() {
        println!(
            "{}: {}x{} -> density {:.2} %, {} entries ({} padding), {} -> {} ({:.1}x)",
            l.name(),
            l.rows(),
            l.cols(),
            100.0 * l.density(),
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

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
