//! The model file: a safetensors container holding each layer's arrays, with a versioned JSON
//! description and CRC-32 checksums in the safetensors metadata. `docs/FORMAT.md` specifies it.
//!
//! [`Model::save`] and [`Model::load`] use [`save`] and [`load_with_limits`]; [`to_bytes`] and
//! [`from_bytes`] work in memory; [`LoadLimits`] bounds what a file may ask for.

use super::sequence::{CellKind, RecurrentLayer, SequenceModel, Stage};
use super::{entry, entry_code, entry_run, Activation, EieLayer, Model, MAX_DIM};
use crate::error::{try_with_capacity, Error, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

/// The format version this build writes ([`to_bytes`], [`save`]); it reads this one and every
/// earlier one (1 and 2), and version 3 ([`FORMAT_VERSION_RECURRENT`]).
pub const FORMAT_VERSION: u32 = 2;
/// The first format version, still read, and written by [`to_bytes_v1`].
pub const FORMAT_VERSION_1: u32 = 1;
/// The version of files with recurrent layers (version 2 plus a `kind` per matrix), written
/// by [`sequence_to_bytes`] when a model has a recurrent layer, and read by every loader.
pub const FORMAT_VERSION_RECURRENT: u32 = 3;
/// Value of the `format` metadata key.
///
/// Written by [`to_bytes`] and checked on load ([`from_bytes`], [`load_with_limits`]);
/// `docs/FORMAT.md` lists the metadata keys.
pub const FORMAT_NAME: &str = "eie";

/// Limits the loader applies to the sizes a model file states.
///
/// Most sizes in a model file are fixed by its own data: `cols` and `pes` by the pointer
/// tensors, the entry count by the entries tensor, `rows` by the bias when there is one, and
/// safetensors checks every tensor's shape against its bytes. What remains is bounded here:
/// the file's length, the number of layers and the number of rows (outputs) of a layer, which
/// a layer without bias states without storing anything per row, yet every run allocates.
/// [`load`] and [`from_bytes`] use [`LoadLimits::default`]; [`load_with_limits`] and
/// [`from_bytes_with_limits`] take others. A size above a limit is
/// [`Error::LimitExceeded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadLimits {
    /// The longest model file read, in bytes. Default 64 GiB.
    pub max_file_bytes: u64,
    /// The most layers a model may have. Default 65,536.
    pub max_layers: usize,
    /// The most rows (outputs) one layer may have. Default 2^24 = 16,777,216: 64 MiB of f32
    /// outputs per input vector. Values above [`MAX_DIM`] act as [`MAX_DIM`], the format's own
    /// bound.
    pub max_rows: usize,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            max_file_bytes: 64 << 30,
            max_layers: 1 << 16,
            max_rows: 1 << 24,
        }
    }
}

/// An optional field that is present: its value, which `null` is not. (`Option`'s own
/// deserialisation reads `null` as absent; a reader that did not would see another file.)
fn present<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The JSON description of one layer stored under the `model` metadata key.
#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct LayerHeader {
    name: String,
    rows: usize,
    cols: usize,
    pes: usize,
    bits: u8,
    activation: Activation,
    bias: bool,
    /// Version 2 only: the width in bits of each slice length in `col_len`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    len_bits: Option<u8>,
    /// Fraction bits of the layer's fixed16 output activations (0..=24); absent in files
    /// written before formats were stored, which run with Q5.10.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    output_frac: Option<u32>,
    /// Version 3 only: what the matrix is (a fully-connected layer, or one of a recurrent
    /// layer's two gate matrices).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    kind: Option<MatrixKind>,
    /// Version 3 only, on a recurrent layer's two matrices: the recurrent layer's name.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    stage: Option<String>,
}

/// What one matrix of a version-3 file is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum MatrixKind {
    Fc,
    LstmIh,
    LstmHh,
    GruIh,
    GruHh,
}

impl MatrixKind {
    /// The cell kind and whether this is the hidden-to-hidden matrix, for a recurrent matrix.
    fn cell(self) -> Option<(CellKind, bool)> {
        match self {
            MatrixKind::Fc => None,
            MatrixKind::LstmIh => Some((CellKind::Lstm, false)),
            MatrixKind::LstmHh => Some((CellKind::Lstm, true)),
            MatrixKind::GruIh => Some((CellKind::Gru, false)),
            MatrixKind::GruHh => Some((CellKind::Gru, true)),
        }
    }

    fn of(kind: CellKind, hh: bool) -> Self {
        match (kind, hh) {
            (CellKind::Lstm, false) => MatrixKind::LstmIh,
            (CellKind::Lstm, true) => MatrixKind::LstmHh,
            (CellKind::Gru, false) => MatrixKind::GruIh,
            (CellKind::Gru, true) => MatrixKind::GruHh,
        }
    }
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ModelHeader {
    /// Fraction bits of the model's fixed16 input activations (0..=24); present exactly when
    /// every layer has `output_frac`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    input_frac: Option<u32>,
    layers: Vec<LayerHeader>,
}

/// Packs entries for the file: one byte `code | run << 4` when `bits <= 4`, else two bytes
/// `code, run`.
///
/// The entries are [`EieLayer::entries`](crate::EieLayer::entries); [`to_bytes`] stores them
/// this way.
pub fn pack_entries(entries: &[u16], bits: u8) -> Vec<u8> {
    if bits <= 4 {
        entries
            .iter()
            .map(|&e| entry_code(e) | entry_run(e) << 4)
            .collect()
    } else {
        entries
            .iter()
            .flat_map(|&e| [entry_code(e), entry_run(e)])
            .collect()
    }
}

fn unpack_entries(bytes: &[u8], bits: u8) -> Result<Vec<u16>> {
    if bits <= 4 {
        let mut out = try_with_capacity(bytes.len(), "model entries")?;
        out.extend(bytes.iter().map(|&b| entry(b & 0xf, b >> 4)));
        Ok(out)
    } else if bytes.len() % 2 != 0 {
        Err(Error::CorruptModel(
            "odd entry byte count for a two-byte entry layout".into(),
        ))
    } else {
        let mut out = try_with_capacity(bytes.len() / 2, "model entries")?;
        out.extend(bytes.chunks_exact(2).map(|c| entry(c[0], c[1])));
        Ok(out)
    }
}

/// Decodes little-endian 4-byte values into a vector allocated with `try_reserve`.
fn decode_le4<T>(d: &[u8], what: &str, f: impl Fn([u8; 4]) -> T) -> Result<Vec<T>> {
    let mut out = try_with_capacity(d.len() / 4, what)?;
    out.extend(d.chunks_exact(4).map(|c| f([c[0], c[1], c[2], c[3]])));
    Ok(out)
}

fn tensor_name(layer: usize, what: &str) -> String {
    format!("layers.{layer}.{what}")
}

/// Serialises a model to the bytes of a model file in the current format (version 2: slice
/// lengths packed in as few bits as the longest slice needs, see `docs/FORMAT.md`). Every layer
/// is stored at its own PE count; [`EieLayer::compact`] chooses the count that stores smallest.
pub fn to_bytes(model: &Model) -> Result<Vec<u8>> {
    serialise(model, FORMAT_VERSION)
}

/// Serialises a model to the bytes of a version-1 model file (32-bit PE and column pointers).
/// Kept so that the compatibility of the reader with version-1 files stays tested; new files
/// should use [`to_bytes`].
pub fn to_bytes_v1(model: &Model) -> Result<Vec<u8>> {
    serialise(model, FORMAT_VERSION_1)
}

/// Packs `values` as `width`-bit fields (1..=32), least significant bit first; the unused high
/// bits of the last byte are 0.
///
/// [`to_bytes`] packs the slice lengths with it (`docs/FORMAT.md`).
pub fn pack_bits(values: impl IntoIterator<Item = u32>, width: u8) -> Vec<u8> {
    let width = u32::from(width);
    let mut out = Vec::new();
    let (mut acc, mut have) = (0u64, 0u32);
    for v in values {
        acc |= u64::from(v) << have;
        have += width;
        while have >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            have -= 8;
        }
    }
    if have > 0 {
        out.push(acc as u8);
    }
    out
}

fn serialise(model: &Model, version: u32) -> Result<Vec<u8>> {
    let matrices = model.layers().iter().map(|l| (l, None, None)).collect();
    serialise_matrices(matrices, Some(model.input_frac()), version)
}

/// Serialises a sequence model: version 2 (as [`to_bytes`]) when no stage is recurrent,
/// version 3 otherwise (each matrix with its `kind`; no fixed16 formats, which version 3 does
/// not define).
pub fn sequence_to_bytes(model: &SequenceModel) -> Result<Vec<u8>> {
    if !model.is_recurrent() {
        return to_bytes(&model.to_feed_forward()?);
    }
    let mut matrices = Vec::new();
    for s in model.stages() {
        match s {
            Stage::Fc(l) => matrices.push((l, Some(MatrixKind::Fc), None)),
            Stage::Recurrent(r) => {
                for (l, hh) in [(r.ih(), false), (r.hh(), true)] {
                    let name = Some(r.name().to_string());
                    matrices.push((l, Some(MatrixKind::of(r.kind(), hh)), name));
                }
            }
        }
    }
    serialise_matrices(matrices, None, FORMAT_VERSION_RECURRENT)
}

type Described<'a> = (&'a EieLayer, Option<MatrixKind>, Option<String>);

fn serialise_matrices(
    matrices: Vec<Described<'_>>,
    input_frac: Option<u32>,
    version: u32,
) -> Result<Vec<u8>> {
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut headers = Vec::new();
    for (i, (l, kind, stage)) in matrices.into_iter().enumerate() {
        let len_bits = (version >= 2).then(|| l.len_bits());
        headers.push(LayerHeader {
            name: l.name().to_string(),
            rows: l.rows(),
            cols: l.cols(),
            pes: l.pes(),
            bits: l.bits(),
            activation: l.activation(),
            bias: l.bias().is_some(),
            len_bits,
            output_frac: input_frac.map(|_| l.fixed16_format().output_frac()),
            kind,
            stage,
        });
        let f32s = |v: &[f32]| bytemuck::cast_slice::<f32, u8>(v).to_vec();
        let u32s = |v: &[u32]| bytemuck::cast_slice::<u32, u8>(v).to_vec();
        owned.push((
            tensor_name(i, "codebook"),
            Dtype::F32,
            vec![l.codebook().len()],
            f32s(l.codebook()),
        ));
        if let Some(b) = l.bias() {
            owned.push((tensor_name(i, "bias"), Dtype::F32, vec![b.len()], f32s(b)));
        }
        if let Some(width) = len_bits {
            let lengths = (0..l.pes())
                .flat_map(|p| l.pe(p).col_ptr.windows(2).map(|w| w[1] - w[0]))
                .collect::<Vec<u32>>();
            let packed = pack_bits(lengths, width);
            owned.push((
                tensor_name(i, "col_len"),
                Dtype::U8,
                vec![packed.len()],
                packed,
            ));
        } else {
            owned.push((
                tensor_name(i, "pe_ptr"),
                Dtype::U32,
                vec![l.pes() + 1],
                u32s(l.pe_ptr()),
            ));
            owned.push((
                tensor_name(i, "col_ptr"),
                Dtype::U32,
                vec![l.pes(), l.cols() + 1],
                u32s(l.col_ptr()),
            ));
        }
        let packed = pack_entries(l.entries(), l.bits());
        owned.push((
            tensor_name(i, "entries"),
            Dtype::U8,
            vec![packed.len()],
            packed,
        ));
    }
    if cfg!(target_endian = "big") {
        return Err(Error::InvalidArgument(
            "model files are little-endian; big-endian hosts are not supported".into(),
        ));
    }
    let checksums: BTreeMap<&str, u32> = owned
        .iter()
        .map(|(n, _, _, d)| (n.as_str(), crc32fast::hash(d)))
        .collect();
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT_NAME.to_string());
    meta.insert("format_version".to_string(), version.to_string());
    meta.insert(
        "model".to_string(),
        serde_json::to_string(&ModelHeader {
            input_frac,
            layers: headers,
        })
        .expect("plain structs serialise"),
    );
    meta.insert(
        "crc32".to_string(),
        serde_json::to_string(&checksums).expect("a map serialises"),
    );
    let views = owned
        .iter()
        .map(|(n, dt, shape, data)| {
            TensorView::new(*dt, shape.clone(), data)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::InvalidArgument(format!("tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::InvalidArgument(format!("cannot serialise model: {e}")))
}

/// Writes `model` to `path` atomically (temporary file in the same folder, then rename).
///
/// [`Model::save`] calls it; [`load`] reads the file back.
pub fn save(model: &Model, path: &Path) -> Result<()> {
    let bytes = to_bytes(model)?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// reader never sees a half-written file and a failure leaves any old file untouched.
///
/// [`save`] and [`crate::SequenceModel::save`] write through it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Reads and validates a model file under the default [`LoadLimits`].
pub fn load(path: &Path) -> Result<Model> {
    load_with_limits(path, &LoadLimits::default())
}

/// Reads and validates a model file under `limits`.
///
/// [`Model::load_with_limits`] calls it; see [`LoadLimits`].
pub fn load_with_limits(path: &Path, limits: &LoadLimits) -> Result<Model> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    check_limit("model file bytes", len, limits.max_file_bytes)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    from_bytes_with_limits(&bytes, limits)
}

/// The `format_version` a model file states, read from its header alone (the file is not
/// validated: [`load`] does that).
pub fn version_of(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    std::io::Read::read_exact(&mut f, &mut len).map_err(|e| Error::io(path, e))?;
    let n = u64::from_le_bytes(len).min(100 << 20);
    let mut header = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut f, n), &mut header)
        .map_err(|e| Error::io(path, e))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| corrupt(format!("not a valid safetensors header: {e}")))?;
    json["__metadata__"]["format_version"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| corrupt("metadata key `format_version` missing"))
}

/// The keys of `__metadata__`, every one required; no other is allowed.
const METADATA_KEYS: [&str; 4] = ["format", "format_version", "model", "crc32"];

/// The keys of a tensor's entry in the safetensors header, every one required (the
/// safetensors parser checks that) and no other allowed (it ignores others).
const TENSOR_KEYS: [&str; 3] = ["dtype", "shape", "data_offsets"];

/// What the safetensors parser lets through in a header it has parsed (a JSON object): the
/// header must begin with `{` and end with its closing `}` and any number of spaces (0x20),
/// and a tensor's entry must have no keys beyond [`TENSOR_KEYS`].
fn check_container_header(header: &[u8]) -> Result<()> {
    if header.first() != Some(&b'{') {
        return Err(corrupt("the safetensors header does not begin with `{`"));
    }
    let end = header.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    if header[..end].last() != Some(&b'}') {
        return Err(corrupt(
            "the safetensors header's JSON is followed by bytes other than spaces",
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(header)
        .map_err(|e| corrupt(format!("not a valid safetensors container: {e}")))?;
    let entries = value
        .as_object()
        .ok_or_else(|| corrupt("the safetensors header is not a JSON object"))?;
    for (name, entry) in entries.iter().filter(|(k, _)| *k != "__metadata__") {
        let keys = entry
            .as_object()
            .ok_or_else(|| {
                corrupt(format!(
                    "tensor `{name}`: its header entry is not an object"
                ))
            })?
            .keys();
        if let Some(k) = keys.filter(|k| !TENSOR_KEYS.contains(&k.as_str())).min() {
            return Err(corrupt(format!(
                "tensor `{name}`: key `{k}` in its header entry, which has only {}",
                TENSOR_KEYS.join(", ")
            )));
        }
    }
    Ok(())
}

fn corrupt(msg: impl Into<String>) -> Error {
    Error::CorruptModel(msg.into())
}

fn check_limit(what: impl Into<String>, value: u64, limit: u64) -> Result<()> {
    if value > limit {
        return Err(Error::LimitExceeded {
            what: what.into(),
            value,
            limit,
        });
    }
    Ok(())
}

/// Parses and validates the bytes of a model file under the default [`LoadLimits`].
pub fn from_bytes(bytes: &[u8]) -> Result<Model> {
    from_bytes_with_limits(bytes, &LoadLimits::default())
}

/// Parses and validates the bytes of a model file under `limits`.
///
/// Every size is checked before anything is allocated from it, all arithmetic on sizes is
/// checked, and the buffers the model is decoded into are reserved fallibly: a hostile file
/// gives [`Error::CorruptModel`], [`Error::UnsupportedVersion`], [`Error::LimitExceeded`] or
/// [`Error::Allocation`], never a panic or an abort.
pub fn from_bytes_with_limits(bytes: &[u8], limits: &LoadLimits) -> Result<Model> {
    let decoded = decode(bytes, limits)?;
    if decoded.version == FORMAT_VERSION_RECURRENT {
        return assemble_stages(decoded)?.to_feed_forward().map_err(|e| {
            Error::InvalidArgument(format!(
                "the model file holds recurrent layers (format version 3; {e}): load it as \
                     a SequenceModel"
            ))
        });
    }
    // Layers that do not chain are a corrupt file here, not a caller's shape mismatch.
    let mut model = Model::new(decoded.layers).map_err(|e| corrupt(e.to_string()))?;
    if let Some((input, outputs)) = decoded.fracs {
        model.set_fixed16_fracs(input, &outputs)?;
    }
    Ok(model)
}

/// Parses and validates the bytes of a model file of any version as a [`SequenceModel`]:
/// a version-1 or -2 file gives fully-connected stages (its fixed16 formats kept).
pub fn sequence_from_bytes_with_limits(bytes: &[u8], limits: &LoadLimits) -> Result<SequenceModel> {
    let decoded = decode(bytes, limits)?;
    if decoded.version == FORMAT_VERSION_RECURRENT {
        assemble_stages(decoded)
    } else {
        let mut model = Model::new(decoded.layers).map_err(|e| corrupt(e.to_string()))?;
        if let Some((input, outputs)) = decoded.fracs {
            model.set_fixed16_fracs(input, &outputs)?;
        }
        Ok(SequenceModel::from(model))
    }
}

/// Parses and validates the bytes of a model file of any version as a [`SequenceModel`] under
/// the default [`LoadLimits`].
pub fn sequence_from_bytes(bytes: &[u8]) -> Result<SequenceModel> {
    sequence_from_bytes_with_limits(bytes, &LoadLimits::default())
}

/// Reads and validates a model file of any version as a [`SequenceModel`].
pub fn load_sequence(path: &Path, limits: &LoadLimits) -> Result<SequenceModel> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    check_limit("model file bytes", len, limits.max_file_bytes)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    sequence_from_bytes_with_limits(&bytes, limits)
}

/// A model file's matrices, validated one by one, before they are put together.
struct Decoded {
    version: u32,
    /// Per matrix (version 3 only): its kind and the recurrent layer it belongs to.
    kinds: Vec<(MatrixKind, Option<String>)>,
    layers: Vec<EieLayer>,
    fracs: Option<(u32, Vec<u32>)>,
}

/// Puts a version-3 file's matrices together into stages: a `*_ih` matrix followed by the
/// matching `*_hh` matrix of the same `stage` is one recurrent layer, an `fc` matrix one
/// fully-connected layer. Anything else is [`Error::CorruptModel`].
fn assemble_stages(decoded: Decoded) -> Result<SequenceModel> {
    let mut stages = Vec::new();
    let mut it = decoded.kinds.into_iter().zip(decoded.layers).enumerate();
    while let Some((i, ((kind, stage), layer))) = it.next() {
        match (kind.cell(), stage) {
            (None, None) => stages.push(Stage::Fc(layer)),
            (None, Some(_)) => {
                return Err(corrupt(format!(
                    "layer {i}: `stage` is a field of recurrent matrices only"
                )))
            }
            (Some(_), None) => {
                return Err(corrupt(format!(
                    "layer {i}: recurrent matrix without `stage`"
                )))
            }
            (Some((_, true)), Some(_)) => {
                return Err(corrupt(format!(
                    "layer {i}: a hidden-to-hidden matrix not preceded by its input-to-hidden \
                     matrix"
                )))
            }
            (Some((cell, false)), Some(name)) => {
                let Some((_, ((next_kind, next_stage), hh))) = it.next() else {
                    return Err(corrupt(format!(
                        "layer {i}: the last matrix is an input-to-hidden matrix without its \
                         hidden-to-hidden matrix"
                    )));
                };
                if next_kind != MatrixKind::of(cell, true) || next_stage.as_deref() != Some(&name) {
                    return Err(corrupt(format!(
                        "layer {}: expected the `{}` matrix of `{name}`",
                        i + 1,
                        cell.name().to_owned() + "_hh"
                    )));
                }
                let r = RecurrentLayer::new(name, cell, layer, hh)
                    .map_err(|e| corrupt(format!("layer {i}: {e}")))?;
                stages.push(Stage::Recurrent(Box::new(r)));
            }
        }
    }
    SequenceModel::new(stages).map_err(|e| corrupt(e.to_string()))
}

fn decode(bytes: &[u8], limits: &LoadLimits) -> Result<Decoded> {
    check_limit(
        "model file bytes",
        bytes.len() as u64,
        limits.max_file_bytes,
    )?;
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| corrupt(format!("not a valid safetensors container: {e}")))?;
    let (header_len, metadata) = SafeTensors::read_metadata(bytes)
        .map_err(|e| corrupt(format!("not a valid safetensors container: {e}")))?;
    // The container parsed, so its header is bytes 8 .. 8 + header_len.
    let header = bytes
        .get(8..8 + header_len)
        .ok_or_else(|| corrupt("not a valid safetensors container: header length"))?;
    super::json::distinct_keys(header)
        .map_err(|e| corrupt(format!("the safetensors header: {e}")))?;
    let meta = metadata
        .metadata()
        .as_ref()
        .ok_or_else(|| corrupt("no metadata: not an eie model file"))?;
    let get = |k: &str| {
        meta.get(k)
            .ok_or_else(|| corrupt(format!("metadata key `{k}` missing")))
    };
    if !meta.contains_key("format") {
        return Err(corrupt(format!(
            "a safetensors file without the `format` metadata key: not an eie model (its \
             {} tensors may be dense weights: `eie compress` turns them into one)",
            st.len()
        )));
    }
    if get("format")? != FORMAT_NAME {
        return Err(corrupt(format!(
            "metadata `format` is `{}`, expected `{FORMAT_NAME}`",
            get("format")?
        )));
    }
    check_container_header(header)?;
    let version_text = get("format_version")?;
    let version = match version_text.parse::<u32>() {
        Ok(v @ (FORMAT_VERSION_1 | FORMAT_VERSION | FORMAT_VERSION_RECURRENT))
            if v.to_string() == *version_text =>
        {
            v
        }
        _ => {
            return Err(Error::UnsupportedVersion {
                found: version_text.clone(),
                supported: FORMAT_VERSION_RECURRENT,
            })
        }
    };
    if let Some(k) = meta
        .keys()
        .filter(|k| !METADATA_KEYS.contains(&k.as_str()))
        .min()
    {
        return Err(corrupt(format!(
            "metadata key `{k}` is not one of the format's ({})",
            METADATA_KEYS.join(", ")
        )));
    }
    let model_json = get("model")?;
    super::json::distinct_keys(model_json.as_bytes())
        .map_err(|e| corrupt(format!("metadata `model` is not valid: {e}")))?;
    let header: ModelHeader = serde_json::from_str(model_json)
        .map_err(|e| corrupt(format!("metadata `model` is not valid: {e}")))?;
    if header.layers.is_empty() {
        return Err(corrupt("the model has no layers"));
    }
    let fracs = fixed16_fracs(&header)?;
    if version == FORMAT_VERSION_RECURRENT && fracs.is_some() {
        return Err(corrupt(
            "fixed16 formats (`input_frac`, `output_frac`) are not defined in format version 3",
        ));
    }
    let mut kinds = Vec::with_capacity(header.layers.len());
    for (i, h) in header.layers.iter().enumerate() {
        match (version, h.kind, &h.stage) {
            (FORMAT_VERSION_RECURRENT, Some(kind), stage) => kinds.push((kind, stage.clone())),
            (FORMAT_VERSION_RECURRENT, None, _) => {
                return Err(corrupt(format!("layer {i}: `kind` missing")))
            }
            (_, None, None) => {}
            (_, _, _) => {
                return Err(corrupt(format!(
                    "layer {i}: `kind` and `stage` are fields of format version 3 only"
                )))
            }
        }
    }
    check_limit(
        "layer count",
        header.layers.len() as u64,
        limits.max_layers as u64,
    )?;
    let crc_json = get("crc32")?;
    super::json::distinct_keys(crc_json.as_bytes())
        .map_err(|e| corrupt(format!("metadata `crc32` is not valid: {e}")))?;
    let checksums: BTreeMap<String, u32> = serde_json::from_str(crc_json)
        .map_err(|e| corrupt(format!("metadata `crc32` is not valid: {e}")))?;
    let expected_names: Vec<String> = header
        .layers
        .iter()
        .enumerate()
        .flat_map(|(i, h)| {
            let mut v = vec![tensor_name(i, "codebook"), tensor_name(i, "entries")];
            if version == FORMAT_VERSION_1 {
                v.push(tensor_name(i, "pe_ptr"));
                v.push(tensor_name(i, "col_ptr"));
            } else {
                v.push(tensor_name(i, "col_len"));
            }
            if h.bias {
                v.push(tensor_name(i, "bias"));
            }
            v
        })
        .collect();
    if st.len() != expected_names.len() || checksums.len() != expected_names.len() {
        return Err(corrupt(format!(
            "{} tensors and {} checksums stored, the header describes {}",
            st.len(),
            checksums.len(),
            expected_names.len()
        )));
    }
    // `shape` empty: any length, in one dimension (`[bytes]` of a U8 tensor).
    let tensor = |name: &str, dtype: Dtype, shape: &[usize]| -> Result<&[u8]> {
        let t = st
            .tensor(name)
            .map_err(|_| corrupt(format!("tensor `{name}` missing")))?;
        let shape_ok = if shape.is_empty() {
            t.shape().len() == 1
        } else {
            t.shape() == shape
        };
        if t.dtype() != dtype || !shape_ok {
            let want = if shape.is_empty() {
                "[n]".to_string()
            } else {
                format!("{shape:?}")
            };
            return Err(corrupt(format!(
                "tensor `{name}` is {:?} {:?}, expected {dtype:?} {want}",
                t.dtype(),
                t.shape()
            )));
        }
        let data = t.data();
        let want = checksums
            .get(name)
            .ok_or_else(|| corrupt(format!("no checksum for `{name}`")))?;
        let got = crc32fast::hash(data);
        if got != *want {
            return Err(corrupt(format!(
                "tensor `{name}` fails its checksum (stored {want:08x}, computed {got:08x})"
            )));
        }
        Ok(data)
    };
    let f32s = |d: &[u8]| decode_le4(d, "model tensor", f32::from_le_bytes);
    let u32s = |d: &[u8]| decode_le4(d, "model pointers", u32::from_le_bytes);
    let mut layers = Vec::with_capacity(header.layers.len());
    for (i, h) in header.layers.into_iter().enumerate() {
        if !(2..=8).contains(&h.bits) || h.pes == 0 || h.rows == 0 || h.cols == 0 {
            return Err(corrupt(format!(
                "layer {i}: invalid header (rows {}, cols {}, pes {}, bits {})",
                h.rows, h.cols, h.pes, h.bits
            )));
        }
        if h.rows > MAX_DIM || h.cols > MAX_DIM {
            return Err(corrupt(format!(
                "layer {i}: shape {}x{} beyond the format's limit of {MAX_DIM} rows and columns",
                h.rows, h.cols
            )));
        }
        check_limit(
            format!("layer {i} rows"),
            h.rows as u64,
            limits.max_rows.min(MAX_DIM) as u64,
        )?;
        // cols <= MAX_DIM, so cols + 1 cannot overflow; pes is bounded only by the JSON.
        let pe_ptr_len = h
            .pes
            .checked_add(1)
            .ok_or_else(|| corrupt(format!("layer {i}: PE count {} overflows", h.pes)))?;
        h.pes
            .checked_mul(h.cols + 1)
            .ok_or_else(|| corrupt(format!("layer {i}: pointer count overflows")))?;
        let codebook = f32s(tensor(
            &tensor_name(i, "codebook"),
            Dtype::F32,
            &[1 << h.bits],
        )?)?;
        let bias = if h.bias {
            Some(f32s(tensor(
                &tensor_name(i, "bias"),
                Dtype::F32,
                &[h.rows],
            )?)?)
        } else {
            None
        };
        let packed = tensor(&tensor_name(i, "entries"), Dtype::U8, &[])?;
        let entries = unpack_entries(packed, h.bits)?;
        let (pe_ptr, col_ptr) = match (version, h.len_bits) {
            (FORMAT_VERSION_1, None) => (
                u32s(tensor(
                    &tensor_name(i, "pe_ptr"),
                    Dtype::U32,
                    &[pe_ptr_len],
                )?)?,
                u32s(tensor(
                    &tensor_name(i, "col_ptr"),
                    Dtype::U32,
                    &[h.pes, h.cols + 1],
                )?)?,
            ),
            (FORMAT_VERSION | FORMAT_VERSION_RECURRENT, Some(width)) => {
                let data = tensor(&tensor_name(i, "col_len"), Dtype::U8, &[])?;
                pointers_from_lengths(i, data, width, h.pes, h.cols, entries.len())?
            }
            (_, Some(_)) => {
                return Err(corrupt(format!(
                    "layer {i}: `len_bits` is not a field of format version {version}"
                )))
            }
            (_, None) => return Err(corrupt(format!("layer {i}: `len_bits` missing"))),
        };
        layers.push(EieLayer::from_parts(
            h.name,
            h.rows,
            h.cols,
            h.pes,
            h.bits,
            codebook,
            bias,
            h.activation,
            pe_ptr,
            col_ptr,
            entries,
        )?);
    }
    Ok(Decoded {
        version,
        kinds,
        layers,
        fracs,
    })
}

/// The stored fixed16 formats: the input's fraction bits and each layer's output's, or `None`
/// for a file that stores none (it runs with Q5.10 throughout). Either the model and every
/// layer state them, each in 0..=24 (`fixed16::MAX_ACT_FRAC`), or none does.
fn fixed16_fracs(header: &ModelHeader) -> Result<Option<(u32, Vec<u32>)>> {
    let stated = header
        .layers
        .iter()
        .filter(|l| l.output_frac.is_some())
        .count();
    let input = match (header.input_frac, stated) {
        (None, 0) => return Ok(None),
        (Some(f), n) if n == header.layers.len() => f,
        (None, _) => {
            return Err(corrupt(
                "layers state `output_frac` but the model has no `input_frac`",
            ))
        }
        (Some(_), n) => {
            return Err(corrupt(format!(
                "`input_frac` is stated, but {} of {} layers lack `output_frac`",
                header.layers.len() - n,
                header.layers.len()
            )))
        }
    };
    let check = |what: String, f: u32| {
        if f > super::fixed_point::MAX_ACT_FRAC {
            Err(corrupt(format!(
                "{what} is {f}, outside 0..={}",
                super::fixed_point::MAX_ACT_FRAC
            )))
        } else {
            Ok(f)
        }
    };
    let input = check("`input_frac`".into(), input)?;
    let outputs = header
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            check(
                format!("layer {i}: `output_frac`"),
                l.output_frac.unwrap_or(0),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((input, outputs)))
}

/// Rebuilds a version-2 layer's PE and column pointers from its packed slice lengths (`data`,
/// `pes × cols` fields of `width` bits, PE after PE, column after column), checking the tensor's
/// length before allocating anything from `pes` or `cols`, and the lengths' sum against the
/// `entries` stored.
fn pointers_from_lengths(
    layer: usize,
    data: &[u8],
    width: u8,
    pes: usize,
    cols: usize,
    entries: usize,
) -> Result<(Vec<u32>, Vec<u32>)> {
    if !(1..=32).contains(&width) {
        return Err(corrupt(format!(
            "layer {layer}: `len_bits` {width} outside 1..=32"
        )));
    }
    // pes × (cols + 1) fits a usize (checked by the caller), so pes × cols does too.
    let slices = pes * cols;
    let want_bits = slices as u128 * u128::from(width);
    if want_bits.div_ceil(8) != data.len() as u128 {
        return Err(corrupt(format!(
            "layer {layer}: `col_len` holds {} bytes, {pes} PEs × {cols} columns × {width} bits \
             take {}",
            data.len(),
            want_bits.div_ceil(8)
        )));
    }
    if entries > u32::MAX as usize {
        return Err(corrupt(format!(
            "layer {layer}: {entries} entries exceed the format's 2^32 limit"
        )));
    }
    // Every slice takes at least one bit of the tensor, so these allocations are bounded by
    // the file's length.
    let mut pe_ptr = try_with_capacity(pes + 1, "model pointers")?;
    let mut col_ptr = try_with_capacity(slices + pes, "model pointers")?;
    let mask = (1u64 << width) - 1;
    let (mut acc, mut have) = (0u64, 0u32);
    let mut bytes = data.iter();
    let mut total = 0u64;
    for p in 0..pes {
        pe_ptr.push(total as u32);
        let mut local = 0u64;
        col_ptr.push(0);
        for j in 0..cols {
            while have < u32::from(width) {
                // The length check above guarantees the bytes are there.
                let b = bytes.next().copied().unwrap_or(0);
                acc |= u64::from(b) << have;
                have += 8;
            }
            let len = acc & mask;
            acc >>= width;
            have -= u32::from(width);
            local += len;
            if total + local > entries as u64 {
                return Err(corrupt(format!(
                    "layer {layer}: slice lengths up to PE {p} column {j} exceed the {entries} \
                     entries stored"
                )));
            }
            col_ptr.push(local as u32);
        }
        total += local;
    }
    if acc != 0 {
        return Err(corrupt(format!(
            "layer {layer}: unused bits at the end of `col_len` are not zero"
        )));
    }
    if total != entries as u64 {
        return Err(corrupt(format!(
            "layer {layer}: slice lengths sum to {total}, the layer stores {entries} entries"
        )));
    }
    pe_ptr.push(total as u32);
    Ok((pe_ptr, col_ptr))
}
