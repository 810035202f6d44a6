// One time step of a layer of LSTM or GRU cells, the element-wise part (see
// src/gpu/kernels/recurrent_cell.rs and, for the arithmetic, src/recurrent/cell.rs): from the
// gate pre-activations of the input part (`gx = W_ih x_t + b_ih`, all steps of the call made by
// one batched EIE product ahead of the chain) and of the hidden part (`gh = W_hh h + b_hh`, made
// by the EIE kernels just before this dispatch), the new cell state `c` and output `h`, written
// where the next step's `W_hh` product reads them (with `h`'s non-zero bitmap, for its leading
// non-zero detection) and into the layer's output sequence (with its bitmap, for the next
// layer). Gates are in PyTorch's order: gate g of unit u at g * hidden + u.
//
// One invocation per 32 units (one bitmap word) of one sequence: it owns those words of `h`,
// `c`, the output and both bitmaps, so no two invocations write the same word and nothing is
// read that another workgroup of this dispatch writes.

// Invocations per workgroup: the host's CELL_WORKGROUP (checked by tests/shaders.rs).
const WG: u32 = 64u;

// Arithmetic: FIXED = EIE's fixed16 (gates i32 with gate_frac fraction bits, h Q1.14, c with 15
// fraction bits, sigmoid and tanh by the host's tables); otherwise f32.
override FIXED: bool = false;

struct Params {
    step: u32,            // t: this dispatch's step within the call
    hidden: u32,          // H: units
    lstm: u32,            // 1: LSTM (gates i, f, g, o; c used); 0: GRU (gates r, z, n)
    gate_frac: u32,       // fixed16: fraction bits of gx and gh
    gx_stride: u32,       // words between gx rows (row b * steps + t)
    gh_stride: u32,       // words between gh rows (row b)
    h_stride: u32,        // words between h rows (row b)
    h_bits_base: u32,     // first bitmap word in `h`
    h_bits_stride: u32,   // words between h bitmaps
    out_stride: u32,      // words between output rows (row b * steps + t)
    out_bits_base: u32,   // first bitmap word in `out`
    out_bits_stride: u32, // words between output bitmaps
}

struct Call {
    steps: u32, // steps of this call (rows of gx and out per sequence)
    batch: u32, // sequences
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<uniform> call: Call;
@group(0) @binding(2) var<storage, read> gx: array<u32>;
@group(0) @binding(3) var<storage, read> gh: array<u32>;
// h: [batch][h_stride] values, then the bitmaps; read (GRU) and written.
@group(0) @binding(4) var<storage, read_write> h: array<u32>;
// c: [batch][hidden] (LSTM; f32 bits, or i32 with 15 fraction bits).
@group(0) @binding(5) var<storage, read_write> c: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<u32>;
// fixed16: the sigmoid table, then the tanh table (TABLE_LEN i32 each, 15 fraction bits).
@group(0) @binding(7) var<storage, read> tables: array<i32>;

// The tables' shape (src/recurrent/cell.rs; checked by tests/shaders.rs): entries, the range
// [-TABLE_RANGE, TABLE_RANGE], the position's fraction bits, and bits per step below them.
const TABLE_LEN: u32 = 257u;
const TABLE_RANGE: i32 = 8i;
const POS_FRAC: u32 = 12u;
const STEP_BITS: u32 = 8u;
// Fixed16 cell: gate outputs and c have 15 fraction bits, h 14; c saturates at +-C_LIMIT.
const C_LIMIT: i32 = 16777215i;

// (v + 2^(s-1)) >> s, s >= 1: a right shift rounding half up.
fn shift_round(v: i32, s: u32) -> i32 {
    return (v + (1i << (s - 1u))) >> s;
}

// cell::lookup: x with `frac` fraction bits looked up in the table at `base`, linear
// interpolation between entries; 15 fraction bits out.
fn lookup(base: u32, x: i32, frac: u32) -> i32 {
    let limit = TABLE_RANGE << frac;
    let xc = clamp(x, -limit, limit);
    var x12 = xc;
    if frac > POS_FRAC {
        x12 = shift_round(xc, frac - POS_FRAC);
    } else if frac < POS_FRAC {
        x12 = xc << (POS_FRAC - frac);
    }
    let pos = x12 + (TABLE_RANGE << POS_FRAC);
    let idx = u32(pos >> STEP_BITS);
    if idx + 1u >= TABLE_LEN {
        return tables[base + TABLE_LEN - 1u];
    }
    let part = pos & ((1i << STEP_BITS) - 1i);
    let a = tables[base + idx];
    let b = tables[base + idx + 1u];
    return a + shift_round((b - a) * part, STEP_BITS);
}

fn sigmoid_q(x: i32) -> i32 {
    return lookup(0u, x, params.gate_frac);
}

fn tanh_q(x: i32, frac: u32) -> i32 {
    return lookup(TABLE_LEN, x, frac);
}

// tanh clamped where f32's tanh is +-1 anyway: some backends compute tanh from exponentials
// that overflow to NaN for large |x|.
fn tanh_f(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

// exp(-x) kept finite (WGSL leaves an overflowing exp indeterminate): below -88 sigmoid is
// below 6e-39 anyway.
fn sigmoid_f(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-max(x, -88.0)));
}

// The fixed16 gate sum of gate g, unit u (each part an i16-range i32, so the sum fits).
fn gate_q(xrow: u32, hrow: u32, g: u32, u: u32) -> i32 {
    let k = g * params.hidden + u;
    return bitcast<i32>(gx[xrow + k]) + bitcast<i32>(gh[hrow + k]);
}

fn gate_f(xrow: u32, hrow: u32, g: u32, u: u32) -> f32 {
    let k = g * params.hidden + u;
    return bitcast<f32>(gx[xrow + k]) + bitcast<f32>(gh[hrow + k]);
}

// One unit: reads its gates and state, writes c; returns h's new value as stored (f32 bits, or
// the i32 of an i16 Q1.14).
fn unit(b: u32, u: u32, xrow: u32, hrow: u32) -> u32 {
    let ci = b * params.hidden + u;
    let hi = b * params.h_stride + u;
    if FIXED {
        if params.lstm == 1u {
            let i = sigmoid_q(gate_q(xrow, hrow, 0u, u));
            let f = sigmoid_q(gate_q(xrow, hrow, 1u, u));
            let g = tanh_q(gate_q(xrow, hrow, 2u, u), params.gate_frac);
            let o = sigmoid_q(gate_q(xrow, hrow, 3u, u));
            // (f c + i g + 2^14) >> 15 exactly in i32: c = c_hi 2^15 + c_lo with 0 <= c_lo <
            // 2^15, so the sum is f c_hi 2^15 + (f c_lo + i g + 2^14), the second part within
            // +-2^31 (f, i <= 2^15, |g| <= 2^15), and the shift distributes over the first.
            let cv = bitcast<i32>(c[ci]);
            let lo = f * (cv & 0x7fffi) + i * g + (1i << 14u);
            let cn = clamp(f * (cv >> 15u) + (lo >> 15u), -C_LIMIT, C_LIMIT);
            c[ci] = bitcast<u32>(cn);
            // sigma(o) tanh(c): 30 fraction bits to 14.
            let hq = clamp(shift_round(o * tanh_q(cn, 15u), 16u), -32768i, 32767i);
            return bitcast<u32>(hq);
        }
        let r = sigmoid_q(gate_q(xrow, hrow, 0u, u));
        let z = sigmoid_q(gate_q(xrow, hrow, 1u, u));
        let k = 2u * params.hidden + u;
        let pre = bitcast<i32>(gx[xrow + k]) + shift_round(r * bitcast<i32>(gh[hrow + k]), 15u);
        let cand = tanh_q(pre, params.gate_frac);
        // (2^15 - z) n + z 2h: the weights sum to 2^15 and |n| <= 2^15, |2h| <= 2^16, so the
        // sum stays within 2^30 + z 2^15 (z <= 32757, the table's largest value), and with the
        // rounding term 2^15 below 2^31.
        let v = ((1i << 15u) - z) * cand + z * (bitcast<i32>(h[hi]) << 1u);
        let hq = clamp(shift_round(v, 16u), -32768i, 32767i);
        return bitcast<u32>(hq);
    }
    if params.lstm == 1u {
        let i = sigmoid_f(gate_f(xrow, hrow, 0u, u));
        let f = sigmoid_f(gate_f(xrow, hrow, 1u, u));
        let g = tanh_f(gate_f(xrow, hrow, 2u, u));
        let o = sigmoid_f(gate_f(xrow, hrow, 3u, u));
        let cn = f * bitcast<f32>(c[ci]) + i * g;
        c[ci] = bitcast<u32>(cn);
        return bitcast<u32>(o * tanh_f(cn));
    }
    let r = sigmoid_f(gate_f(xrow, hrow, 0u, u));
    let z = sigmoid_f(gate_f(xrow, hrow, 1u, u));
    let k = 2u * params.hidden + u;
    let cand = tanh_f(bitcast<f32>(gx[xrow + k]) + r * bitcast<f32>(gh[hrow + k]));
    return bitcast<u32>((1.0 - z) * cand + z * bitcast<f32>(h[hi]));
}

@compute @workgroup_size(WG)
fn recurrent_cell(@builtin(global_invocation_id) id: vec3<u32>) {
    let w = id.x;
    let b = id.y;
    if b >= call.batch || w * 32u >= params.hidden {
        return;
    }
    let row = b * call.steps + params.step;
    let xrow = row * params.gx_stride;
    let hrow = b * params.gh_stride;
    var bits = 0u;
    let end = min(params.hidden, w * 32u + 32u);
    for (var u = w * 32u; u < end; u++) {
        let v = unit(b, u, xrow, hrow);
        h[b * params.h_stride + u] = v;
        out[row * params.out_stride + u] = v;
        // f32 -0.0 counts as zero, as everywhere else; a fixed16 value is zero only as 0.
        if (v & 0x7fffffffu) != 0u {
            bits |= 1u << (u & 31u);
        }
    }
    h[params.h_bits_base + b * params.h_bits_stride + w] = bits;
    out[params.out_bits_base + row * params.out_bits_stride + w] = bits;
}
