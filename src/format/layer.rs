use super::fixed_point::LayerFormat;
use crate::error::{check_finite, try_filled, try_with_capacity, Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The largest zero run one entry can express (4 bits). Longer gaps need padding entries.
///
/// [`encode_column`] pads with it; see [`entry`].
pub const MAX_RUN: u8 = 15;

/// The largest `rows` or `cols` a layer may have: row numbers are 32-bit in [`SparseCodes`]
/// and column numbers 32-bit in the encoder, so larger layers are rejected on construction and
/// on load.
pub const MAX_DIM: usize = u32::MAX as usize;

/// Packs a codebook index and a zero run into one in-memory entry (`code | run << 8`).
///
/// [`entry_code`] and [`entry_run`] take it apart; [`EieLayer::entries`] holds them.
#[inline]
pub fn entry(code: u8, run: u8) -> u16 {
    code as u16 | (run as u16) << 8
}

/// The codebook index of an entry (0 = padding / zero).
///
/// See [`entry`].
#[inline]
pub fn entry_code(e: u16) -> u8 {
    (e & 0xff) as u8
}

/// The zero run of an entry: how many of this PE's rows are skipped before it.
///
/// See [`entry`] and [`MAX_RUN`].
#[inline]
pub fn entry_run(e: u16) -> u8 {
    (e >> 8) as u8
}

/// Activation function applied on write-back.
///
/// Given to [`EieLayer::encode`] (see the example there on [`EieLayer`]) and read back by
/// [`EieLayer::activation`]; parsed from `relu` or `identity` by `str::parse`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `f(x) = x`.
    #[default]
    Identity,
    /// `f(x) = max(x, 0)`.
    Relu,
}

impl Activation {
    /// Applies the function to one value.
    ///
    /// [`EieLayer::activation`] says which one a layer applies.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => x.max(0.0),
        }
    }

    /// The name used in files and on the command line.
    ///
    /// See [`Activation`]'s `FromStr` for the names it parses.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
        }
    }
}

impl std::str::FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "identity" | "none" | "linear" => Ok(Activation::Identity),
            "relu" => Ok(Activation::Relu),
            other => Err(Error::InvalidArgument(format!(
                "unknown activation `{other}` (expected relu or identity)"
            ))),
        }
    }
}

/// A weight matrix after weight sharing: the non-zero codes of each column, sorted by row.
///
/// This is the intermediate form between compression and EIE encoding, and what
/// [`EieLayer::sparse_codes`] decodes back to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparseCodes {
    /// Output count (rows of W).
    pub rows: usize,
    /// Input count (columns of W).
    pub cols: usize,
    /// `col_ptr[j]..col_ptr[j + 1]` indexes column j's entries; length `cols + 1`.
    pub col_ptr: Vec<usize>,
    /// Row of each entry, increasing within a column.
    pub row_idx: Vec<u32>,
    /// Codebook index of each entry, never 0.
    pub code: Vec<u8>,
}

impl SparseCodes {
    /// Builds the column lists of a dense row-major `rows x cols` matrix of codes (0 = zero).
    ///
    /// The [`EieLayer`] example starts here; [`crate::compress::compress_layer`] makes its codes
    /// with it.
    pub fn from_dense(rows: usize, cols: usize, codes: &[u8]) -> Result<Self> {
        if rows > MAX_DIM || cols > MAX_DIM {
            return Err(Error::Shape(format!(
                "a {rows}x{cols} matrix is beyond the limit of {MAX_DIM} rows and columns"
            )));
        }
        if rows.checked_mul(cols) != Some(codes.len()) {
            return Err(Error::Shape(format!(
                "{} codes for a {rows}x{cols} matrix",
                codes.len()
            )));
        }
        let mut count = vec![0usize; cols + 1];
        for row in codes.chunks_exact(cols.max(1)).take(rows) {
            for (j, &c) in row.iter().enumerate() {
                count[j + 1] += (c != 0) as usize;
            }
        }
        for j in 0..cols {
            count[j + 1] += count[j];
        }
        let nnz = count[cols];
        let mut fill = count.clone();
        let mut row_idx = vec![0u32; nnz];
        let mut code = vec![0u8; nnz];
        for (i, row) in codes.chunks_exact(cols.max(1)).take(rows).enumerate() {
            for (j, &c) in row.iter().enumerate() {
                if c != 0 {
                    row_idx[fill[j]] = i as u32;
                    code[fill[j]] = c;
                    fill[j] += 1;
                }
            }
        }
        Ok(SparseCodes {
            rows,
            cols,
            col_ptr: count,
            row_idx,
            code,
        })
    }

    /// Number of stored (non-zero) codes.
    ///
    /// See [`EieLayer::nnz`].
    pub fn nnz(&self) -> usize {
        self.code.len()
    }

    /// Checks that the column lists are consistent: `col_ptr` holds `cols + 1` non-decreasing
    /// values from 0 to the number of codes, `row_idx` and `code` hold that many values, rows
    /// increase strictly within each column and stay below `rows`, no code is 0, and `rows`
    /// and `cols` are at most [`MAX_DIM`]. [`EieLayer::encode`] calls it; [`Self::to_dense`]
    /// expects it to pass.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Shape(format!("sparse codes: {msg}")));
        if self.rows > MAX_DIM || self.cols > MAX_DIM {
            return bad(format!(
                "shape {}x{} beyond the limit of {MAX_DIM} rows and columns",
                self.rows, self.cols
            ));
        }
        if self.col_ptr.len() != self.cols + 1 {
            return bad(format!(
                "{} column pointers for {} columns (expected cols + 1)",
                self.col_ptr.len(),
                self.cols
            ));
        }
        let nnz = self.code.len();
        if self.row_idx.len() != nnz {
            return bad(format!(
                "{} row indices for {nnz} codes",
                self.row_idx.len()
            ));
        }
        if self.col_ptr[0] != 0 || self.col_ptr[self.cols] != nnz {
            return bad(format!(
                "column pointers span {}..{}, expected 0..{nnz}",
                self.col_ptr[0], self.col_ptr[self.cols]
            ));
        }
        for j in 0..self.cols {
            let (start, end) = (self.col_ptr[j], self.col_ptr[j + 1]);
            if start > end {
                return bad(format!("column pointer {j} decreases"));
            }
            let mut next = 0usize; // the lowest row the next entry may have
            for k in start..end {
                let row = self.row_idx[k] as usize;
                if row < next || row >= self.rows || self.code[k] == 0 {
                    return bad(format!(
                        "entry {k} of column {j}: row {row} / code {} invalid (rows must \
                         increase and stay below {}, codes are non-zero)",
                        self.code[k], self.rows
                    ));
                }
                next = row + 1;
            }
        }
        Ok(())
    }

    /// Expands to a dense row-major matrix of codes.
    ///
    /// The column lists must be consistent ([`Self::validate`]); the layer's own
    /// [`EieLayer::sparse_codes`] always are.
    pub fn to_dense(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.rows * self.cols];
        for j in 0..self.cols {
            for k in self.col_ptr[j]..self.col_ptr[j + 1] {
                out[self.row_idx[k] as usize * self.cols + j] = self.code[k];
            }
        }
        out
    }

    /// The same codes in row order (CSR): each row's columns increasing. One counting pass,
    /// linear in the codes and rows.
    ///
    /// The CSR baselines, the GPU's row-ordered walk, its cost model and the accuracy-aware
    /// search read layers this way. The column lists must be consistent ([`Self::validate`]).
    pub fn by_rows(&self) -> RowOrderCodes {
        let mut row_ptr = vec![0usize; self.rows + 1];
        for &r in &self.row_idx {
            row_ptr[r as usize + 1] += 1;
        }
        for i in 0..self.rows {
            row_ptr[i + 1] += row_ptr[i];
        }
        let mut fill = row_ptr.clone();
        let (mut col, mut code) = (vec![0u32; self.nnz()], vec![0u8; self.nnz()]);
        for j in 0..self.cols {
            for k in self.col_ptr[j]..self.col_ptr[j + 1] {
                let r = self.row_idx[k] as usize;
                col[fill[r]] = j as u32;
                code[fill[r]] = self.code[k];
                fill[r] += 1;
            }
        }
        RowOrderCodes {
            rows: self.rows,
            cols: self.cols,
            row_ptr,
            col,
            code,
        }
    }
}

/// A weight matrix's non-zero codes in row order (CSR), columns increasing within each row:
/// [`SparseCodes::by_rows`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowOrderCodes {
    /// Output count (rows of W).
    pub rows: usize,
    /// Input count (columns of W).
    pub cols: usize,
    /// `row_ptr[i]..row_ptr[i + 1]` indexes row i's entries; length `rows + 1`.
    pub row_ptr: Vec<usize>,
    /// Column of each entry, increasing within a row.
    pub col: Vec<u32>,
    /// Codebook index of each entry, never 0.
    pub code: Vec<u8>,
}

impl RowOrderCodes {
    /// Row `i`'s `(column, code)` pairs, columns increasing.
    ///
    /// See [`SparseCodes::by_rows`].
    pub fn row(&self, i: usize) -> impl Iterator<Item = (u32, u8)> + '_ {
        let r = self.row_ptr[i]..self.row_ptr[i + 1];
        self.col[r.clone()]
            .iter()
            .copied()
            .zip(self.code[r].iter().copied())
    }

    /// Number of stored (non-zero) codes.
    ///
    /// See [`SparseCodes::nnz`].
    pub fn nnz(&self) -> usize {
        self.code.len()
    }
}

/// Encodes one PE's slice of one column: `(local_row, code)` pairs with strictly increasing
/// local rows and non-zero codes, appended to `out` as relative-indexed entries.
///
/// A gap of more than [`MAX_RUN`] zeros is bridged by padding entries `(code 0, run 15)`, as in
/// the paper: column `[0,0,1,2, 18 zeros, 3]` becomes codes `[1,2,0,3]`, runs `[2,0,15,2]`.
/// A row that does not increase, or a zero code, is [`Error::InvalidArgument`] (the entries
/// before it stay in `out`).
pub fn encode_column(
    items: impl IntoIterator<Item = (usize, u8)>,
    out: &mut Vec<u16>,
) -> Result<()> {
    encode_runs(items, MAX_RUN, out)
}

/// [`encode_column`] with runs of up to `max_run` zeros per entry (padding entries
/// `(code 0, max_run)` only for longer gaps): the file format's 4-bit runs take [`MAX_RUN`];
/// a kernel that stores 16-bit entries can take up to 255. Indices are relative to the items'
/// own order (rows of a column slice, or columns of a row).
pub fn encode_runs(
    items: impl IntoIterator<Item = (usize, u8)>,
    max_run: u8,
    out: &mut Vec<u16>,
) -> Result<()> {
    let mut next = 0usize; // first index not yet covered by an entry
    for (row, code) in items {
        if row < next || code == 0 {
            return Err(Error::InvalidArgument(format!(
                "column entry (row {row}, code {code}): rows must increase (next free row \
                 {next}) and codes be non-zero"
            )));
        }
        let mut gap = row - next;
        while gap > max_run as usize {
            out.push(entry(0, max_run));
            gap -= max_run as usize + 1;
        }
        out.push(entry(code, gap as u8));
        next = row + 1;
    }
    Ok(())
}

/// Entries [`encode_runs`] appends for items at increasing indices `items` with runs of up to
/// `max_run`: one per item plus a padding entry per `max_run + 1` zeros a gap has beyond
/// `max_run`.
pub fn encoded_len(items: impl IntoIterator<Item = usize>, max_run: u8) -> usize {
    let mut next = 0usize;
    items
        .into_iter()
        .map(|i| {
            let pad = i.saturating_sub(next) / (max_run as usize + 1);
            next = i + 1;
            pad + 1
        })
        .sum()
}

/// One PE's part of a layer: its column pointers and its entries.
///
/// Returned by [`EieLayer::pe`].
#[derive(Clone, Copy, Debug)]
pub struct PeSlice<'a> {
    /// `col_ptr[j]..col_ptr[j + 1]` are column j's entries in `entries`; length `cols + 1`.
    pub col_ptr: &'a [u32],
    /// Relative-indexed entries of every column, padding included (see [`entry`]).
    pub entries: &'a [u16],
}

impl<'a> PeSlice<'a> {
    /// Entries of column `j`.
    ///
    /// Its entries unpack with [`entry_code`] and [`entry_run`].
    #[inline]
    pub fn column(&self, j: usize) -> &'a [u16] {
        &self.entries[self.col_ptr[j] as usize..self.col_ptr[j + 1] as usize]
    }
}

/// One compressed fully-connected layer `b = f(W a + bias)` in EIE's storage format.
///
/// Row `i` of W belongs to PE `i % pes` as local row `i / pes`. Every field is validated on
/// construction, so the kernels that walk a layer never index out of bounds.
///
/// Layers come from [`EieLayer::encode`] (codes and a codebook), from
/// [`crate::compress::compress_layer`] (dense weights) or from a model file
/// ([`crate::Model::load`]); a [`crate::Model`] chains them. By hand:
///
/// ```
/// # fn main() -> eie::Result<()> {
/// use eie::format::{Activation, EieLayer, SparseCodes};
/// // W = [[0.5, 0, -1], [0, 0, 0.5]]: codes into a 2-bit codebook whose entry 0 is zero.
/// let codes = SparseCodes::from_dense(2, 3, &[1, 0, 2, 0, 0, 1])?;
/// let codebook = vec![0.0, 0.5, -1.0, 0.25];
/// let layer = EieLayer::encode(&codes, codebook, 2, 2, None, Activation::Relu)?;
/// assert_eq!((layer.rows(), layer.cols(), layer.pes(), layer.nnz()), (2, 3, 2, 3));
/// let model = eie::Model::new(vec![layer])?;
/// let y = eie::CpuEngine::new(model)?.run(&[1.0, 1.0, 1.0])?;
/// assert_eq!(y, [0.0, 0.5]); // ReLU(0.5 - 1), 0.5
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct EieLayer {
    name: String,
    rows: usize,
    cols: usize,
    pes: usize,
    bits: u8,
    codebook: Vec<f32>,
    bias: Option<Vec<f32>>,
    activation: Activation,
    /// `pe_ptr[p]..pe_ptr[p + 1]` is PE p's range of `entries`; length `pes + 1`.
    pe_ptr: Vec<u32>,
    /// Per-PE column pointers, relative to the PE's first entry; `pes * (cols + 1)` values.
    col_ptr: Vec<u32>,
    /// All entries, PE after PE, column after column.
    entries: Vec<u16>,
    /// Fixed16 activation formats of the input and output (Q5.10 unless set).
    fixed16: LayerFormat,
}

/// The number of rows PE `p` owns out of `rows` interleaved over `pes` (0 when `p >= pes`).
///
/// The method [`EieLayer::rows_of_pe`] applies it to a layer.
#[inline]
pub fn rows_of_pe(rows: usize, pes: usize, p: usize) -> usize {
    if pes == 0 || p >= pes {
        0 // no PEs own nothing, and neither does a PE that does not exist
    } else if p < rows % pes {
        rows / pes + 1
    } else {
        rows / pes
    }
}

impl EieLayer {
    /// Encodes a weight-shared matrix into EIE's format over `pes` processing elements.
    ///
    /// The [`EieLayer`] example uses it; [`SparseCodes::from_dense`] makes `codes`.
    pub fn encode(
        codes: &SparseCodes,
        codebook: Vec<f32>,
        bits: u8,
        pes: usize,
        bias: Option<Vec<f32>>,
        activation: Activation,
    ) -> Result<Self> {
        if pes == 0 {
            return Err(Error::InvalidArgument("PE count must be at least 1".into()));
        }
        codes.validate()?;
        let cols = codes.cols;
        // cols <= MAX_DIM (validated), so cols + 1 cannot overflow.
        let n_ptr = pes.checked_mul(cols + 1).ok_or_else(|| {
            Error::InvalidArgument(format!("{pes} PEs x {} column pointers overflow", cols + 1))
        })?;
        let mut col_ptr = try_with_capacity(n_ptr, "column pointers")?;
        let mut pe_ptr = try_with_capacity(pes.saturating_add(1), "PE pointers")?;
        // Distribute each column's non-zeros to their PEs, keeping (column, row) order.
        let mut per_pe: Vec<Vec<(u32, u32, u8)>> = try_filled(pes, Vec::new(), "PE lists")?;
        for j in 0..codes.cols {
            for k in codes.col_ptr[j]..codes.col_ptr[j + 1] {
                let row = codes.row_idx[k] as usize;
                per_pe[row % pes].push((j as u32, (row / pes) as u32, codes.code[k]));
            }
        }
        let encoded: Vec<(Vec<u32>, Vec<u16>)> = per_pe
            .into_par_iter()
            .map(|items| {
                let mut ptr = Vec::with_capacity(cols + 1);
                let mut entries = Vec::with_capacity(items.len() + items.len() / 8);
                let mut it = items.into_iter().peekable();
                for j in 0..cols as u32 {
                    ptr.push(entries.len() as u32);
                    let column = std::iter::from_fn(|| it.next_if(|&(c, _, _)| c == j))
                        .map(|(_, r, c)| (r as usize, c));
                    // Validated above: rows increase within a column and codes are non-zero.
                    encode_column(column, &mut entries)?;
                }
                ptr.push(entries.len() as u32);
                Ok((ptr, entries))
            })
            .collect::<Result<_>>()?;
        let total: usize = encoded.iter().map(|(_, e)| e.len()).sum();
        if total > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "{total} entries exceed the format's 2^32 limit"
            )));
        }
        let mut entries = try_with_capacity(total, "entries")?;
        for (ptr, e) in encoded {
            pe_ptr.push(entries.len() as u32);
            col_ptr.extend_from_slice(&ptr);
            entries.extend_from_slice(&e);
        }
        pe_ptr.push(entries.len() as u32);
        Self::from_parts(
            String::new(),
            codes.rows,
            cols,
            pes,
            bits,
            codebook,
            bias,
            activation,
            pe_ptr,
            col_ptr,
            entries,
        )
    }

    /// Assembles a layer from its stored arrays, validating every pointer, index and value.
    ///
    /// [`crate::format::file`] loads layers through it; [`EieLayer::encode`] makes them from codes.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        name: String,
        rows: usize,
        cols: usize,
        pes: usize,
        bits: u8,
        codebook: Vec<f32>,
        bias: Option<Vec<f32>>,
        activation: Activation,
        pe_ptr: Vec<u32>,
        col_ptr: Vec<u32>,
        entries: Vec<u16>,
    ) -> Result<Self> {
        let bad = |msg: String| Err(Error::CorruptModel(format!("layer `{name}`: {msg}")));
        if !(2..=8).contains(&bits) {
            return bad(format!("codebook bits {bits} outside 2..=8"));
        }
        if pes == 0 {
            return bad("PE count is 0".into());
        }
        if rows == 0 || cols == 0 {
            return bad(format!("empty shape {rows}x{cols}"));
        }
        if rows > MAX_DIM || cols > MAX_DIM {
            return bad(format!(
                "shape {rows}x{cols} beyond the limit of {MAX_DIM} rows and columns"
            ));
        }
        // cols <= MAX_DIM, so cols + 1 cannot overflow.
        let (Some(pe_ptr_len), Some(col_ptr_len)) = (pes.checked_add(1), pes.checked_mul(cols + 1))
        else {
            return bad(format!("{pes} PEs overflow the pointer arrays"));
        };
        if codebook.len() != 1 << bits {
            return bad(format!(
                "codebook has {} entries, expected 2^{bits} = {}",
                codebook.len(),
                1 << bits
            ));
        }
        if let Err(e) = check_finite("codebook", &codebook) {
            return bad(e.to_string());
        }
        // +0.0 exactly: -0.0 compares equal to it, but is another value (another file).
        if codebook[0].to_bits() != 0 {
            return bad(format!(
                "codebook entry 0 is {:?}, must be +0.0 (padding)",
                codebook[0]
            ));
        }
        if let Some(b) = &bias {
            if b.len() != rows {
                return bad(format!("bias has {} values for {rows} rows", b.len()));
            }
            if let Err(e) = check_finite("bias", b) {
                return bad(e.to_string());
            }
        }
        if pe_ptr.len() != pe_ptr_len || col_ptr.len() != col_ptr_len {
            return bad(format!(
                "pointer arrays have lengths {} and {}, expected {pe_ptr_len} and {col_ptr_len}",
                pe_ptr.len(),
                col_ptr.len(),
            ));
        }
        if pe_ptr[0] != 0 || pe_ptr[pes] as usize != entries.len() {
            return bad(format!(
                "PE pointers span {}..{}, expected 0..{}",
                pe_ptr[0],
                pe_ptr[pes],
                entries.len()
            ));
        }
        if let Some(p) = (0..pes).find(|&p| pe_ptr[p] > pe_ptr[p + 1]) {
            return bad(format!("PE pointer {p} decreases"));
        }
        for p in 0..pes {
            let len = pe_ptr[p + 1] - pe_ptr[p];
            let ptr = &col_ptr[p * (cols + 1)..(p + 1) * (cols + 1)];
            if ptr[0] != 0 || ptr[cols] != len {
                return bad(format!(
                    "PE {p}: column pointers span {}..{}, expected 0..{len}",
                    ptr[0], ptr[cols]
                ));
            }
            if let Some(j) = (0..cols).find(|&j| ptr[j] > ptr[j + 1]) {
                return bad(format!("PE {p}: column pointer {j} decreases"));
            }
            let pe_entries = &entries[pe_ptr[p] as usize..pe_ptr[p + 1] as usize];
            let local_rows = rows_of_pe(rows, pes, p);
            for j in 0..cols {
                let column = &pe_entries[ptr[j] as usize..ptr[j + 1] as usize];
                let mut next = 0usize;
                for (k, &e) in column.iter().enumerate() {
                    let (code, run) = (entry_code(e), entry_run(e));
                    if run > MAX_RUN {
                        return bad(format!("PE {p} column {j}: zero run {run} exceeds 15"));
                    }
                    if code as usize >= codebook.len() {
                        return bad(format!(
                            "PE {p} column {j}: codebook index {code} beyond the {}-entry codebook",
                            codebook.len()
                        ));
                    }
                    if code == 0 && (run != MAX_RUN || k + 1 == column.len()) {
                        return bad(format!(
                            "PE {p} column {j}: malformed padding entry (run {run})"
                        ));
                    }
                    next += run as usize + 1;
                    if next > local_rows {
                        return bad(format!(
                            "PE {p} column {j}: relative indices run past the end of the column \
                             (row {} of {local_rows})",
                            next - 1
                        ));
                    }
                }
            }
        }
        Ok(EieLayer {
            name,
            rows,
            cols,
            pes,
            bits,
            codebook,
            bias,
            activation,
            pe_ptr,
            col_ptr,
            entries,
            fixed16: LayerFormat::default(),
        })
    }

    /// The layer's name (the source tensor's name when imported).
    ///
    /// See [`EieLayer::set_name`].
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Sets the layer's name.
    ///
    /// See [`EieLayer::name`].
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }
    /// Output count (rows of W).
    ///
    /// See the [`EieLayer`] example.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Input count (columns of W).
    ///
    /// See the [`EieLayer`] example.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Number of processing elements the rows are interleaved over.
    ///
    /// [`EieLayer::with_pes`] changes it; see the [`EieLayer`] example.
    pub fn pes(&self) -> usize {
        self.pes
    }
    /// Codebook index width in bits (2..=8).
    ///
    /// [`EieLayer::codebook`] has `2^bits` entries.
    pub fn bits(&self) -> u8 {
        self.bits
    }
    /// The shared weights; entry 0 is always +0.0.
    ///
    /// Indexed by [`entry_code`]; see the [`EieLayer`] example.
    pub fn codebook(&self) -> &[f32] {
        &self.codebook
    }
    /// Per-row bias, if any.
    ///
    /// Given to [`EieLayer::encode`].
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }
    /// Activation applied on write-back.
    ///
    /// See [`Activation`].
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// Sets the activation function.
    ///
    /// See [`Activation`].
    pub fn set_activation(&mut self, activation: Activation) {
        self.activation = activation;
    }
    /// The fixed16 formats of the layer's input and output activations (see
    /// [`crate::fixed16`]); Q5.10 both unless set.
    pub fn fixed16_format(&self) -> LayerFormat {
        self.fixed16
    }
    /// Sets the fixed16 formats of the layer's input and output activations. In a
    /// [`super::Model`] a layer's input format must be the previous layer's output format;
    /// [`super::Model::set_fixed16_fracs`] sets a whole chain at once.
    pub fn set_fixed16_format(&mut self, format: LayerFormat) {
        self.fixed16 = format;
    }
    /// Entry ranges of the PEs (`pes + 1` values).
    ///
    /// See [`EieLayer::pe`] for one PE's part.
    pub fn pe_ptr(&self) -> &[u32] {
        &self.pe_ptr
    }
    /// All per-PE column pointers, PE after PE (`pes * (cols + 1)` values).
    ///
    /// See [`EieLayer::pe`] for one PE's part.
    pub fn col_ptr(&self) -> &[u32] {
        &self.col_ptr
    }
    /// All entries, PE after PE.
    ///
    /// Each made by [`entry`]; [`EieLayer::pe`] gives one PE's.
    pub fn entries(&self) -> &[u16] {
        &self.entries
    }
    /// Number of rows PE `p` owns.
    ///
    /// See the free function [`rows_of_pe`].
    pub fn rows_of_pe(&self, p: usize) -> usize {
        rows_of_pe(self.rows, self.pes, p)
    }
    /// PE `p`'s column pointers and entries.
    ///
    /// See [`PeSlice`].
    pub fn pe(&self, p: usize) -> PeSlice<'_> {
        PeSlice {
            col_ptr: &self.col_ptr[p * (self.cols + 1)..(p + 1) * (self.cols + 1)],
            entries: &self.entries[self.pe_ptr[p] as usize..self.pe_ptr[p + 1] as usize],
        }
    }
    /// Stored entries, padding included.
    ///
    /// [`EieLayer::padding_count`] of them are padding.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }
    /// Padding entries (code 0).
    ///
    /// See [`MAX_RUN`].
    pub fn padding_count(&self) -> usize {
        self.entries.iter().filter(|&&e| entry_code(e) == 0).count()
    }
    /// Non-zero weights (entries minus padding).
    ///
    /// See the [`EieLayer`] example.
    pub fn nnz(&self) -> usize {
        self.entry_count() - self.padding_count()
    }
    /// Fraction of W's weights that are stored.
    ///
    /// See [`EieLayer::nnz`].
    pub fn density(&self) -> f64 {
        self.nnz() as f64 / (self.rows as f64 * self.cols as f64)
    }
    /// Bytes of the packed entries, padding included: one per entry when `bits <= 4`, else two.
    ///
    /// See [`crate::format::file::pack_entries`].
    pub fn entry_bytes(&self) -> usize {
        self.entries.len() * if self.bits <= 4 { 1 } else { 2 }
    }
    /// Width in bits of a slice length in the model file (format version 2): the bit length of
    /// the longest (PE, column) slice, at least 1.
    ///
    /// See [`crate::format::file::pack_bits`].
    pub fn len_bits(&self) -> u8 {
        let longest = (0..self.pes)
            .flat_map(|p| self.pe(p).col_ptr.windows(2).map(|w| w[1] - w[0]))
            .max()
            .unwrap_or(0);
        len_bits_for(longest)
    }
    /// Bytes the layer's tensors take in the model file (format version 2): packed entries,
    /// slice lengths of [`Self::len_bits`] bits each, codebook and bias.
    pub fn compressed_bytes(&self) -> usize {
        self.entry_bytes()
            + packed_len_bytes(self.pes, self.cols, self.len_bits())
            + 4 * (self.codebook.len() + self.bias.as_ref().map_or(0, |b| b.len()))
    }
    /// Bytes the layer's tensors took in a version-1 model file (32-bit PE and column
    /// pointers), for comparison.
    ///
    /// See [`EieLayer::compressed_bytes`].
    pub fn compressed_bytes_v1(&self) -> usize {
        self.entry_bytes()
            + 4 * (self.pe_ptr.len() + self.col_ptr.len() + self.codebook.len())
            + self.bias.as_ref().map_or(0, |b| 4 * b.len())
    }

    /// The PE count, at most `min(rows, 256)`, at which the layer's model file tensors
    /// ([`Self::compressed_bytes`]) are smallest; the smallest such count on a tie.
    ///
    /// More PEs mean more slice lengths but fewer padding entries (the zeros below a slice's
    /// last entry need none). Each count is costed exactly from the non-zeros, without
    /// re-encoding, in time linear in the non-zeros and columns; the search stops once the
    /// slice lengths alone (one bit each at least) outweigh the best total so far.
    pub fn smallest_pes(&self) -> usize {
        let codes = self.sparse_codes();
        let per_entry = if self.bits <= 4 { 1 } else { 2 };
        let nnz = codes.row_idx.len();
        let most = self.rows.min(SMALLEST_PES_SEARCH);
        let mut stamp = vec![usize::MAX; most];
        let mut next = vec![0usize; most];
        let mut len = vec![0u32; most];
        let mut best = (usize::MAX, 1);
        for pes in 1..=most {
            let floor = (nnz * per_entry).saturating_add(self.cols.saturating_mul(pes).div_ceil(8));
            if floor >= best.0 {
                break;
            }
            let (mut entries, mut longest) = (0usize, 0u32);
            for j in 0..self.cols {
                for &row in &codes.row_idx[codes.col_ptr[j]..codes.col_ptr[j + 1]] {
                    let (q, local) = (row as usize % pes, row as usize / pes);
                    if stamp[q] != j {
                        (stamp[q], next[q], len[q]) = (j, 0, 0);
                    }
                    // A gap of g zero rows takes g / 16 padding entries (see `encode_column`).
                    let n = (local - next[q]) / (MAX_RUN as usize + 1) + 1;
                    entries += n;
                    len[q] += n as u32;
                    next[q] = local + 1;
                    longest = longest.max(len[q]);
                }
            }
            let bytes =
                entries * per_entry + packed_len_bytes(pes, self.cols, len_bits_for(longest));
            if bytes < best.0 {
                best = (bytes, pes);
            }
            stamp.fill(usize::MAX);
        }
        best.1
    }

    /// The same layer re-interleaved over [`Self::smallest_pes`] PEs: the interleaving that
    /// stores smallest. Engines re-interleave at load for their own hardware.
    pub fn compact(&self) -> Result<Self> {
        self.with_pes(self.smallest_pes())
    }
    /// Bytes of the same layer as dense f32 (weights plus bias), saturated at `usize::MAX`.
    ///
    /// Compare [`EieLayer::compressed_bytes`].
    pub fn dense_bytes(&self) -> usize {
        self.rows
            .saturating_mul(self.cols)
            .saturating_add(self.bias.as_ref().map_or(0, |b| b.len()))
            .saturating_mul(4)
    }

    /// Decodes the entries back to column lists of codes with global row numbers.
    ///
    /// The inverse of [`EieLayer::encode`]'s codes.
    pub fn sparse_codes(&self) -> SparseCodes {
        let mut cols: Vec<Vec<(u32, u8)>> = vec![Vec::new(); self.cols];
        for p in 0..self.pes {
            let pe = self.pe(p);
            for (j, col) in cols.iter_mut().enumerate() {
                let mut row = usize::MAX; // "-1": the first entry lands on row run
                for &e in pe.column(j) {
                    row = row.wrapping_add(entry_run(e) as usize + 1);
                    if entry_code(e) != 0 {
                        col.push(((row * self.pes + p) as u32, entry_code(e)));
                    }
                }
            }
        }
        let mut col_ptr = Vec::with_capacity(self.cols + 1);
        let mut row_idx = Vec::with_capacity(self.nnz());
        let mut code = Vec::with_capacity(self.nnz());
        col_ptr.push(0);
        for mut col in cols {
            col.sort_unstable_by_key(|&(r, _)| r);
            for (r, c) in col {
                row_idx.push(r);
                code.push(c);
            }
            col_ptr.push(row_idx.len());
        }
        SparseCodes {
            rows: self.rows,
            cols: self.cols,
            col_ptr,
            row_idx,
            code,
        }
    }

    /// Dense row-major dequantised weights (`rows * cols`, zeros where pruned), or
    /// [`Error::Allocation`] when that much memory is not available.
    pub fn try_dense_weights(&self) -> Result<Vec<f32>> {
        // rows, cols <= MAX_DIM, so the product fits a 64-bit usize; on smaller targets the
        // checked product reports what does not fit.
        let n = self.rows.checked_mul(self.cols).ok_or(Error::Allocation {
            what: format!("dense weights of `{}`", self.name),
            bytes: u64::MAX,
        })?;
        let mut w = try_filled(n, 0f32, &format!("dense weights of `{}`", self.name))?;
        for p in 0..self.pes {
            let pe = self.pe(p);
            for j in 0..self.cols {
                let mut row = usize::MAX; // "-1": the first entry lands on row run
                for &e in pe.column(j) {
                    row = row.wrapping_add(entry_run(e) as usize + 1);
                    let code = entry_code(e);
                    if code != 0 {
                        w[(row * self.pes + p) * self.cols + j] = self.codebook[code as usize];
                    }
                }
            }
        }
        Ok(w)
    }

    /// Dense row-major dequantised weights (`rows * cols`, zeros where pruned). Like any
    /// infallible allocation this aborts when the memory is not available;
    /// [`Self::try_dense_weights`] reports that as an error instead.
    pub fn dense_weights(&self) -> Vec<f32> {
        self.sparse_codes()
            .to_dense()
            .into_iter()
            .map(|c| self.codebook[c as usize])
            .collect()
    }

    /// The same layer re-interleaved over a different number of PEs (the same layer, not a
    /// copy, when `pes` is already its count).
    ///
    /// Linear in the entries, rows and pointers, with no sorting: two counting passes put the
    /// non-zeros in row order, then in (PE, column) slices whose rows come out increasing, and
    /// each slice is encoded with its runs and padding.
    ///
    /// [`Model::with_pes`](crate::Model::with_pes) does it for every layer; [`EieLayer::compact`]
    /// chooses a count.
    pub fn with_pes(&self, pes: usize) -> Result<Self> {
        if pes == self.pes {
            return Ok(self.clone());
        }
        if pes == 0 {
            return Err(Error::InvalidArgument("PE count must be at least 1".into()));
        }
        let (rows, cols) = (self.rows, self.cols);
        let nnz = self.nnz();
        // The non-zeros in row order: (column, code), counted then placed per row.
        let mut row_start = try_filled(rows + 1, 0u32, "row counts")?;
        self.for_each_nonzero(|row, _, _| row_start[row + 1] += 1);
        for i in 0..rows {
            row_start[i + 1] += row_start[i];
        }
        let mut by_row = try_filled(nnz, (0u32, 0u8), "non-zeros by row")?;
        let mut fill = row_start.clone();
        self.for_each_nonzero(|row, j, code| {
            by_row[fill[row] as usize] = (j as u32, code);
            fill[row] += 1;
        });
        // The same non-zeros in (PE, column) slices, rows increasing within each slice.
        let slots = pes
            .checked_mul(cols)
            .ok_or_else(|| Error::InvalidArgument(format!("{pes} PEs × {cols} columns")))?;
        let mut slot_start = try_filled(slots + 1, 0u32, "slice counts")?;
        for (row, w) in row_start.windows(2).enumerate() {
            let q = row % pes;
            for &(j, _) in &by_row[w[0] as usize..w[1] as usize] {
                slot_start[q * cols + j as usize + 1] += 1;
            }
        }
        for s in 0..slots {
            slot_start[s + 1] += slot_start[s];
        }
        let mut by_slot = try_filled(nnz, (0u32, 0u8), "non-zeros by slice")?;
        let mut fill = slot_start.clone();
        for (row, w) in row_start.windows(2).enumerate() {
            let (q, local) = (row % pes, (row / pes) as u32);
            for &(j, code) in &by_row[w[0] as usize..w[1] as usize] {
                let s = q * cols + j as usize;
                by_slot[fill[s] as usize] = (local, code);
                fill[s] += 1;
            }
        }
        drop(by_row);
        // Encode every slice, PE after PE, column after column.
        let mut pe_ptr = Vec::with_capacity(pes + 1);
        let mut col_ptr = try_with_capacity(slots + pes, "column pointers")?;
        let mut entries = try_with_capacity(nnz + nnz / 8, "entries")?;
        for q in 0..pes {
            let first = entries.len();
            pe_ptr.push(u32::try_from(first).map_err(|_| too_many(first))?);
            for j in 0..cols {
                col_ptr.push((entries.len() - first) as u32);
                let s = q * cols + j;
                let slice = &by_slot[slot_start[s] as usize..slot_start[s + 1] as usize];
                encode_column(slice.iter().map(|&(r, c)| (r as usize, c)), &mut entries)?;
            }
            let len = entries.len() - first;
            col_ptr.push(u32::try_from(len).map_err(|_| too_many(len))?);
        }
        pe_ptr.push(u32::try_from(entries.len()).map_err(|_| too_many(entries.len()))?);
        let mut layer = Self::from_parts(
            self.name.clone(),
            rows,
            cols,
            pes,
            self.bits,
            self.codebook.clone(),
            self.bias.clone(),
            self.activation,
            pe_ptr,
            col_ptr,
            entries,
        )?;
        layer.fixed16 = self.fixed16;
        Ok(layer)
    }

    /// Calls `f(global row, column, code)` for every non-zero, PE by PE, column by column.
    fn for_each_nonzero(&self, mut f: impl FnMut(usize, usize, u8)) {
        for p in 0..self.pes {
            let pe = self.pe(p);
            for j in 0..self.cols {
                let mut row = usize::MAX; // "-1": the first entry lands on row `run`
                for &e in pe.column(j) {
                    row = row.wrapping_add(entry_run(e) as usize + 1);
                    if entry_code(e) != 0 {
                        f(row * self.pes + p, j, entry_code(e));
                    }
                }
            }
        }
    }
}

/// The largest PE count [`EieLayer::smallest_pes`] considers.
const SMALLEST_PES_SEARCH: usize = 256;

/// Bit length of `longest`, at least 1: the width of a slice length in the model file.
fn len_bits_for(longest: u32) -> u8 {
    (32 - longest.leading_zeros()).max(1) as u8
}

/// Bytes of `pes × cols` packed fields of `width` bits, saturated at `usize::MAX`.
fn packed_len_bytes(pes: usize, cols: usize, width: u8) -> usize {
    let bits = pes as u128 * cols as u128 * u128::from(width);
    usize::try_from(bits.div_ceil(8)).unwrap_or(usize::MAX)
}

fn too_many(n: usize) -> Error {
    Error::InvalidArgument(format!("{n} entries exceed the format's 2^32 limit"))
}
