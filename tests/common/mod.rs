//! Helpers shared by the integration tests that drive the `eie` binary or write weight files;
//! the seeded models they test are in [`fixtures`].
#![allow(dead_code)] // each test crate uses its own subset

pub mod fixtures;
#[cfg(feature = "gpu")]
pub mod gpu;

use eie::compress::DenseLayer;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the `eie` binary with `args`.
pub fn eie(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eie"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes `layers` to a .safetensors file: each weight `[rows, cols]` under its layer name,
/// and its bias `[rows]` (where it has one) under `<prefix>.bias` for a name `<prefix>.weight`.
pub fn write_safetensors(path: &Path, layers: &[DenseLayer]) {
    let mut tensors = Vec::new();
    for l in layers {
        tensors.push((l.name.clone(), vec![l.rows, l.cols], l.weights.clone()));
        if let Some(b) = &l.bias {
            let prefix = l.name.strip_suffix(".weight").unwrap_or(&l.name);
            tensors.push((format!("{prefix}.bias"), vec![l.rows], b.clone()));
        }
    }
    write_f32_tensors(path, &tensors);
}

/// Writes f32 tensors `(name, shape, values)` to a .safetensors file.
pub fn write_f32_tensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let data: Vec<(&str, &[usize], Vec<u8>)> = tensors
        .iter()
        .map(|(n, shape, v)| {
            let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.as_str(), shape.as_slice(), bytes)
        })
        .collect();
    let views: Vec<(&str, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(n, shape, d)| {
            let v =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), d)
                    .unwrap();
            (*n, v)
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}
