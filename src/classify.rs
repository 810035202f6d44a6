//! Classifiers on real data: labelled image sets from `.npy`, the dense f32 forward pass of
//! uncompressed weights, top-1 accuracy, and the committed LeNet-300-100 MNIST model
//! (`assets/lenet`, made by `assets/lenet/train.py`).
//!
//! Start with [`read_images`] and [`read_labels`] (the [crate-level guide](crate#run) reads
//! MNIST digits this way), then [`accuracy_pct`]; [`LenetAssets::load`] loads the committed model
//! with its images and recorded figures.

use crate::dense::DenseLayer;
use crate::error::{check_finite, Error, Result};
use crate::format::{Activation, Model};
use rayon::prelude::*;
use serde::Deserialize;
use std::path::{Path, PathBuf};

fn parse_err(path: &Path, reason: impl ToString) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// An integer or float `.npy` array read as i64 (integers) or f32 (floats).
enum NpyData {
    Int(Vec<i64>),
    Float(Vec<f32>),
}

fn read_any_npy(path: &Path) -> Result<(Vec<usize>, NpyData)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_any_npy(&bytes, path)
}

/// [`read_any_npy`] of a file's bytes; `path` names it in errors. The crate's one hardened
/// `.npy` decoder ([`crate::import`]'s) reads it: integers kept as integers (so that u8 pixels
/// can be told from floats), floats as f32.
fn parse_any_npy(bytes: &[u8], path: &Path) -> Result<(Vec<usize>, NpyData)> {
    use crate::import::{decode_npy, npy_is_float, NpyElement};
    if npy_is_float(bytes, path)? {
        let a = decode_npy(bytes, path, |e| match e {
            NpyElement::Float(x) => x as f32,
            NpyElement::Int(i) => i as f32,
            NpyElement::UInt(u) => u as f32,
        })?;
        Ok((a.shape, NpyData::Float(a.values)))
    } else {
        // u64 values beyond i64 are out of every range this module accepts; they saturate.
        let a = decode_npy(bytes, path, |e| match e {
            NpyElement::Int(i) => i,
            NpyElement::UInt(u) => i64::try_from(u).unwrap_or(i64::MAX),
            NpyElement::Float(x) => x as i64,
        })?;
        Ok((a.shape, NpyData::Int(a.values)))
    }
}

/// Reads class labels: a 1-D `.npy` of u8, u16, i32 or i64, every label below `classes`.
///
/// [`accuracy_pct`] and [`correct`] compare predictions with them.
pub fn read_labels(path: &Path, classes: usize) -> Result<Vec<usize>> {
    labels_from(read_any_npy(path)?, path, classes)
}

/// [`read_labels`] of a `.npy` file's bytes (fetched over the network, say); `name` names it
/// in errors.
pub fn labels_from_bytes(bytes: &[u8], name: &str, classes: usize) -> Result<Vec<usize>> {
    let path = Path::new(name);
    labels_from(parse_any_npy(bytes, path)?, path, classes)
}

fn labels_from(
    (shape, data): (Vec<usize>, NpyData),
    path: &Path,
    classes: usize,
) -> Result<Vec<usize>> {
    let NpyData::Int(v) = data else {
        return Err(parse_err(path, "labels must be integers"));
    };
    if shape.len() != 1 {
        return Err(Error::Shape(format!(
            "labels {} have shape {shape:?}; expected [n]",
            path.display()
        )));
    }
    v.iter()
        .enumerate()
        .map(|(i, &l)| {
            usize::try_from(l)
                .ok()
                .filter(|&l| l < classes)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "label {i} of {} is {l}, outside 0..{classes}",
                        path.display()
                    ))
                })
        })
        .collect()
}

/// Reads images as network inputs: a `[n, features]` `.npy` of u8 pixels (scaled to
/// `pixel / 255`) or of f32 / f64 values (taken as they are). Returns `(n, features, values)`.
///
/// The [crate-level guide](crate#run) reads MNIST digits with it.
pub fn read_images(path: &Path) -> Result<(usize, usize, Vec<f32>)> {
    images_from(read_any_npy(path)?, path)
}

/// [`read_images`] of a `.npy` file's bytes (fetched over the network, say); `name` names it
/// in errors.
pub fn images_from_bytes(bytes: &[u8], name: &str) -> Result<(usize, usize, Vec<f32>)> {
    let path = Path::new(name);
    images_from(parse_any_npy(bytes, path)?, path)
}

fn images_from(
    (shape, data): (Vec<usize>, NpyData),
    path: &Path,
) -> Result<(usize, usize, Vec<f32>)> {
    let [n, features] = shape[..] else {
        return Err(Error::Shape(format!(
            "images {} have shape {shape:?}; expected [n, features]",
            path.display()
        )));
    };
    let values = input_values(data, path)?;
    check_finite(&format!("images {}", path.display()), &values)?;
    if n == 0 || features == 0 {
        return Err(Error::Shape(format!("images {} are empty", path.display())));
    }
    Ok((n, features, values))
}

/// Reads sequences as a sequence model's inputs: a `[n, steps, features]` `.npy` of u8 values
/// (scaled to `value / 255`, as [`read_images`] scales pixels) or of f32 / f64 values (taken
/// as they are). Returns `(n, steps, features, values)`.
///
/// `eie compress --calibration` reads a sequence model's calibration inputs with it.
pub fn read_sequences(path: &Path) -> Result<(usize, usize, usize, Vec<f32>)> {
    let (shape, data) = read_any_npy(path)?;
    let [n, steps, features] = shape[..] else {
        return Err(Error::Shape(format!(
            "sequences {} have shape {shape:?}; expected [n, steps, features]",
            path.display()
        )));
    };
    let values = input_values(data, path)?;
    check_finite(&format!("sequences {}", path.display()), &values)?;
    if n == 0 || steps == 0 || features == 0 {
        return Err(Error::Shape(format!(
            "sequences {} are empty",
            path.display()
        )));
    }
    Ok((n, steps, features, values))
}

/// Input values from a `.npy` array: u8 values scaled by 1/255, floats as they are.
fn input_values(data: NpyData, path: &Path) -> Result<Vec<f32>> {
    Ok(match data {
        NpyData::Float(v) => v,
        NpyData::Int(v) => v
            .into_iter()
            .map(|p| {
                u8::try_from(p)
                    .map(|p| p as f32 / 255.0)
                    .map_err(|_| parse_err(path, format!("integer value {p} outside 0..=255")))
            })
            .collect::<Result<_>>()?,
    })
}

/// The index of the largest output of each of the `outputs.len() / classes` results (the
/// first one on ties).
///
/// [`crate::Outputs::argmax`] does the same for an engine's outputs.
pub fn top1(outputs: &[f32], classes: usize) -> Vec<usize> {
    outputs
        .chunks_exact(classes)
        .map(|o| {
            o.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                })
                .0
        })
        .collect()
}

/// How many predictions equal their labels.
///
/// See [`top1`] and [`read_labels`].
pub fn correct(predicted: &[usize], labels: &[usize]) -> usize {
    predicted.iter().zip(labels).filter(|(p, l)| p == l).count()
}

/// Top-1 accuracy in percent of `outputs` (`labels.len()` results of `classes` values each).
///
/// Built on [`top1`] and [`correct`].
pub fn accuracy_pct(outputs: &[f32], classes: usize, labels: &[usize]) -> Result<f64> {
    if classes == 0 || outputs.len() != labels.len() * classes || labels.is_empty() {
        return Err(Error::Shape(format!(
            "{} outputs for {} labels of {classes} classes",
            outputs.len(),
            labels.len()
        )));
    }
    Ok(100.0 * correct(&top1(outputs, classes), labels) as f64 / labels.len() as f64)
}

/// The uncompressed network's forward pass in f32 on the CPU: each layer computes
/// `f(W x + bias)` with its activation from `activations` (one per layer), row by row in
/// increasing column order. `input` holds a batch of vectors back to back.
///
/// [`LenetAssets::dense_outputs`] runs it on the committed LeNet; the layers come from
/// [`crate::import::load_dense_layers`].
pub fn dense_forward(
    layers: &[DenseLayer],
    activations: &[Activation],
    input: &[f32],
) -> Result<Vec<f32>> {
    crate::dense::validate_network(layers, activations)?;
    let n_in = layers[0].cols;
    crate::format::check_batch(n_in, input)?;
    let n_out = layers[layers.len() - 1].rows;
    let mut out = vec![0f32; input.len() / n_in * n_out];
    out.par_chunks_mut(n_out)
        .zip(input.par_chunks(n_in))
        .for_each(|(y, x)| {
            let mut a = x.to_vec();
            for (l, act) in layers.iter().zip(activations) {
                a = l
                    .weights
                    .chunks_exact(l.cols)
                    .enumerate()
                    .map(|(r, w)| {
                        let s = w.iter().zip(&a).fold(0f32, |s, (w, x)| s + w * x);
                        act.apply(s + l.bias.as_ref().map_or(0.0, |b| b[r]))
                    })
                    .collect();
            }
            y.copy_from_slice(&a);
        });
    Ok(out)
}

/// A pair of figures, uncompressed and compressed.
///
/// Fields of [`RecordedResults`].
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
pub struct DenseCompressed<T> {
    /// The dense network.
    pub dense: T,
    /// The compressed network.
    pub compressed: T,
}

/// The figures `assets/lenet/train.py` recorded in `results.json`.
///
/// [`LenetAssets::recorded`] holds them.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RecordedResults {
    /// Top-1 error in percent on the whole 10,000-image MNIST test set.
    pub test_error_10k_pct: DenseCompressed<f64>,
    /// Correct predictions on the first 200 test images (the first 200 committed ones).
    pub correct_of_first_200: DenseCompressed<usize>,
    /// Correct predictions on the first 1000 test images (all the committed ones).
    pub correct_of_first_1000: DenseCompressed<usize>,
}

/// The committed LeNet-300-100 (784 → 300 → 100 → 10, ReLU) and its test images.
///
/// Loaded by [`LenetAssets::load`] from [`LenetAssets::source_dir`].
#[derive(Clone, Debug)]
pub struct LenetAssets {
    /// The folder the files came from.
    pub dir: PathBuf,
    /// The compressed model (`lenet-300-100.eie.safetensors`).
    pub model: Model,
    /// The dense f32 layers (`lenet-300-100.safetensors`), in order.
    pub dense: Vec<DenseLayer>,
    /// Each layer's activation (the compressed model's).
    pub activations: Vec<Activation>,
    /// `labels.len()` images of 784 inputs each, pixel / 255 (`test-images.npy`).
    pub images: Vec<f32>,
    /// Their classes, 0..=9 (`test-labels.npy`).
    pub labels: Vec<usize>,
    /// The training script's recorded figures (`results.json`).
    pub recorded: RecordedResults,
}

impl LenetAssets {
    /// The compressed model's file name.
    ///
    /// Read by [`LenetAssets::load`].
    pub const MODEL: &'static str = "lenet-300-100.eie.safetensors";
    /// The dense weights' file name.
    ///
    /// Read by [`LenetAssets::load`].
    pub const DENSE: &'static str = "lenet-300-100.safetensors";
    /// Number of classes.
    ///
    /// See [`top1`].
    pub const CLASSES: usize = 10;

    /// The folder in the source tree (`<crate>/assets/lenet`).
    ///
    /// Give it to [`LenetAssets::load`].
    pub fn source_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/lenet")
    }

    /// Loads and checks every file in `dir`.
    ///
    /// See [`LenetAssets::source_dir`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let model = Model::load(dir.join(Self::MODEL))?;
        let dense = crate::import::load_dense_layers(&dir.join(Self::DENSE), &[], None)?;
        let activations: Vec<Activation> = model.layers().iter().map(|l| l.activation()).collect();
        if dense.len() != model.layers().len()
            || dense
                .iter()
                .zip(model.layers())
                .any(|(d, l)| d.rows != l.rows() || d.cols != l.cols())
        {
            return Err(Error::Shape(format!(
                "{} and {} do not have the same layers",
                Self::DENSE,
                Self::MODEL
            )));
        }
        let (n, features, images) = read_images(&dir.join("test-images.npy"))?;
        if features != model.input_size() {
            return Err(Error::Shape(format!(
                "test images have {features} values; the model takes {}",
                model.input_size()
            )));
        }
        let labels = read_labels(&dir.join("test-labels.npy"), Self::CLASSES)?;
        if labels.len() != n {
            return Err(Error::Shape(format!(
                "{} labels for {n} test images",
                labels.len()
            )));
        }
        let path = dir.join("results.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let recorded = serde_json::from_str(&text).map_err(|e| parse_err(&path, e))?;
        Ok(LenetAssets {
            dir,
            model,
            dense,
            activations,
            images,
            labels,
            recorded,
        })
    }

    /// The first `n` images (all of them when `n` is larger) and their labels.
    ///
    /// See [`LenetAssets::images`].
    pub fn first(&self, n: usize) -> (&[f32], &[usize]) {
        let n = n.min(self.labels.len());
        (
            &self.images[..n * self.model.input_size()],
            &self.labels[..n],
        )
    }

    /// The dense network's outputs on `input`.
    ///
    /// See [`dense_forward`].
    pub fn dense_outputs(&self, input: &[f32]) -> Result<Vec<f32>> {
        dense_forward(&self.dense, &self.activations, input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top1_and_accuracy() {
        let out = [0.1, 0.9, 0.0, 2.0, 2.0, -1.0];
        assert_eq!(top1(&out, 3), vec![1, 0]);
        assert_eq!(accuracy_pct(&out, 3, &[1, 2]).unwrap(), 50.0);
        assert!(accuracy_pct(&out, 3, &[1]).is_err());
    }

    #[test]
    fn dense_forward_applies_bias_and_activation() {
        let l1 = DenseLayer {
            name: "a".into(),
            rows: 2,
            cols: 2,
            weights: vec![1.0, -1.0, 2.0, 0.5],
            bias: Some(vec![0.5, -10.0]),
        };
        let l2 = DenseLayer {
            name: "b".into(),
            rows: 1,
            cols: 2,
            weights: vec![2.0, 3.0],
            bias: None,
        };
        let y = dense_forward(
            &[l1, l2],
            &[Activation::Relu, Activation::Identity],
            &[1.0, 2.0, 3.0, 1.0],
        )
        .unwrap();
        // x = (1, 2): h = relu(-0.5, -6) = 0 -> 0; x = (3, 1): h = (2.5, 0) -> 5.
        assert_eq!(y, vec![0.0, 5.0]);
    }
}
