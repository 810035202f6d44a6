//! Reading dense weights and activations from `.npy` and `.safetensors` files, and writing
//! float32 `.npy` outputs.
//!
//! Weights follow PyTorch's convention: a weight tensor is `[out, in]`, a bias `[out]`.
//! Element types f32, f16, bf16 (safetensors only: numpy has no bf16) and f64 are accepted and
//! converted to f32.

use crate::compress::DenseLayer;
use crate::error::{check_finite, Error, Result};
use npyz::{DType, TypeChar, WriterBuilder};
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// A dense tensor converted to f32, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

fn parse_err(path: &Path, reason: impl ToString) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads a `.npy` array of f32, f16 or f64 (C or Fortran order) as f32 in C order.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = read_file(path)?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| parse_err(path, e))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let fortran = npy.order() == npyz::Order::Fortran;
    let dtype = npy.dtype();
    let (kind, size) = match &dtype {
        DType::Plain(ts) => (ts.type_char(), ts.size_field()),
        other => {
            return Err(Error::UnsupportedDtype {
                what: path.display().to_string(),
                dtype: other.descr(),
            })
        }
    };
    let data: Vec<f32> = match (kind, size) {
        (TypeChar::Float, 4) => npy.into_vec::<f32>(),
        (TypeChar::Float, 2) => npy
            .into_vec::<half::f16>()
            .map(|v| v.into_iter().map(f32::from).collect()),
        (TypeChar::Float, 8) => npy
            .into_vec::<f64>()
            .map(|v| v.into_iter().map(|x| x as f32).collect()),
        _ => {
            return Err(Error::UnsupportedDtype {
                what: path.display().to_string(),
                dtype: dtype.descr(),
            })
        }
    }
    .map_err(|e| parse_err(path, e))?;
    let data = if fortran && shape.len() == 2 {
        let (r, c) = (shape[0], shape[1]);
        let mut t = vec![0f32; data.len()];
        for i in 0..r {
            for j in 0..c {
                t[i * c + j] = data[j * r + i];
            }
        }
        t
    } else if fortran && shape.len() > 2 {
        return Err(parse_err(
            path,
            "Fortran-order arrays above 2-D are not supported",
        ));
    } else {
        data
    };
    Ok(Tensor { shape, data })
}

/// Writes a float32 `.npy` file atomically.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let mut buf = Vec::new();
    {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut buf)
            .begin_nd()
            .map_err(|e| Error::io(path, e))?;
        w.extend(data.iter().copied())
            .map_err(|e| Error::io(path, e))?;
        w.finish().map_err(|e| Error::io(path, e))?;
    }
    crate::format::file::write_atomic(path, &buf)
}

fn safetensor_to_f32(
    path: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView,
) -> Result<Tensor> {
    let d = view.data();
    let data: Vec<f32> = match view.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => d
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => d
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")) as f32)
            .collect(),
        other => {
            return Err(Error::UnsupportedDtype {
                what: format!("{}: tensor `{name}`", path.display()),
                dtype: format!("{other:?}"),
            })
        }
    };
    Ok(Tensor {
        shape: view.shape().to_vec(),
        data,
    })
}

/// An open `.safetensors` file of dense tensors.
pub struct SafetensorsFile {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl SafetensorsFile {
    /// Reads and parses the file's header.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = read_file(path)?;
        SafeTensors::deserialize(&bytes).map_err(|e| parse_err(path, e))?;
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            bytes,
        })
    }

    fn parsed(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("validated in open")
    }

    /// Tensor names in natural order (`layers.2` before `layers.10`).
    ///
    /// Writers (PyTorch's included) sort tensors by dtype and name, so the storage order says
    /// nothing about layer order; natural name order matches the usual `fc1`, `fc2`, ... and
    /// `0.weight`, `2.weight`, ... naming of sequential models.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .parsed()
            .names()
            .into_iter()
            .map(str::to_string)
            .collect();
        names.sort_by_cached_key(|n| natural_key(n));
        names
    }

    /// Whether a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.parsed().tensor(name).is_ok()
    }

    /// One tensor as f32.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let st = self.parsed();
        let view = st.tensor(name).map_err(|_| Error::TensorNotFound {
            name: name.to_string(),
            path: self.path.clone(),
            available: self.names().join(", "),
        })?;
        safetensor_to_f32(&self.path, name, &view)
    }
}

/// A sort key that orders digit runs by value: `l2` < `l10`.
fn natural_key(name: &str) -> Vec<(String, u64)> {
    let mut key = Vec::new();
    let mut text = String::new();
    let mut digits = String::new();
    for ch in name.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
        } else {
            if !digits.is_empty() {
                key.push((
                    std::mem::take(&mut text),
                    digits.parse().unwrap_or(u64::MAX),
                ));
                digits.clear();
            }
            text.push(ch);
        }
    }
    key.push((text, digits.parse().unwrap_or(0)));
    key
}

/// Reads a tensor from a `.npy` file, or a named tensor from a `.safetensors` file.
pub fn read_tensor(path: &Path, name: Option<&str>) -> Result<Tensor> {
    if is_safetensors(path) {
        let f = SafetensorsFile::open(path)?;
        match name {
            Some(n) => f.tensor(n),
            None => {
                let names = f.names();
                match names.as_slice() {
                    [only] => f.tensor(only),
                    _ => Err(Error::InvalidArgument(format!(
                        "{} holds {} tensors ({}); name one",
                        path.display(),
                        names.len(),
                        names.join(", ")
                    ))),
                }
            }
        }
    } else {
        read_npy(path)
    }
}

/// Whether a path names a safetensors file (by extension).
pub fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

fn weight_layer(name: &str, t: Tensor, bias: Option<Tensor>) -> Result<DenseLayer> {
    if t.shape.len() != 2 {
        return Err(Error::Shape(format!(
            "weight `{name}` has shape {:?}; expected [out, in]",
            t.shape
        )));
    }
    let bias = match bias {
        Some(b) if b.shape.len() != 1 || b.shape[0] != t.shape[0] => {
            return Err(Error::Shape(format!(
                "bias for `{name}` has shape {:?}; expected [{}]",
                b.shape, t.shape[0]
            )))
        }
        Some(b) => Some(b.data),
        None => None,
    };
    let layer = DenseLayer {
        name: name.to_string(),
        rows: t.shape[0],
        cols: t.shape[1],
        weights: t.data,
        bias,
    };
    layer.validate()?;
    Ok(layer)
}

/// Loads the dense layers to compress.
///
/// * `.npy`: one layer; `bias` may name another `.npy` file.
/// * `.safetensors`: the tensors named in `tensors`, in that order, or when none are named
///   every 2-D tensor in natural name order (see [`SafetensorsFile::names`]). Each layer's bias is the tensor `<prefix>.bias` for a
///   weight `<prefix>.weight` when present; `bias` overrides it (a tensor name, or a `.npy`
///   path) and is only allowed for a single layer.
pub fn load_dense_layers(
    path: &Path,
    tensors: &[String],
    bias: Option<&str>,
) -> Result<Vec<DenseLayer>> {
    let explicit_bias = |n_layers: usize, st: Option<&SafetensorsFile>| -> Result<Option<Tensor>> {
        let Some(b) = bias else { return Ok(None) };
        if n_layers != 1 {
            return Err(Error::InvalidArgument(
                "--bias applies to a single layer; name one weight tensor".into(),
            ));
        }
        match st {
            Some(f) if f.contains(b) => Ok(Some(f.tensor(b)?)),
            _ => Ok(Some(read_npy(Path::new(b))?)),
        }
    };
    if !is_safetensors(path) {
        if !tensors.is_empty() {
            return Err(Error::InvalidArgument(
                "--tensor applies to .safetensors inputs only".into(),
            ));
        }
        let w = read_npy(path)?;
        let name = path
            .file_stem()
            .map_or("weight".to_string(), |s| s.to_string_lossy().into_owned());
        return Ok(vec![weight_layer(&name, w, explicit_bias(1, None)?)?]);
    }
    let f = SafetensorsFile::open(path)?;
    let names: Vec<String> = if tensors.is_empty() {
        let st = f.parsed();
        f.names()
            .into_iter()
            .filter(|n| st.tensor(n).is_ok_and(|t| t.shape().len() == 2))
            .collect()
    } else {
        tensors.to_vec()
    };
    if names.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} has no 2-D weight tensor",
            path.display()
        )));
    }
    let forced = explicit_bias(names.len(), Some(&f))?;
    let mut forced = forced.into_iter();
    names
        .iter()
        .map(|n| {
            let w = f.tensor(n)?;
            let bias = match forced.next() {
                Some(b) => Some(b),
                None => match n.strip_suffix("weight") {
                    Some(prefix) if f.contains(&format!("{prefix}bias")) => {
                        Some(f.tensor(&format!("{prefix}bias"))?)
                    }
                    _ => None,
                },
            };
            weight_layer(n, w, bias)
        })
        .collect()
}

/// Reads an input batch from `.npy` (`[in]` or `[batch, in]`); returns `(batch, values)`.
pub fn read_input(path: &Path, input_size: usize) -> Result<(usize, Vec<f32>)> {
    let t = read_npy(path)?;
    let ok = match t.shape.as_slice() {
        [n] => *n == input_size,
        [_, n] => *n == input_size,
        _ => false,
    };
    if !ok || t.data.is_empty() {
        return Err(Error::Shape(format!(
            "input {} has shape {:?}; the model takes [{input_size}] or [batch, {input_size}]",
            path.display(),
            t.shape
        )));
    }
    check_finite(&format!("input {}", path.display()), &t.data)?;
    Ok((t.data.len() / input_size, t.data))
}
