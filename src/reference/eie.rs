use super::column_walk::{self, ColumnCodes};
use super::row_order::{self, RowCodes};
use crate::error::{try_filled, try_with_capacity, Error, Result};
use crate::fixed16::{self, FixedCodebook};
use crate::format::{entry_code, entry_run, Activation, EieLayer, Model, PeSlice};
use crate::precision::Precision;
use rayon::prelude::*;

thread_local! {
    /// Set while the CPU engine runs one input of a batch: the batch's inputs already run in
    /// parallel, so the PEs of each layer run one after the other on the input's thread (a
    /// nested fork-join per layer costs more than a small layer's work).
    static BATCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Calls `f(p, local_outputs)` for every PE of `layer` in parallel and interleaves the per-PE
/// outputs back into global row order (row `p + k * pes` is PE p's local row k).
fn per_pe<T, F>(layer: &EieLayer, out: &mut [T], f: F) -> Result<()>
where
    T: Copy + Send + Sync + Default,
    F: Fn(usize, &mut [T]) -> Result<()> + Sync,
{
    let pes = layer.pes();
    let run = |p: usize| -> Result<Vec<T>> {
        let mut local = try_filled(layer.rows_of_pe(p), T::default(), "PE accumulators")?;
        f(p, &mut local)?;
        Ok(local)
    };
    let locals: Vec<Vec<T>> = if BATCHED.with(|b| b.get()) {
        (0..pes).map(run).collect::<Result<_>>()?
    } else {
        (0..pes).into_par_iter().map(run).collect::<Result<_>>()?
    };
    for (p, local) in locals.iter().enumerate() {
        for (k, &v) in local.iter().enumerate() {
            out[p + k * pes] = v;
        }
    }
    Ok(())
}

/// Checks that `x` and `out` have the layer's input and output lengths.
fn check_lengths(layer: &EieLayer, x: usize, out: usize) -> Result<()> {
    if x != layer.cols() || out != layer.rows() {
        return Err(Error::Shape(format!(
            "layer `{}` maps {} inputs to {} outputs; got {x} inputs and room for {out} outputs",
            layer.name(),
            layer.cols(),
            layer.rows()
        )));
    }
    Ok(())
}

/// The non-zero activations `(j, a_j)` of `x`, in increasing `j`: EIE's leading non-zero
/// detection.
fn nonzero<T: Copy + PartialEq + Default>(x: &[T]) -> Vec<(usize, T)> {
    x.iter()
        .enumerate()
        .filter(|(_, &a)| a != T::default())
        .map(|(j, &a)| (j, a))
        .collect()
}

/// One layer in f32, in EIE's order: for each non-zero input activation `a_j` in increasing `j`,
/// every PE walks its slice of column `j` and accumulates `codebook[v] * a_j` into its local
/// rows; bias is added and the activation function applied on write-back.
///
/// Each output row sums its terms in increasing `j` whatever the PE count, so the result does
/// not depend on how the layer is interleaved.
///
/// `x` must hold `layer.cols()` values and `out` `layer.rows()` ([`Error::Shape`] otherwise).
pub fn layer_f32(layer: &EieLayer, x: &[f32], out: &mut [f32]) -> Result<()> {
    layer_f32_with(layer, layer.codebook(), x, out)
}

/// [`layer_f32`] with the codebook values replaced by `values` (one per codebook entry).
fn layer_f32_with(layer: &EieLayer, values: &[f32], x: &[f32], out: &mut [f32]) -> Result<()> {
    check_lengths(layer, x.len(), out.len())?;
    columns_f32(layer, None, &table(values), &nonzero(x), out)
}

/// A 256-entry codebook table: it covers every possible 8-bit code without a bounds check;
/// padding entries (code 0) read `values[0] = 0.0`, whose product leaves a sum unchanged.
fn table(values: &[f32]) -> [f32; 256] {
    let mut codebook = [0f32; 256];
    codebook[..values.len()].copy_from_slice(values);
    codebook
}

/// The column walk of [`layer_f32`] over the listed non-zero activations, PEs in parallel
/// (unless the thread already runs one input of a batch), on the layer's own entries or on the
/// engine's `compact` copy of them ([`ColumnCodes`]: no padding entries under 4096-row gaps,
/// each term looked up in the column's scaled codebook).
fn columns_f32(
    layer: &EieLayer,
    compact: Option<&ColumnCodes>,
    codebook: &[f32; 256],
    nonzero: &[(usize, f32)],
    out: &mut [f32],
) -> Result<()> {
    per_pe(layer, out, |p, acc| {
        match compact {
            Some(c) => {
                let mut scaled = [0f32; 16];
                for &(j, a) in nonzero {
                    let column = c.column(p, j);
                    if column.is_empty() {
                        continue;
                    }
                    for (s, &v) in scaled.iter_mut().zip(codebook.iter()) {
                        *s = v * a;
                    }
                    column_walk::add_column(column, &scaled, acc);
                }
            }
            None => {
                let PeSlice { col_ptr, entries } = layer.pe(p);
                for &(j, a) in nonzero {
                    let mut row = usize::MAX;
                    for &e in &entries[col_ptr[j] as usize..col_ptr[j + 1] as usize] {
                        row = row.wrapping_add(entry_run(e) as usize + 1);
                        acc[row] += codebook[entry_code(e) as usize] * a;
                    }
                }
            }
        }
        let pes = layer.pes();
        for (k, v) in acc.iter_mut().enumerate() {
            let b = layer.bias().map_or(0.0, |b| b[p + k * pes]);
            *v = layer.activation().apply(*v + b);
        }
        Ok(())
    })
}

/// The number of inputs in a tile of `inputs` activations and `outputs` results for `layer`:
/// 1 to [`CPU_BATCH_TILE`] whole vectors ([`Error::Shape`] otherwise).
fn tile_inputs(layer: &EieLayer, inputs: usize, outputs: usize) -> Result<usize> {
    let (rows, cols) = (layer.rows(), layer.cols());
    let t = inputs / cols.max(1);
    if t == 0 || t > CPU_BATCH_TILE || inputs != t * cols || outputs != t * rows {
        return Err(Error::Shape(format!(
            "a tile of {inputs} inputs and {outputs} outputs for layer `{}` ({rows}x{cols}, at \
             most {CPU_BATCH_TILE} inputs)",
            layer.name()
        )));
    }
    Ok(t)
}

/// Inputs the CPU engine walks together at batch > 1 (f32 and f16): each entry is decoded once
/// and multiplied into this many accumulators.
pub const CPU_BATCH_TILE: usize = row_order::TILE;

/// [`layer_f32_with`] for up to [`CPU_BATCH_TILE`] inputs at once (`xs`: `t` inputs back to
/// back, `out`: `t` outputs back to back). The columns walked are those non-zero in any of the
/// inputs, in increasing order, so every row sums its terms in the same order as one input
/// alone (an input's zero activation adds a zero product, which leaves its sum unchanged).
fn layer_f32_tile(
    layer: &EieLayer,
    codebook: &[f32; 256],
    xs: &[f32],
    out: &mut [f32],
) -> Result<()> {
    const T: usize = CPU_BATCH_TILE;
    let (rows, cols, pes) = (layer.rows(), layer.cols(), layer.pes());
    let t = tile_inputs(layer, xs.len(), out.len())?;
    let mut listed: Vec<(usize, [f32; T])> = try_with_capacity(cols, "listed columns")?;
    for j in 0..cols {
        let mut a = [0f32; T];
        for (b, v) in a.iter_mut().enumerate().take(t) {
            *v = xs[b * cols + j];
        }
        if a.iter().any(|&v| v != 0.0) {
            listed.push((j, a));
        }
    }
    let locals: Vec<Vec<[f32; T]>> = (0..pes)
        .map(|p| -> Result<Vec<[f32; T]>> {
            let mut acc = try_filled(layer.rows_of_pe(p), [0f32; T], "PE accumulators")?;
            let PeSlice { col_ptr, entries } = layer.pe(p);
            for (j, a) in &listed {
                let mut row = usize::MAX;
                for &e in &entries[col_ptr[*j] as usize..col_ptr[*j + 1] as usize] {
                    row = row.wrapping_add(entry_run(e) as usize + 1);
                    let w = codebook[entry_code(e) as usize];
                    let r = &mut acc[row];
                    for b in 0..T {
                        r[b] += w * a[b];
                    }
                }
            }
            Ok(acc)
        })
        .collect::<Result<_>>()?;
    for (p, acc) in locals.iter().enumerate() {
        for (k, r) in acc.iter().enumerate() {
            let row = p + k * pes;
            let bias = layer.bias().map_or(0.0, |b| b[row]);
            for (b, &v) in r.iter().enumerate().take(t) {
                out[b * rows + row] = layer.activation().apply(v + bias);
            }
        }
    }
    Ok(())
}

/// One layer in 16-bit fixed point (see [`crate::fixed16`]): inputs in the layer's input
/// format, outputs in its output format ([`EieLayer::fixed16_format`]). Returns the layer's
/// saturation counts.
///
/// `x` must hold `layer.cols()` values and `out` `layer.rows()` ([`Error::Shape`] otherwise).
pub fn layer_fixed16(
    layer: &EieLayer,
    x: &[i16],
    out: &mut [i16],
) -> Result<fixed16::LayerSaturations> {
    columns_fixed16(layer, None, &FixedCodebook::new(layer.codebook()), x, out)
}

/// The column walk of [`layer_fixed16`], on the layer's own entries or on the engine's
/// `compact` copy of them ([`ColumnCodes`]: no padding entries under 4096-row gaps). The sums
/// are exact integers, so the order of the terms does not change a bit.
fn columns_fixed16(
    layer: &EieLayer,
    compact: Option<&ColumnCodes>,
    codebook: &FixedCodebook,
    x: &[i16],
    out: &mut [i16],
) -> Result<fixed16::LayerSaturations> {
    check_lengths(layer, x.len(), out.len())?;
    let nonzero = nonzero(x);
    let relu = layer.activation() == Activation::Relu;
    let format = layer.fixed16_format();
    let (acc_frac, shift) = (format.acc_frac(), format.write_back_shift());
    let counts = std::sync::Mutex::new(fixed16::LayerSaturations::default());
    per_pe(layer, out, |p, y| {
        let pe = layer.pe(p);
        let pes = layer.pes();
        // Sums of the i32 product terms in 64 bits: the i32 accumulator every backend keeps
        // is their wrapped value, and the 64-bit one tells whether it overflowed.
        let mut acc: Vec<i64> = try_filled(y.len(), 0, "PE accumulators")?;
        let n = codebook.values.len();
        match compact {
            Some(c) => {
                // The copy exists for codebooks of at most 16 entries; the terms of the others
                // stay 0 and are never looked up.
                let mut terms = [0i64; 16];
                for &(j, a) in &nonzero {
                    let column = c.column(p, j);
                    if column.is_empty() {
                        continue;
                    }
                    for (code, t) in terms.iter_mut().enumerate().take(n) {
                        *t = codebook.term(a, code as u8) as i64;
                    }
                    column_walk::add_column(column, &terms, &mut acc);
                }
            }
            None => {
                // Products of a_j with every codebook entry, computed once per slice when the
                // slice is at least as long as the codebook (the same values `term` gives per
                // entry; the table's entry 0 stays 0 for padding).
                let mut terms = [0i32; 256];
                for &(j, a) in &nonzero {
                    let column = pe.column(j);
                    let mut row = usize::MAX;
                    if column.len() >= n {
                        for (code, t) in terms.iter_mut().enumerate().take(n).skip(1) {
                            *t = codebook.term(a, code as u8);
                        }
                        for &e in column {
                            row = row.wrapping_add(entry_run(e) as usize + 1);
                            acc[row] += terms[entry_code(e) as usize] as i64;
                        }
                    } else {
                        for &e in column {
                            row = row.wrapping_add(entry_run(e) as usize + 1);
                            let code = entry_code(e);
                            if code != 0 {
                                acc[row] += codebook.term(a, code) as i64;
                            }
                        }
                    }
                }
            }
        }
        let mut local = fixed16::LayerSaturations::default();
        for (k, (v, &s)) in y.iter_mut().zip(&acc).enumerate() {
            let b = layer.bias().map_or(0.0, |b| b[p + k * pes]);
            let (sum, overflow) = fixed16::finish_row(s, b, acc_frac);
            let (q, saturated) = fixed16::write_back(sum, shift, relu);
            *v = q;
            local.accumulator += overflow as u64;
            local.write_back += saturated as u64;
        }
        let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
        c.accumulator += local.accumulator;
        c.write_back += local.write_back;
        Ok(())
    })?;
    Ok(counts.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// [`columns_fixed16`] for up to [`CPU_BATCH_TILE`] inputs at once (`xs`: `t` inputs back to
/// back, `out`: `t` outputs back to back): each entry is decoded once and its product terms
/// computed for every input of the tile. The sums are exact, so every input's result equals
/// its result alone.
///
/// `row_bound` ([`fixed16_row_bound`]) lets the tile sum in i32, twice as many lanes per
/// instruction, when the bound shows that no sum can leave the i32 range (the usual case:
/// formats are chosen so that accumulators hold their sums); otherwise, or without it, the sums
/// are i64 so that overflows are counted.
fn fixed16_tile(
    layer: &EieLayer,
    compact: Option<&ColumnCodes>,
    codebook: &FixedCodebook,
    row_bound: Option<u64>,
    xs: &[i16],
    out: &mut [i16],
) -> Result<fixed16::LayerSaturations> {
    const T: usize = CPU_BATCH_TILE;
    let (rows, cols, pes) = (layer.rows(), layer.cols(), layer.pes());
    let t = tile_inputs(layer, xs.len(), out.len())?;
    let frac = codebook.frac;
    let mut listed: Vec<(usize, [i32; T])> = try_with_capacity(cols, "listed columns")?;
    for j in 0..cols {
        let mut a = [0i32; T];
        for (b, v) in a.iter_mut().enumerate().take(t) {
            *v = xs[b * cols + j] as i32;
        }
        if a.iter().any(|&v| v != 0) {
            listed.push((j, a));
        }
    }
    let max_a = listed
        .iter()
        .flat_map(|(_, a)| a.iter())
        .map(|a| a.unsigned_abs() as u64)
        .max()
        .unwrap_or(0);
    let narrow = row_bound.is_some_and(|b| sums_fit_i32(b, max_a, frac));
    let locals: Vec<Vec<[i64; T]>> = if narrow {
        tile_sums::<i32, T>(layer, compact, codebook, &listed)?
            .into_iter()
            .map(|acc| acc.iter().map(|r| r.map(i64::from)).collect())
            .collect()
    } else {
        tile_sums::<i64, T>(layer, compact, codebook, &listed)?
    };
    let relu = layer.activation() == Activation::Relu;
    let format = layer.fixed16_format();
    let (acc_frac, shift) = (format.acc_frac(), format.write_back_shift());
    let mut counts = fixed16::LayerSaturations::default();
    for (p, acc) in locals.iter().enumerate() {
        for (k, r) in acc.iter().enumerate() {
            let row = p + k * pes;
            let bias = layer.bias().map_or(0.0, |b| b[row]);
            for (b, &s) in r.iter().enumerate().take(t) {
                let (sum, overflow) = fixed16::finish_row(s, bias, acc_frac);
                let (q, saturated) = fixed16::write_back(sum, shift, relu);
                out[b * rows + row] = q;
                counts.accumulator += overflow as u64;
                counts.write_back += saturated as u64;
            }
        }
    }
    Ok(counts)
}

/// The sums of product terms of every PE's local rows for a tile of inputs (`listed`: the
/// columns non-zero in any input, with the tile's activations), in accumulators of type `A`:
/// i64 always holds them; i32 only where the caller has bounded them.
#[allow(clippy::type_complexity)]
fn tile_sums<A, const T: usize>(
    layer: &EieLayer,
    compact: Option<&ColumnCodes>,
    codebook: &FixedCodebook,
    listed: &[(usize, [i32; T])],
) -> Result<Vec<Vec<[A; T]>>>
where
    A: Copy + Default + std::ops::AddAssign + From<i32>,
{
    let frac = codebook.frac;
    // One entry's terms for the whole tile: `fixed16::product_term` lane by lane.
    let add = |r: &mut [A; T], a: &[i32; T], c: i32| {
        if frac > fixed16::GUARD_BITS {
            let s = frac - fixed16::GUARD_BITS;
            let half = 1i32 << (s - 1);
            for b in 0..T {
                r[b] += A::from((a[b] * c + half) >> s);
            }
        } else {
            let s = fixed16::GUARD_BITS - frac;
            for b in 0..T {
                r[b] += A::from((a[b] * c).wrapping_shl(s));
            }
        }
    };
    let small = codebook.values.len() <= 16;
    (0..layer.pes())
        .map(|p| -> Result<Vec<[A; T]>> {
            let mut acc = try_filled(layer.rows_of_pe(p), [A::default(); T], "PE accumulators")?;
            // For a codebook of at most 16 entries, the terms of every code for the whole
            // tile, computed once per slice: an entry then adds one row of the table.
            let mut table = [[A::default(); T]; 16];
            for (j, a) in listed {
                let mut row = usize::MAX;
                match compact {
                    Some(cc) if small => {
                        let column = cc.column(p, *j);
                        if column.is_empty() {
                            continue;
                        }
                        for (t, &c) in table.iter_mut().zip(&codebook.values) {
                            *t = [A::default(); T];
                            add(t, a, c as i32);
                        }
                        for &e in column {
                            row = row.wrapping_add((e >> 4) as usize + 1);
                            let (r, t) = (&mut acc[row], &table[(e & 15) as usize]);
                            for b in 0..T {
                                r[b] += t[b];
                            }
                        }
                    }
                    Some(cc) => {
                        for &e in cc.column(p, *j) {
                            row = row.wrapping_add((e >> 4) as usize + 1);
                            let c = codebook.values[(e & 15) as usize] as i32;
                            if c != 0 {
                                add(&mut acc[row], a, c);
                            }
                        }
                    }
                    None => {
                        for &e in layer.pe(p).column(*j) {
                            row = row.wrapping_add(entry_run(e) as usize + 1);
                            let c = codebook.values[entry_code(e) as usize] as i32;
                            if c != 0 {
                                add(&mut acc[row], a, c);
                            }
                        }
                    }
                }
            }
            Ok(acc)
        })
        .collect()
}

/// Whether every row's sum of product terms stays in the i32 range, for a row bound from
/// [`fixed16_row_bound`], inputs of magnitude at most `max_a` and codebook fraction bits
/// `frac`: |term| <= |a c| / 2^s + 1 (round half up) or |a c| 2^s for a left shift, and a row's
/// entries with c != 0 number at most its sum of |c|.
fn sums_fit_i32(row_bound: u64, max_a: u64, frac: u32) -> bool {
    let products = row_bound.saturating_mul(max_a);
    let bound = if frac > fixed16::GUARD_BITS {
        (products >> (frac - fixed16::GUARD_BITS)).saturating_add(row_bound)
    } else {
        products.saturating_mul(1 << (fixed16::GUARD_BITS - frac))
    };
    bound <= i32::MAX as u64
}

/// The largest sum over a row of `layer` of `|c|`, for the fixed16 codebook value `c` of each
/// of its entries (see [`fixed16_tile`]).
fn fixed16_row_bound(layer: &EieLayer, codebook: &FixedCodebook) -> Result<u64> {
    let mut best = 0u64;
    for p in 0..layer.pes() {
        let mut sums: Vec<u64> = try_filled(layer.rows_of_pe(p), 0, "row bounds")?;
        let pe = layer.pe(p);
        for j in 0..layer.cols() {
            let mut row = usize::MAX;
            for &e in pe.column(j) {
                row = row.wrapping_add(entry_run(e) as usize + 1);
                sums[row] += codebook.values[entry_code(e) as usize].unsigned_abs() as u64;
            }
        }
        best = best.max(sums.into_iter().max().unwrap_or(0));
    }
    Ok(best)
}

/// One input through one layer in fixed16 by the row-ordered walk, sums in i32: the caller
/// has checked with [`sums_fit_i32`] that no sum leaves that range, so the sums are exact and
/// equal the column walk's. `parallel`: row groups spread over the rayon threads.
fn rows_fixed16(
    layer: &EieLayer,
    rows: &RowCodes,
    terms: &row_order::FixedTerms,
    x: &[i16],
    out: &mut [i16],
    parallel: bool,
) -> Result<fixed16::LayerSaturations> {
    check_lengths(layer, x.len(), out.len())?;
    let mut xz: Vec<i32> = try_with_capacity(x.len() + 1, "input")?;
    xz.extend(x.iter().map(|&a| a as i32));
    xz.push(0);
    let sums = row_sums(rows, 1, parallel, |g0, s| {
        rows.sums_fixed16(terms, &xz, g0, s)
    })?;
    let relu = layer.activation() == Activation::Relu;
    let format = layer.fixed16_format();
    let (acc_frac, shift) = (format.acc_frac(), format.write_back_shift());
    let mut counts = fixed16::LayerSaturations::default();
    for (i, (o, &s)) in out.iter_mut().zip(&sums).enumerate() {
        let bias = layer.bias().map_or(0.0, |b| b[i]);
        let (sum, overflow) = fixed16::finish_row(s as i64, bias, acc_frac);
        let (q, saturated) = fixed16::write_back(sum, shift, relu);
        *o = q;
        counts.accumulator += overflow as u64;
        counts.write_back += saturated as u64;
    }
    Ok(counts)
}

/// Which walk of a layer's codes the CPU engine uses (fixed16 walks rows for one input at a
/// time, and only where every row's sum provably fits an i32).
///
/// Forced with [`CpuEngine::with_walk`]; [`CpuEngine::walk_for`] says what `Auto` picks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuWalk {
    /// Per layer and input (or tile of inputs), the walk with less estimated work: see
    /// [`CpuEngine::walk_for`].
    #[default]
    Auto,
    /// EIE's column walk: every PE walks its slice of each non-zero activation's column.
    Columns,
    /// The row-ordered walk of the same codes ([`RowCodes`]): each row gathers its inputs.
    Rows,
}

/// Measured cost of one slot of the row walk for one input, in units of one entry of the
/// column walk (f32, AVX2, 2 threads, the fastest call of each on the paper's nine layers with
/// `cargo bench --bench cpu_walks` on the development machine, a 2-core AMD EPYC: 0.41–0.51).
/// The column walk does a scattered read-modify-write per entry where the row walk gathers
/// eight activations per instruction into registers.
///
/// Used by [`CpuEngine::walk_for`]; see [`SLICE_COST`].
// Unstable: a measured cost, public for the crate's own benches and tests only (hidden from the
// documentation; it may change in any release).
#[doc(hidden)]
pub const ROW_SLOT_COST: f64 = 0.5;

/// [`ROW_SLOT_COST`] for a tile of [`row_order::TILE`] inputs: the row walk keeps its sums in
/// registers, where the column walk reads and writes a tile of sums per entry.
// Unstable: a measured cost, public for the crate's own benches and tests only (hidden from the
// documentation; it may change in any release).
#[doc(hidden)]
pub const ROW_SLOT_COST_TILE: f64 = 0.16;

/// Cost of one slot of the fixed16 row walk (one input, AVX2) in units of one entry of the
/// fixed16 column walk: an estimate above the f32 walk's measured [`ROW_SLOT_COST`], for the
/// integer multiply, round and shift per slot (not swept; BENCHMARKS.md, "fixed16 on the CPU").
// Unstable: a measured cost, public for the crate's own benches and tests only (hidden from the
// documentation; it may change in any release).
#[doc(hidden)]
pub const FIXED16_ROW_SLOT_COST: f64 = 0.75;

/// Stored entries (padding included) below which the CPU engine runs a layer of one input on
/// the calling thread instead of splitting it over the rayon threads: waking the pool and
/// joining it costs microseconds, as much as walking about this many entries alone (about
/// 1.2 ns each, see [`cpu_pes`]). The small matrices of a recurrent step (a 64-unit LSTM's
/// gate matrices hold a few thousand entries) pay the fork-join on every step.
// Unstable: a measured cost, public for the crate's own benches and tests only (hidden from the
// documentation; it may change in any release).
#[doc(hidden)]
pub const PARALLEL_MIN_ENTRIES: usize = 16_384;

/// Whether a single input's walk of `layer` is split over the rayon threads (see
/// [`PARALLEL_MIN_ENTRIES`]).
fn split_layer(layer: &EieLayer, parallel: bool) -> bool {
    parallel && layer.entry_count() >= PARALLEL_MIN_ENTRIES
}

/// Measured cost of starting one column slice of the column walk (pointer pair, loop exit the
/// branch predictor misses), in entries.
///
/// Used by [`CpuEngine::walk_for`]; see [`ROW_SLOT_COST`].
// Unstable: a measured cost, public for the crate's own benches and tests only (hidden from the
// documentation; it may change in any release).
#[doc(hidden)]
pub const SLICE_COST: f64 = 4.0;

/// The kernels the CPU engine uses, as the bench report names them.
///
/// See [`CpuWalk`].
pub fn cpu_engine_kernels() -> String {
    format!(
        "this crate's EIE engine ({}, {} rayon threads): f32 column walk (12-bit-run copy) where \
         activations are sparse, row-ordered walk of the same codes (gathers) where dense, chosen \
         per layer and input; tiles of {} inputs at batch > 1; fixed16 column walk",
        if crate::simd::avx2() { "AVX2" } else { "SSE2" },
        rayon::current_num_threads(),
        CPU_BATCH_TILE
    )
}

/// The EIE CPU engine: runs a whole model on a batch of inputs, multi-threaded over inputs and
/// PEs, straight from the compressed format.
///
/// Like the GPU scheduler, the engine picks its own PE count per layer for the machine (see
/// [`cpu_pes`]) and re-interleaves layers whose stored PE count differs. In f32 and f16 it also
/// keeps a row-ordered copy of each layer's codes ([`RowCodes`]) and walks that instead of the
/// columns where most activations are non-zero ([`CpuWalk`]). Every output row still sums its
/// terms in increasing column order whichever the walk, so results equal the hardware-order
/// reference ([`layer_f32`], [`layer_fixed16`]) at the file's PE count exactly.
///
/// Cloning is cheap (the model is shared), and an engine is `Send + Sync`: one engine serves
/// many threads.
#[derive(Clone, Debug)]
pub struct CpuEngine {
    model: std::sync::Arc<Model>,
    layers: std::sync::Arc<Vec<Option<LayerWalks>>>,
    walk: CpuWalk,
    precision: Precision,
}

/// What the engine keeps per layer besides the layer itself.
#[derive(Debug)]
struct LayerWalks {
    /// The row-ordered copy of the codes, where one was built (see [`RowCodes::new`]).
    rows: Option<RowCodes>,
    /// The copy of the columns without padding, for 4-bit codebooks.
    columns: Option<ColumnCodes>,
    /// Entries of each column summed over the PEs (in the compact copy where there is one):
    /// the column walk's work.
    column_entries: Vec<u32>,
    /// The largest sum over a row of `|c|` for its entries' fixed16 codebook values `c`: with
    /// the largest input of a tile it bounds every sum of product terms (see [`fixed16_tile`]).
    fixed16_row_bound: u64,
    /// The layer's fixed16 codebook, and its product terms for the row walk.
    fixed16: FixedCodebook,
    fixed16_terms: row_order::FixedTerms,
}

impl LayerWalks {
    fn new(layer: &EieLayer) -> Result<Self> {
        let fixed16 = FixedCodebook::new(layer.codebook());
        let columns = ColumnCodes::new(layer).ok();
        let mut column_entries: Vec<u32> = try_filled(layer.cols(), 0, "column lengths")?;
        for p in 0..layer.pes() {
            match &columns {
                Some(c) => {
                    for (j, n) in column_entries.iter_mut().enumerate() {
                        *n = n.saturating_add(c.column(p, j).len() as u32);
                    }
                }
                None => {
                    let ptr = layer.pe(p).col_ptr;
                    for (j, n) in column_entries.iter_mut().enumerate() {
                        *n = n.saturating_add(ptr[j + 1] - ptr[j]);
                    }
                }
            }
        }
        Ok(LayerWalks {
            // Without a row-ordered copy (no memory for it, or rows too uneven for it to pay)
            // the engine walks columns.
            rows: RowCodes::new(layer).ok(),
            fixed16_row_bound: fixed16_row_bound(layer, &fixed16)?,
            fixed16_terms: row_order::FixedTerms::new(&fixed16),
            fixed16,
            columns,
            column_entries,
        })
    }
}

/// The PE count the CPU engine uses for `layer`: one PE per thread.
///
/// A PE pays a loop exit the branch predictor misses (about 8 ns on the development machine)
/// for every non-empty slice of a non-zero column, against about 1.2 ns per entry walked; fewer
/// PEs mean longer zero runs and so a few more padding entries, but far fewer slices. Measured
/// single-threaded on the paper's layers, 2 PEs beat 4 to 64 PEs on NT-We, Alex-7, VGG-6 and
/// NT-Wd, so the engine uses as many PEs as it has threads (rows permitting).
///
/// [`CpuEngine::new`] applies it to every layer; [`CpuEngine::as_stored`] does not.
pub fn cpu_pes(layer: &EieLayer, threads: usize) -> usize {
    threads.clamp(1, layer.rows().max(1))
}

impl CpuEngine {
    /// Wraps a model, re-interleaving each layer to [`cpu_pes`] PEs for this machine's threads
    /// (a layer already at that count is kept as it is), and builds each layer's row-ordered
    /// copy. Fails only where re-interleaving does (memory, or the format's 2^32-entry limit).
    pub fn new(model: Model) -> Result<Self> {
        let threads = rayon::current_num_threads();
        let layers: Vec<EieLayer> = model
            .layers()
            .iter()
            .map(|l| l.with_pes(cpu_pes(l, threads)))
            .collect::<Result<_>>()?;
        Self::with_model(Model::new(layers)?)
    }

    /// Wraps a model as stored, without re-interleaving. A layer whose row-ordered copy or
    /// column lengths cannot be held in memory is walked by columns only.
    ///
    /// [`CpuEngine::new`] re-interleaves instead (see [`cpu_pes`]).
    pub fn as_stored(model: Model) -> Self {
        let layers: Vec<Option<LayerWalks>> = model
            .layers()
            .par_iter()
            .map(|l| LayerWalks::new(l).ok())
            .collect();
        CpuEngine {
            model: std::sync::Arc::new(model),
            layers: std::sync::Arc::new(layers),
            walk: CpuWalk::Auto,
            precision: Precision::F32,
        }
    }

    fn with_model(model: Model) -> Result<Self> {
        let layers: Vec<Option<LayerWalks>> = model
            .layers()
            .par_iter()
            .map(|l| LayerWalks::new(l).map(Some))
            .collect::<Result<_>>()?;
        Ok(CpuEngine {
            model: std::sync::Arc::new(model),
            layers: std::sync::Arc::new(layers),
            walk: CpuWalk::Auto,
            precision: Precision::F32,
        })
    }

    /// The same engine with the f32 / f16 walk forced (for measuring the crossover and for
    /// tests; results do not depend on it).
    ///
    /// See [`CpuWalk`].
    pub fn with_walk(&self, walk: CpuWalk) -> Self {
        CpuEngine {
            walk,
            ..self.clone()
        }
    }

    /// The same engine in `precision` (f32 unless told otherwise). Cheap: the model and its
    /// walks are shared, so one engine serves every precision (`engine.with_precision(p)`).
    ///
    /// The precision is chosen at build on every engine, as with
    /// [`EngineBuilder::precision`](crate::EngineBuilder::precision) and the GPU's
    /// `EngineOptions::precision`; [`CpuEngine::run`] runs in it.
    pub fn with_precision(&self, precision: Precision) -> Self {
        CpuEngine {
            precision,
            ..self.clone()
        }
    }

    /// The arithmetic [`CpuEngine::run`] uses.
    ///
    /// Set by [`CpuEngine::with_precision`].
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The model this engine runs (at the engine's PE counts).
    ///
    /// See [`CpuEngine::new`] and [`cpu_pes`].
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The walk the engine takes for layer `index` when `listed` columns are non-zero in the
    /// input (or, for a `tile`, in any of its inputs) and `listed_entries` entries lie in them:
    /// the row walk where its slots cost less than the listed entries and slices (see
    /// `ROW_SLOT_COST`, `ROW_SLOT_COST_TILE`, `SLICE_COST`: measured costs, unstable).
    pub fn walk_for(
        &self,
        index: usize,
        listed: usize,
        listed_entries: usize,
        tile: bool,
    ) -> CpuWalk {
        let slot = if tile {
            ROW_SLOT_COST_TILE
        } else {
            ROW_SLOT_COST
        };
        self.cheaper_walk(index, slot, || (listed, listed_entries))
    }

    /// The walk of layer `index` with less estimated work where the walk is not forced: rows
    /// at `slot_cost` column entries per slot, against the listed columns' entries and slices
    /// (`listed()`: the listed columns and their entries, counted only when needed). Columns
    /// where the layer has no row-ordered copy.
    fn cheaper_walk(
        &self,
        index: usize,
        slot_cost: f64,
        listed: impl FnOnce() -> (usize, usize),
    ) -> CpuWalk {
        let Some(rows) = self.layers[index].as_ref().and_then(|w| w.rows.as_ref()) else {
            return CpuWalk::Columns;
        };
        match self.walk {
            CpuWalk::Auto => {
                let (listed, listed_entries) = listed();
                let pes = self.model.layers()[index].pes();
                let columns = listed_entries as f64 + (listed * pes) as f64 * SLICE_COST;
                if (rows.slots() as f64) * slot_cost < columns {
                    CpuWalk::Rows
                } else {
                    CpuWalk::Columns
                }
            }
            forced => forced,
        }
    }

    /// Runs a batch in the engine's [`precision`](CpuEngine::precision), blocking: `input`
    /// holds `batch * input_size` values, the result `batch * output_size`.
    ///
    /// Buffers are reserved fallibly: a batch whose outputs do not fit in memory is
    /// [`Error::Allocation`], not an abort.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>> {
        let mut out = self.outputs_for(input)?;
        let batch = out.len() / self.model.output_size();
        let (n_in, n_out) = (self.model.input_size(), self.model.output_size());
        let f16 = self.precision == Precision::F16;
        if self.precision != Precision::Fixed16 {
            if batch == 1 {
                // One input: the PEs (or row groups) of each layer run in parallel.
                self.forward_one(input, &mut out, f16, true)?;
            } else if batch <= CPU_BATCH_TILE {
                // One tile: its layers' PEs (or row groups) run in parallel.
                self.forward_tile(input, &mut out, f16, true)?;
            } else {
                // Tiles of inputs in parallel, each decoding every entry once for all its
                // inputs.
                out.par_chunks_mut(n_out * CPU_BATCH_TILE)
                    .zip(input.par_chunks(n_in * CPU_BATCH_TILE))
                    .try_for_each(|(y, x)| self.forward_tile(x, y, f16, false))?;
            }
        } else {
            self.fixed16_batch(input, &mut out)?;
        }
        Ok(out)
    }

    /// Checks a batch of inputs and reserves its outputs (fallibly: a batch whose outputs do
    /// not fit in memory is [`Error::Allocation`]).
    fn outputs_for(&self, input: &[f32]) -> Result<Vec<f32>> {
        let batch = self.model.check_input(input)?;
        let n_out = self.model.output_size();
        let len = batch.checked_mul(n_out).ok_or(Error::Allocation {
            what: format!("{batch} outputs of {n_out} values"),
            bytes: u64::MAX,
        })?;
        try_filled(len, 0f32, "outputs")
    }

    /// Codebook table of layer `l`, rounded to f16 where `f16`.
    fn codebook(l: &EieLayer, f16: bool) -> [f32; 256] {
        let mut t = table(l.codebook());
        if f16 {
            t.iter_mut().for_each(|v| *v = round_f16(*v));
        }
        t
    }

    /// One input through every layer (f32, or f16 storage: the input, each layer's codebook
    /// and each layer's output rounded to f16, products and sums in f32, bias in f32, as the
    /// GPU's f16 kernel). `parallel`: split each layer over the rayon threads.
    fn forward_one(&self, x: &[f32], y: &mut [f32], f16: bool, parallel: bool) -> Result<()> {
        let mut cur: Vec<f32> = if f16 {
            x.iter().map(|&v| round_f16(v)).collect()
        } else {
            x.to_vec()
        };
        for (i, l) in self.model.layers().iter().enumerate() {
            let codebook = Self::codebook(l, f16);
            let mut next = try_filled(l.rows(), 0f32, "layer outputs")?;
            let walks = self.layers[i].as_ref();
            let nonzero = nonzero(&cur);
            let listed_entries: usize = walks.map_or(0, |w| {
                nonzero
                    .iter()
                    .map(|&(j, _)| w.column_entries[j] as usize)
                    .sum()
            });
            let rows = walks.and_then(|w| w.rows.as_ref());
            let parallel = split_layer(l, parallel);
            match (self.walk_for(i, nonzero.len(), listed_entries, false), rows) {
                (CpuWalk::Rows, Some(rows)) => {
                    rows_f32(l, rows, &codebook, &cur, &mut next, parallel)?
                }
                _ => {
                    BATCHED.with(|b| b.set(!parallel));
                    let compact = walks.and_then(|w| w.columns.as_ref());
                    let r = columns_f32(l, compact, &codebook, &nonzero, &mut next);
                    BATCHED.with(|b| b.set(false));
                    r?
                }
            }
            if f16 {
                next.iter_mut().for_each(|v| *v = round_f16(*v));
            }
            cur = next;
        }
        y.copy_from_slice(&cur);
        Ok(())
    }

    /// Up to [`CPU_BATCH_TILE`] inputs through every layer together (f32, or f16 storage as in
    /// [`CpuEngine::forward_one`]).
    fn forward_tile(&self, x: &[f32], y: &mut [f32], f16: bool, parallel: bool) -> Result<()> {
        let t = x.len() / self.model.input_size();
        if t == 1 {
            return self.forward_one(x, y, f16, parallel);
        }
        let mut cur: Vec<f32> = if f16 {
            x.iter().map(|&v| round_f16(v)).collect()
        } else {
            x.to_vec()
        };
        for (i, l) in self.model.layers().iter().enumerate() {
            let codebook = Self::codebook(l, f16);
            let cols = l.cols();
            let walks = self.layers[i].as_ref();
            let (mut listed, mut listed_entries) = (0usize, 0usize);
            for j in 0..cols {
                if (0..t).any(|b| cur[b * cols + j] != 0.0) {
                    listed += 1;
                    listed_entries += walks.map_or(0, |w| w.column_entries[j] as usize);
                }
            }
            let mut next = try_filled(t * l.rows(), 0f32, "layer outputs")?;
            let rows = walks.and_then(|w| w.rows.as_ref());
            match (self.walk_for(i, listed, listed_entries, true), rows) {
                (CpuWalk::Rows, Some(rows)) => {
                    rows_f32_tile(l, rows, &codebook, &cur, &mut next, parallel)?
                }
                _ => layer_f32_tile(l, &codebook, &cur, &mut next)?,
            }
            if f16 {
                next.iter_mut().for_each(|v| *v = round_f16(*v));
            }
            cur = next;
        }
        y.copy_from_slice(&cur);
        Ok(())
    }

    /// Runs a batch as [`Self::run`] does in fixed16 and counts the saturations over the whole
    /// batch: inputs clipped to the model's input format, outputs clipped on write-back and
    /// accumulator overflows, per layer.
    ///
    /// An [`Error::UnsupportedPrecision`] for an engine in another precision (as on the GPU's
    /// `GpuEngine::run_fixed16`): `engine.with_precision(Precision::Fixed16)` makes one.
    pub fn run_fixed16(&self, input: &[f32]) -> Result<(Vec<f32>, fixed16::Saturations)> {
        if self.precision != Precision::Fixed16 {
            return Err(Error::UnsupportedPrecision {
                backend: "saturation counting".into(),
                precision: self.precision.name().into(),
                supported: "fixed16".into(),
            });
        }
        let mut out = self.outputs_for(input)?;
        let counts = self.fixed16_batch(input, &mut out)?;
        Ok((out, counts))
    }

    /// The row-ordered copy of layer `index` where the fixed16 walk of one input `x` takes it:
    /// where the row walk's slots (`FIXED16_ROW_SLOT_COST` each) cost less than the column
    /// walk's entries and slices (or the walk is forced to rows), and every sum fits an i32
    /// ([`sums_fit_i32`]); `None` for the column walk.
    fn fixed16_rows(&self, index: usize, x: &[i16]) -> Option<&RowCodes> {
        let walks = self.layers[index].as_ref()?;
        let rows = walks.rows.as_ref()?;
        let walk = self.cheaper_walk(index, FIXED16_ROW_SLOT_COST, || {
            // Branch-free: the scan costs little beside either walk.
            let (mut listed, mut listed_entries) = (0usize, 0usize);
            for (&a, &n) in x.iter().zip(&walks.column_entries) {
                let nz = (a != 0) as usize;
                listed += nz;
                listed_entries += nz * n as usize;
            }
            (listed, listed_entries)
        });
        if walk != CpuWalk::Rows {
            return None;
        }
        let max_a = x.iter().map(|a| a.unsigned_abs() as u64).max().unwrap_or(0);
        sums_fit_i32(walks.fixed16_row_bound, max_a, walks.fixed16.frac).then_some(rows)
    }

    /// A batch in fixed16: one input with each layer's PEs in parallel, or tiles of
    /// [`CPU_BATCH_TILE`] inputs in parallel, each walking every entry once for all its inputs.
    fn fixed16_batch(&self, input: &[f32], out: &mut [f32]) -> Result<fixed16::Saturations> {
        let (n_in, n_out) = (self.model.input_size(), self.model.output_size());
        let layers = self.model.layers().len();
        if input.len() <= n_in * CPU_BATCH_TILE {
            return self.forward_fixed16(input, out, true);
        }
        out.par_chunks_mut(n_out * CPU_BATCH_TILE)
            .zip(input.par_chunks(n_in * CPU_BATCH_TILE))
            .map(|(y, x)| self.forward_fixed16(x, y, false))
            .try_reduce(
                || fixed16::Saturations::zero(layers),
                |mut a, b| {
                    a.add(&b);
                    Ok(a)
                },
            )
    }

    /// One input (its layers' PEs in parallel) or a tile of up to [`CPU_BATCH_TILE`] inputs
    /// through every layer in fixed16, counting saturations.
    fn forward_fixed16(
        &self,
        x: &[f32],
        y: &mut [f32],
        parallel: bool,
    ) -> Result<fixed16::Saturations> {
        let t = x.len() / self.model.input_size();
        let mut counts = fixed16::Saturations::zero(self.model.layers().len());
        let input_frac = self.model.input_frac();
        let mut cur: Vec<i16> = x
            .iter()
            .map(|&v| {
                let (q, saturated) = fixed16::quantize(v, input_frac);
                counts.input += saturated as u64;
                q
            })
            .collect();
        for (i, (l, c)) in self
            .model
            .layers()
            .iter()
            .zip(&mut counts.layers)
            .enumerate()
        {
            let mut next = try_filled(t * l.rows(), 0i16, "layer outputs")?;
            let walks = self.layers[i].as_ref();
            let compact = walks.and_then(|w| w.columns.as_ref());
            let bound = walks.map(|w| w.fixed16_row_bound);
            let own;
            let codebook = match walks {
                Some(w) => &w.fixed16,
                None => {
                    own = FixedCodebook::new(l.codebook());
                    &own
                }
            };
            *c = if t > 1 {
                fixed16_tile(l, compact, codebook, bound, &cur, &mut next)?
            } else if let (Some(w), Some(rows)) = (walks, self.fixed16_rows(i, &cur)) {
                let parallel = split_layer(l, parallel);
                rows_fixed16(l, rows, &w.fixed16_terms, &cur, &mut next, parallel)?
            } else {
                let serial = !split_layer(l, parallel);
                let outer = BATCHED.with(|b| b.replace(serial || b.get()));
                let r = columns_fixed16(l, compact, codebook, &cur, &mut next);
                BATCHED.with(|b| b.set(outer));
                r?
            };
            cur = next;
        }
        let output_frac = self.model.output_frac();
        for (o, &q) in y.iter_mut().zip(&cur) {
            *o = fixed16::dequantize_activation(q, output_frac);
        }
        Ok(counts)
    }
}

/// `v` rounded to f16 (round to nearest even) and back.
fn round_f16(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// Row groups per parallel task of the row walk.
const GROUPS_PER_TASK: usize = 16;

/// The pre-activation sums of every row group of `rows`, `width` per row (one per input), from
/// `kernel(g0, out)`, which fills the sums of groups `g0..` into `out`. `parallel`: tasks of
/// [`GROUPS_PER_TASK`] groups spread over the rayon threads.
fn row_sums<T: Copy + Default + Send>(
    rows: &RowCodes,
    width: usize,
    parallel: bool,
    kernel: impl Fn(usize, &mut [T]) + Sync,
) -> Result<Vec<T>> {
    let group = row_order::GROUP * width;
    let mut sums: Vec<T> = try_filled(rows.groups() * group, T::default(), "row sums")?;
    if parallel {
        sums.par_chunks_mut(GROUPS_PER_TASK * group)
            .enumerate()
            .for_each(|(k, s)| kernel(k * GROUPS_PER_TASK, s));
    } else {
        kernel(0, &mut sums);
    }
    Ok(sums)
}

/// Bias and activation of row `i` applied to its sum.
#[inline]
fn write_back(layer: &EieLayer, i: usize, sum: f32) -> f32 {
    let b = layer.bias().map_or(0.0, |b| b[i]);
    layer.activation().apply(sum + b)
}

/// One layer in f32 by the row-ordered walk: each row sums its terms in increasing column
/// order, as the column walk does, then bias and activation. `parallel`: row groups spread over
/// the rayon threads.
fn rows_f32(
    layer: &EieLayer,
    rows: &RowCodes,
    codebook: &[f32; 256],
    x: &[f32],
    out: &mut [f32],
    parallel: bool,
) -> Result<()> {
    check_lengths(layer, x.len(), out.len())?;
    let mut xz: Vec<f32> = try_with_capacity(x.len() + 1, "input")?;
    xz.extend_from_slice(x);
    xz.push(0.0);
    let sums = row_sums(rows, 1, parallel, |g0, s| rows.sums(codebook, &xz, g0, s))?;
    for (i, (o, &s)) in out.iter_mut().zip(&sums).enumerate() {
        *o = write_back(layer, i, s);
    }
    Ok(())
}

/// [`rows_f32`] for a tile of up to [`CPU_BATCH_TILE`] inputs (`xs`: `t` inputs back to back,
/// `out`: `t` outputs back to back).
fn rows_f32_tile(
    layer: &EieLayer,
    rows: &RowCodes,
    codebook: &[f32; 256],
    xs: &[f32],
    out: &mut [f32],
    parallel: bool,
) -> Result<()> {
    const T: usize = CPU_BATCH_TILE;
    let (n_rows, cols) = (layer.rows(), layer.cols());
    let t = tile_inputs(layer, xs.len(), out.len())?;
    // The tile input-minor, with a zero row at the end for the padding slots.
    let mut xt: Vec<f32> = try_filled((cols + 1) * T, 0f32, "input tile")?;
    for (b, x) in xs.chunks_exact(cols).enumerate() {
        for (j, &v) in x.iter().enumerate() {
            xt[j * T + b] = v;
        }
    }
    let sums = row_sums(rows, T, parallel, |g0, s| {
        rows.sums_tile(codebook, &xt, g0, s)
    })?;
    for i in 0..n_rows {
        for b in 0..t {
            out[b * n_rows + i] = write_back(layer, i, sums[i * T + b]);
        }
    }
    Ok(())
}
