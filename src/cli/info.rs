use eie::{Model, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// The model file.
    model: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct LayerInfo {
    name: String,
    outputs: usize,
    inputs: usize,
    density: f64,
    bits: u8,
    pes: usize,
    activation: &'static str,
    bias: bool,
    nonzeros: usize,
    entries: usize,
    padding_entries: usize,
    dense_f32_bytes: usize,
    compressed_bytes: usize,
    len_bits: u8,
    compression_ratio: f64,
    /// The fixed16 format of the layer's outputs, e.g. `Q5.10`.
    fixed16_output: String,
}

pub fn run(a: &InfoArgs) -> Result<ExitCode> {
    if super::sequence::is_sequence_file(&a.model)? {
        return super::sequence::info(&a.model, a.json);
    }
    let model = Model::load(&a.model)?;
    let version = eie::format::file::version_of(&a.model)?;
    let file_bytes = std::fs::metadata(&a.model)
        .map_err(|e| eie::Error::io(&a.model, e))?
        .len() as usize;
    let mut infos: Vec<LayerInfo> = model
        .layers()
        .iter()
        .map(|l| LayerInfo {
            name: l.name().to_string(),
            outputs: l.rows(),
            inputs: l.cols(),
            density: l.density(),
            bits: l.bits(),
            pes: l.pes(),
            activation: l.activation().name(),
            bias: l.bias().is_some(),
            nonzeros: l.nnz(),
            entries: l.entry_count(),
            padding_entries: l.padding_count(),
            dense_f32_bytes: l.dense_bytes(),
            compressed_bytes: if version == "1" {
                l.compressed_bytes_v1()
            } else {
                l.compressed_bytes()
            },
            len_bits: l.len_bits(),
            compression_ratio: 0.0,
            fixed16_output: eie::fixed16::format_name(l.fixed16_format().output_frac()),
        })
        .collect();
    for i in &mut infos {
        i.compression_ratio = i.dense_f32_bytes as f64 / i.compressed_bytes as f64;
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "layers": infos,
                "file_bytes": file_bytes,
                "format_version": version,
                "fixed16_input": eie::fixed16::format_name(model.input_frac()),
                "dense_f32_bytes": infos.iter().map(|i| i.dense_f32_bytes).sum::<usize>(),
            }))
            .expect("plain data serialises")
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:>12} {:>8} {:>4} {:>5} {:>9} {:>10} {:>10} {:>11} {:>7}",
        "layer",
        "out x in",
        "density",
        "bits",
        "PEs",
        "act",
        "padding",
        "dense f32",
        "stored",
        "ratio"
    );
    for i in &infos {
        println!(
            "{:<16} {:>12} {:>7.2}% {:>4} {:>5} {:>9} {:>10} {:>10} {:>11} {:>6.1}x",
            i.name,
            format!("{}x{}", i.outputs, i.inputs),
            100.0 * i.density,
            i.bits,
            i.pes,
            i.activation,
            i.padding_entries,
            super::human_bytes(i.dense_f32_bytes),
            super::human_bytes(i.compressed_bytes),
            i.compression_ratio
        );
    }
    let dense: usize = infos.iter().map(|i| i.dense_f32_bytes).sum();
    let comp: usize = infos.iter().map(|i| i.compressed_bytes).sum();
    println!(
        "total: {} -> {} ({:.1}x)",
        super::human_bytes(dense),
        super::human_bytes(comp),
        dense as f64 / comp as f64
    );
    let formats: Vec<String> = std::iter::once(format!(
        "input {}",
        eie::fixed16::format_name(model.input_frac())
    ))
    .chain(
        infos
            .iter()
            .map(|i| format!("{} {}", i.name, i.fixed16_output)),
    )
    .collect();
    println!("fixed16 formats: {}", formats.join(", "));
    println!(
        "file: {} on disk, format version {version} ({:.1}x smaller than dense f32)",
        super::human_bytes(file_bytes),
        dense as f64 / file_bytes as f64
    );
    Ok(ExitCode::SUCCESS)
}
