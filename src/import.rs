//! Reading dense weights and activations from `.npy` and `.safetensors` files, and writing
//! float32 `.npy` outputs.
//!
//! Weights follow PyTorch's convention: a weight tensor is `[out, in]`, a bias `[out]`.
//! Element types f32, f16, bf16 (safetensors only: numpy has no bf16) and f64 are accepted and
//! converted to f32.
//!
//! Start with [`read_tensor`] for one tensor, or [`load_dense_layers`] for the layers
//! [`crate::compress::compress_model`] takes; [`SafetensorsFile`] lists a file's tensors, and
//! [`write_npy`] writes outputs.

use crate::dense::DenseLayer;
use crate::error::{check_finite, Error, Result};
use npyz::WriterBuilder;
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// A dense tensor converted to f32, row-major.
///
/// Returned by [`read_tensor`], [`read_npy`] and [`SafetensorsFile::tensor`].
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

/// What this crate reads from a `.npy` header.
struct NpyHeader {
    /// The `descr` value: a type string such as `<f4`, or the literal text of a structured
    /// dtype (which this crate does not read).
    descr: String,
    /// Whether `descr` was a plain type string.
    plain: bool,
    fortran: bool,
    shape: Vec<u64>,
}

/// A cursor over the Python dict literal of a `.npy` header. Iterative (no recursion), so no
/// header can exhaust the stack.
struct Literal<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Literal<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!(
                "header: expected `{}` at byte {}",
                c as char, self.i
            ))
        }
    }

    /// A quoted string (either quote; a backslash keeps the next byte as it is).
    fn string(&mut self) -> std::result::Result<&'a [u8], String> {
        self.skip_ws();
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("header: expected a string at byte {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == quote {
                let text = &self.s[start..self.i];
                self.i += 1;
                return Ok(text);
            }
            self.i += if c == b'\\' { 2 } else { 1 };
        }
        Err("header: unterminated string".into())
    }

    /// Skips any value: a string, a bracketed group (nesting counted, not recursed) or a bare
    /// word. Returns its text.
    fn any(&mut self) -> std::result::Result<&'a [u8], String> {
        self.skip_ws();
        let start = self.i;
        match self.peek() {
            Some(b'\'' | b'"') => {
                self.string()?;
            }
            Some(b'(' | b'[' | b'{') => {
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        None => return Err("header: unbalanced brackets".into()),
                        Some(b'\'' | b'"') => {
                            self.string()?;
                            continue;
                        }
                        Some(b'(' | b'[' | b'{') => depth += 1,
                        Some(b')' | b']' | b'}') => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                break;
                            }
                        }
                        Some(_) => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                while self
                    .peek()
                    .is_some_and(|c| !c.is_ascii_whitespace() && c != b',' && c != b'}')
                {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(format!("header: expected a value at byte {}", self.i));
                }
            }
        }
        Ok(&self.s[start..self.i])
    }

    /// A tuple of non-negative integers (Python 2's `3L` suffix allowed).
    fn shape(&mut self) -> std::result::Result<Vec<u64>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(b')') {
                self.i += 1;
                return Ok(dims);
            }
            let start = self.i;
            let mut value = 0u64;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(c - b'0')))
                    .ok_or("header: a dimension overflows 64 bits")?;
                self.i += 1;
            }
            if self.i == start {
                return Err(format!(
                    "header: expected a non-negative dimension at byte {}",
                    self.i
                ));
            }
            if self.peek() == Some(b'L') {
                self.i += 1;
            }
            dims.push(value);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b')') => {}
                _ => return Err(format!("header: expected `,` or `)` at byte {}", self.i)),
            }
        }
    }
}

fn parse_npy_dict(text: &[u8]) -> std::result::Result<NpyHeader, String> {
    let mut p = Literal { s: text, i: 0 };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    loop {
        p.skip_ws();
        if p.peek() == Some(b'}') {
            p.i += 1;
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        p.skip_ws();
        match key {
            b"descr" if descr.is_none() => {
                let plain = matches!(p.peek(), Some(b'\'' | b'"'));
                let text = if plain { p.string()? } else { p.any()? };
                descr = Some((String::from_utf8_lossy(text).into_owned(), plain));
            }
            b"fortran_order" if fortran.is_none() => {
                fortran = Some(match p.any()? {
                    b"True" => true,
                    b"False" => false,
                    other => {
                        return Err(format!(
                            "header: fortran_order is `{}`, not True or False",
                            String::from_utf8_lossy(other)
                        ))
                    }
                });
            }
            b"shape" if shape.is_none() => shape = Some(p.shape()?),
            b"descr" | b"fortran_order" | b"shape" => {
                return Err(format!(
                    "header: key `{}` appears twice",
                    String::from_utf8_lossy(key)
                ))
            }
            _ => {
                p.any()?;
            }
        }
        p.skip_ws();
        match p.peek() {
            Some(b',') => p.i += 1,
            Some(b'}') => {}
            _ => return Err(format!("header: expected `,` or `}}` at byte {}", p.i)),
        }
    }
    p.skip_ws();
    if p.i != text.len() {
        return Err(format!("header: unexpected text at byte {}", p.i));
    }
    let missing = |k: &str| format!("header: key `{k}` missing");
    let (descr, plain) = descr.ok_or_else(|| missing("descr"))?;
    Ok(NpyHeader {
        descr,
        plain,
        fortran: fortran.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
    })
}

/// Splits a `.npy` file into its header and its data bytes (versions 1.0, 2.0 and 3.0).
fn parse_npy(bytes: &[u8]) -> std::result::Result<(NpyHeader, &[u8]), String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < MAGIC.len() + 2 || !bytes.starts_with(MAGIC) {
        return Err("not a .npy file (no \\x93NUMPY magic)".into());
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (len, start): (usize, usize) = match major {
        1 if bytes.len() >= 10 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        1..=3 => return Err("file ends inside the header length".into()),
        _ => return Err(format!("unsupported .npy version {major}.{minor}")),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| format!("header of {len} bytes runs past the end of the file"))?;
    Ok((parse_npy_dict(&bytes[start..end])?, &bytes[end..]))
}

/// One element of a `.npy` array as stored: a float (f16, f32 and f64 are exact in f64), a
/// signed or an unsigned integer.
///
/// [`decode_npy`] hands each element to its caller's conversion.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum NpyElement {
    /// An `f2`, `f4` or `f8` element.
    Float(f64),
    /// An `i1` to `i8` element.
    Int(i64),
    /// A `u1` to `u8` element.
    UInt(u64),
}

/// A `.npy` array decoded in C order.
pub(crate) struct NpyArray<T> {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The elements, converted.
    pub values: Vec<T>,
}

/// The one `.npy` decoder of the crate ([`read_npy`], and the image, label and sequence readers
/// of [`crate::classify`]): a `.npy` file's bytes (versions 1.0 to 3.0; f16, f32, f64 or 8- to
/// 64-bit integers, signed or not, either byte order, C order or 2-D Fortran order) decoded
/// into C order, each element converted by `convert`. `path` names the file in errors.
///
/// The element count is the checked product of the header's shape and must be backed by the
/// data bytes; the buffers are reserved fallibly. A hostile header is [`Error::Parse`] (or
/// [`Error::Allocation`]), never a panic or an abort; a structured or unknown dtype is
/// [`Error::UnsupportedDtype`].
pub(crate) fn decode_npy<T: Copy + Default>(
    bytes: &[u8],
    path: &Path,
    convert: impl Fn(NpyElement) -> T,
) -> Result<NpyArray<T>> {
    let (header, data) = parse_npy(bytes).map_err(|e| parse_err(path, e))?;
    let unsupported = || Error::UnsupportedDtype {
        what: path.display().to_string(),
        dtype: header.descr.clone(),
    };
    if !header.plain {
        return Err(unsupported());
    }
    let d = header.descr.as_bytes();
    let (little, kind) = match d.first() {
        Some(b'<') => (true, &d[1..]),
        Some(b'>') => (false, &d[1..]),
        Some(b'=' | b'|') => (cfg!(target_endian = "little"), &d[1..]),
        _ => (cfg!(target_endian = "little"), d),
    };
    // Element size and whether the kind is a float, a signed or an unsigned integer.
    let (size, float, signed) = match kind {
        b"f2" => (2, true, true),
        b"f4" => (4, true, true),
        b"f8" => (8, true, true),
        b"i1" => (1, false, true),
        b"u1" => (1, false, false),
        b"i2" => (2, false, true),
        b"u2" => (2, false, false),
        b"i4" => (4, false, true),
        b"u4" => (4, false, false),
        b"i8" => (8, false, true),
        b"u8" => (8, false, false),
        _ => return Err(unsupported()),
    };
    // An array with a zero dimension is empty whatever its other dimensions are.
    let count = if header.shape.contains(&0) {
        Some(0)
    } else {
        header
            .shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .and_then(|n| usize::try_from(n).ok())
    };
    let need = count.and_then(|n| n.checked_mul(size));
    let (Some(count), Some(need)) = (count, need) else {
        return Err(parse_err(
            path,
            format!("shape {:?} holds more values than memory can", header.shape),
        ));
    };
    if data.len() < need {
        return Err(parse_err(
            path,
            format!(
                "shape {:?} of {} needs {need} data bytes; the file holds {}",
                header.shape,
                header.descr,
                data.len()
            ),
        ));
    }
    let what = format!("{}", path.display());
    let mut values: Vec<T> = crate::error::try_with_capacity(count, &what)?;
    let data = &data[..need];
    values.extend(data.chunks_exact(size).map(|c| {
        // The element's bytes in little-endian order, zero- or sign-extended to 8.
        let mut b = [0u8; 8];
        for (i, &v) in c.iter().enumerate() {
            b[if little { i } else { size - 1 - i }] = v;
        }
        if signed && !float && b[size - 1] & 0x80 != 0 {
            b[size..].fill(0xff);
        }
        convert(match (float, size) {
            (true, 2) => NpyElement::Float(f64::from(half::f16::from_le_bytes([b[0], b[1]]))),
            (true, 4) => NpyElement::Float(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            (true, _) => NpyElement::Float(f64::from_le_bytes(b)),
            (false, _) if signed => NpyElement::Int(i64::from_le_bytes(b)),
            (false, _) => NpyElement::UInt(u64::from_le_bytes(b)),
        })
    }));
    let shape: Vec<usize> = header.shape.iter().map(|&d| d as usize).collect();
    // (An empty array needs no transposition, and a loop over a huge dimension of an empty
    // array would never end.)
    let values = if header.fortran && shape.len() == 2 && !values.is_empty() {
        let (r, c) = (shape[0], shape[1]);
        let mut t = crate::error::try_filled(values.len(), T::default(), &what)?;
        for i in 0..r {
            for j in 0..c {
                t[i * c + j] = values[j * r + i];
            }
        }
        t
    } else if header.fortran && shape.len() > 2 {
        return Err(parse_err(
            path,
            "Fortran-order arrays above 2-D are not supported",
        ));
    } else {
        values
    };
    Ok(NpyArray { shape, values })
}

/// Whether a `.npy` file's elements are floats (else integers, or an error for what
/// [`decode_npy`] does not read).
pub(crate) fn npy_is_float(bytes: &[u8], path: &Path) -> Result<bool> {
    let (header, _) = parse_npy(bytes).map_err(|e| parse_err(path, e))?;
    let kind = header.descr.trim_start_matches(['<', '>', '=', '|']);
    Ok(header.plain && kind.starts_with('f'))
}

/// Reads a `.npy` array of f32, f16, f64 or 8- to 64-bit integers, signed or not (either byte
/// order, C or Fortran order) as f32 in C order. Integers are taken as their values (uint8
/// pixels stay 0..=255: [`crate::classify::read_images`] scales them to `0..=1` as MNIST models
/// expect); beyond 2^24 they round to the nearest f32.
///
/// The element count is the checked product of the header's shape and must be backed by the
/// file's data bytes; the buffers are reserved fallibly. A hostile header is [`Error::Parse`]
/// (or [`Error::Allocation`]), never a panic or an abort.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = read_file(path)?;
    let a = decode_npy(&bytes, path, |e| match e {
        NpyElement::Float(x) => x as f32,
        NpyElement::Int(i) => i as f32,
        NpyElement::UInt(u) => u as f32,
    })?;
    Ok(Tensor {
        shape: a.shape,
        data: a.values,
    })
}

/// Writes a float32 `.npy` file atomically.
///
/// [`read_npy`] reads one back.
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if count != Some(data.len()) {
        return Err(Error::Shape(format!(
            "{} values for an array of shape {shape:?}",
            data.len()
        )));
    }
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
    let size = match view.dtype() {
        Dtype::F32 => 4,
        Dtype::F16 | Dtype::BF16 => 2,
        Dtype::F64 => 8,
        other => {
            return Err(Error::UnsupportedDtype {
                what: format!("{}: tensor `{name}`", path.display()),
                dtype: format!("{other:?}"),
            })
        }
    };
    // safetensors has checked the shape against the data bytes; the buffer is reserved
    // fallibly all the same.
    let mut data: Vec<f32> = crate::error::try_with_capacity(
        d.len() / size,
        &format!("{}: tensor `{name}`", path.display()),
    )?;
    match view.dtype() {
        Dtype::F32 => data.extend(
            d.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Dtype::F16 => data.extend(
            d.chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        Dtype::BF16 => data.extend(
            d.chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        _ => {
            data.extend(d.chunks_exact(8).map(|c| {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }))
        }
    }
    Ok(Tensor {
        shape: view.shape().to_vec(),
        data,
    })
}

/// An open `.safetensors` file of dense tensors.
///
/// Opened by [`SafetensorsFile::open`]; [`load_dense_layers`] reads the layers to compress
/// from one.
pub struct SafetensorsFile {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl SafetensorsFile {
    /// Reads and parses the file's header.
    ///
    /// See [`SafetensorsFile::tensor`] to read a tensor.
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
    ///
    /// [`load_dense_layers`] takes layers in this order.
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
    ///
    /// See [`SafetensorsFile::names`].
    pub fn contains(&self, name: &str) -> bool {
        self.parsed().tensor(name).is_ok()
    }

    /// The shape of a tensor, without converting its data; `None` when there is no such tensor.
    ///
    /// See [`SafetensorsFile::tensor`].
    pub fn tensor_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.parsed().tensor(name).ok().map(|t| t.shape().to_vec())
    }

    /// One tensor as f32.
    ///
    /// See [`Tensor`].
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
///
/// Dispatches on [`is_safetensors`] to [`SafetensorsFile`] or [`read_npy`].
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
///
/// See [`read_tensor`].
pub fn is_safetensors(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "safetensors")
}

pub(crate) fn weight_layer(name: &str, t: Tensor, bias: Option<Tensor>) -> Result<DenseLayer> {
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
///
/// See [`read_npy`]; [`input_batch`] does the same for a tensor already read.
pub fn read_input(path: &Path, input_size: usize) -> Result<(usize, Vec<f32>)> {
    input_batch(read_npy(path)?, path, input_size)
}

/// [`read_input`] of a tensor already read from `path` (named in errors): `(batch, values)`
/// of an `[in]` or `[batch, in]` tensor of finite values. `eie run` reads its input file once
/// and takes the batch this way.
pub fn input_batch(t: Tensor, path: &Path, input_size: usize) -> Result<(usize, Vec<f32>)> {
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
