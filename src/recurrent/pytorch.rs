//! Reading recurrent layers from `.safetensors` files in PyTorch's naming: `nn.LSTM` / `nn.GRU`
//! (`weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`) and `nn.LSTMCell` /
//! `nn.GRUCell` (`weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`), under any name prefix.
//!
//! [`find_recurrent`] finds the layers among a file's tensor names, [`read_recurrent`] reads
//! one, and [`load_dense_stages`] reads a whole model for [`super::compress_stages`].

use super::{DenseRecurrent, DenseStage};
use crate::dense::DenseLayer;
use crate::error::{Error, Result};
use crate::format::CellKind;
use crate::import::{SafetensorsFile, Tensor};
use std::path::Path;

/// One recurrent layer's tensor names, found from its `weight_hh` tensor.
///
/// Found by [`find_recurrent`]; [`read_recurrent`] reads the layer they name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecurrentNames {
    /// The layer's name: the prefix with `l{k}` appended for `nn.LSTM` / `nn.GRU` tensors
    /// (`lstm.l0`), or the prefix without its final `.` for cell tensors (`cell`); `l{k}` or
    /// `cell` when the prefix is empty.
    pub name: String,
    /// `…weight_ih…`
    pub weight_ih: String,
    /// `…weight_hh…`
    pub weight_hh: String,
    /// `…bias_ih…`
    pub bias_ih: String,
    /// `…bias_hh…`
    pub bias_hh: String,
}

/// Splits a tensor name ending in `weight_hh` or `weight_hh_l{k}` into its prefix and suffix
/// (`""` or `_l{k}`); `None` for any other name. A `_reverse` suffix (a bidirectional layer's
/// second direction) is reported as an error by [`find_recurrent`].
fn split_hh(name: &str) -> Option<(&str, &str)> {
    if let Some(prefix) = name.strip_suffix("weight_hh") {
        return Some((prefix, ""));
    }
    let at = name.rfind("weight_hh_l")?;
    let layer = &name[at + "weight_hh_l".len()..];
    let layer = layer.strip_suffix("_reverse").unwrap_or(layer);
    (!layer.is_empty() && layer.bytes().all(|b| b.is_ascii_digit()))
        .then(|| (&name[..at], &name[at + "weight_hh".len()..]))
}

/// The recurrent layers among `names`: every `…weight_hh[_l{k}]` tensor with its
/// `…weight_ih[_l{k}]` partner, in natural order of their names. A bidirectional layer
/// (`_reverse`), a projection (`weight_hr`) or a `weight_hh` without its `weight_ih` is an
/// [`Error::InvalidArgument`].
pub fn find_recurrent(names: &[String]) -> Result<Vec<RecurrentNames>> {
    let has = |n: &str| names.iter().any(|m| m == n);
    let mut found = Vec::new();
    for n in names {
        let Some((prefix, suffix)) = split_hh(n) else {
            continue;
        };
        if suffix.ends_with("_reverse") {
            return Err(Error::InvalidArgument(format!(
                "`{n}`: bidirectional recurrent layers are not supported"
            )));
        }
        let name_of = |what: &str| format!("{prefix}{what}{suffix}");
        if has(&name_of("weight_hr")) {
            return Err(Error::InvalidArgument(format!(
                "`{}`: LSTM projections (proj_size) are not supported",
                name_of("weight_hr")
            )));
        }
        if !has(&name_of("weight_ih")) {
            return Err(Error::InvalidArgument(format!(
                "`{n}` has no `{}` beside it",
                name_of("weight_ih")
            )));
        }
        let name = match suffix.strip_prefix('_') {
            Some(layer) => format!("{prefix}{layer}"),
            None if prefix.is_empty() => "cell".to_string(),
            None => prefix.trim_end_matches('.').to_string(),
        };
        found.push(RecurrentNames {
            name,
            weight_ih: name_of("weight_ih"),
            weight_hh: n.clone(),
            bias_ih: name_of("bias_ih"),
            bias_hh: name_of("bias_hh"),
        });
    }
    Ok(found)
}

/// Reads one recurrent layer: the kind from `weight_hh`'s shape (`[4H, H]`: LSTM, `[3H, H]`:
/// GRU), `weight_ih` `[G × H, in]`, and each bias (`[G × H]`) when present.
///
/// The names come from [`find_recurrent`]; [`load_dense_stages`] reads a whole model.
pub fn read_recurrent(file: &SafetensorsFile, names: &RecurrentNames) -> Result<DenseRecurrent> {
    let hh = file.tensor(&names.weight_hh)?;
    let ih = file.tensor(&names.weight_ih)?;
    let (rows, hidden) = match hh.shape.as_slice() {
        [r, h] if *h > 0 => (*r, *h),
        other => {
            return Err(Error::Shape(format!(
                "`{}` has shape {other:?}; expected [4H, H] (LSTM) or [3H, H] (GRU)",
                names.weight_hh
            )))
        }
    };
    let kind = if rows == 4 * hidden {
        CellKind::Lstm
    } else if rows == 3 * hidden {
        CellKind::Gru
    } else {
        return Err(Error::Shape(format!(
            "`{}` has shape [{rows}, {hidden}]; expected [4H, H] (LSTM) or [3H, H] (GRU)",
            names.weight_hh
        )));
    };
    if ih.shape.len() != 2 || ih.shape[0] != rows {
        return Err(Error::Shape(format!(
            "`{}` has shape {:?}; expected [{rows}, inputs] beside `{}` [{rows}, {hidden}]",
            names.weight_ih, ih.shape, names.weight_hh
        )));
    }
    let bias = |name: &str| -> Result<Option<Vec<f32>>> {
        if !file.contains(name) {
            return Ok(None);
        }
        let b = file.tensor(name)?;
        if b.shape != [rows] {
            return Err(Error::Shape(format!(
                "`{name}` has shape {:?}; expected [{rows}]",
                b.shape
            )));
        }
        Ok(Some(b.data))
    };
    let matrix = |name: &str, t: Tensor, bias: Option<Vec<f32>>| {
        let layer = DenseLayer {
            name: name.to_string(),
            rows: t.shape[0],
            cols: t.shape[1],
            weights: t.data,
            bias,
        };
        layer.validate().map(|()| layer)
    };
    let (b_ih, b_hh) = (bias(&names.bias_ih)?, bias(&names.bias_hh)?);
    DenseRecurrent::new(
        names.name.clone(),
        kind,
        matrix(&names.weight_ih, ih, b_ih)?,
        matrix(&names.weight_hh, hh, b_hh)?,
    )
}

/// Loads the stages of a model from a `.safetensors` file: every recurrent layer (see
/// [`find_recurrent`]) and every other 2-D tensor as a fully-connected layer (with
/// `<prefix>bias` for `<prefix>weight` when present).
///
/// Order: the stages named in `order` (a recurrent layer by its `weight_ih` or `weight_hh`
/// tensor, a fully-connected one by its weight), or when `order` is empty every stage in
/// natural name order; if that order does not chain (each stage taking as many inputs as the
/// previous gives), the recurrent stages first and then the fully-connected ones (each in
/// natural order), the usual recurrent network with a classifier. A set that chains in neither
/// order is an [`Error::Shape`] that suggests `--tensor`.
pub fn load_dense_stages(path: &Path, order: &[String]) -> Result<Vec<DenseStage>> {
    let file = SafetensorsFile::open(path)?;
    let names = file.names();
    let recurrent = find_recurrent(&names)?;
    let owned_by_cell = |n: &str| {
        recurrent.iter().any(|r| {
            [&r.weight_ih, &r.weight_hh, &r.bias_ih, &r.bias_hh]
                .iter()
                .any(|m| m.as_str() == n)
        })
    };
    // Natural name order: a recurrent stage sorts by its weight_ih tensor.
    let mut all: Vec<(String, Option<&RecurrentNames>)> = Vec::new();
    for n in &names {
        if let Some(r) = recurrent.iter().find(|r| &r.weight_ih == n) {
            all.push((n.clone(), Some(r)));
        } else if !owned_by_cell(n) && file.tensor_shape(n).is_some_and(|s| s.len() == 2) {
            all.push((n.clone(), None));
        }
    }
    let chosen: Vec<(String, Option<&RecurrentNames>)> = if order.is_empty() {
        all.clone()
    } else {
        order
            .iter()
            .map(|o| {
                if let Some(r) = recurrent
                    .iter()
                    .find(|r| &r.weight_ih == o || &r.weight_hh == o || &r.name == o)
                {
                    Ok((r.weight_ih.clone(), Some(r)))
                } else if file.contains(o) {
                    Ok((o.clone(), None))
                } else {
                    Err(Error::TensorNotFound {
                        name: o.clone(),
                        path: path.to_path_buf(),
                        available: names.join(", "),
                    })
                }
            })
            .collect::<Result<_>>()?
    };
    if chosen.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} has no 2-D weight tensor",
            path.display()
        )));
    }
    let read = |(n, r): &(String, Option<&RecurrentNames>)| -> Result<DenseStage> {
        match r {
            Some(r) => read_recurrent(&file, r).map(DenseStage::Recurrent),
            None => {
                let bias = match n.strip_suffix("weight") {
                    Some(prefix) if file.contains(&format!("{prefix}bias")) => {
                        Some(file.tensor(&format!("{prefix}bias"))?)
                    }
                    _ => None,
                };
                crate::import::weight_layer(n, file.tensor(n)?, bias).map(DenseStage::Fc)
            }
        }
    };
    let stages: Vec<DenseStage> = chosen.iter().map(read).collect::<Result<_>>()?;
    if !order.is_empty() || super::chains(&stages) {
        return Ok(stages);
    }
    let (rec, fc): (Vec<DenseStage>, Vec<DenseStage>) = stages
        .into_iter()
        .partition(|s| matches!(s, DenseStage::Recurrent(_)));
    let reordered: Vec<DenseStage> = rec.into_iter().chain(fc).collect();
    if super::chains(&reordered) {
        Ok(reordered)
    } else {
        Err(Error::Shape(format!(
            "the layers of {} do not chain in name order, nor with the recurrent layers first; \
             give their order with --tensor (found: {})",
            path.display(),
            reordered
                .iter()
                .map(|s| format!("{} {}->{}", s.name(), s.input_size(), s.output_size()))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}
