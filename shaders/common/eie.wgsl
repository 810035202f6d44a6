// Shared by the EIE kernels (prepended to each kernel's source when its pipeline is built, see
// src/gpu/kernels/common.rs): arithmetic and entry-width specialisation, the layer / activation
// bindings, f16 conversions, fixed-point products, the word-wide decode of relative indices and
// the write-back with the output's non-zero bitmap (and, fixed16, its saturation counters).

// Invocations per workgroup: the host's WORKGROUP_SIZE, which each `@workgroup_size` repeats
// (both checked by tests/shaders.rs).
const WG: u32 = 256u;
// Largest codebook (8-bit indices), set by the host: EIE_MAX_CODES.
override MAX_CODES: u32;

// Arithmetic: FIXED = EIE's fixed16 (see src/fixed16.rs); HALF = f16 activations (f16
// codebook values, f32 products and sums); neither = f32.
override FIXED: bool = false;
override HALF: bool = false;
// Entry width: false = 8-bit entries (4-bit code | 4-bit run << 4, four per word), true =
// 16-bit entries (8-bit code | run << 8, two per word) for codebooks of more than 16 entries.
override WIDE: bool = false;

struct Params {
    rows: u32,          // outputs of the layer
    cols: u32,          // inputs of the layer
    pes: u32,           // N
    local_rows: u32,    // ceil(rows / N)
    slices: u32,        // S: column slices (workgroups per PE and tile)
    slice_cols: u32,    // columns per slice, a multiple of 32
    x_stride: u32,      // words between input vectors in `x`
    x_bits_base: u32,   // first word of the input bitmaps in `x`
    x_bits_stride: u32, // words between input bitmaps
    y_stride: u32,      // words between output vectors in `y`
    y_bits_base: u32,   // first word of the output bitmaps in `y`
    y_bits_stride: u32, // words between output bitmaps
    codes: u32,         // codebook entries (at word 0 of `layer`)
    bias_base: u32,     // first bias word in `layer` (has_bias)
    ptr_base: u32,      // first pointer word in `layer` (column pointers, or row pointers)
    entries_base: u32,  // first entry word in `layer`
    relu: u32,          // 1: ReLU on write-back
    has_bias: u32,      // 1: add the bias
    frac: u32,          // fixed16: fraction bits of the codebook
    sat_index: u32,     // fixed16: this layer's write-back saturation counter in `saturations`
    shift: i32,         // fixed16: write-back shift, accumulator to output format (< 0: left)
}

// Layer shape, strides and offsets.
@group(0) @binding(0) var<uniform> params: Params;
// The layer: codebook [codes] (f32 bits, or i32 Q(frac) values for fixed16), bias [rows] (f32
// bits, or i32 in the accumulator's format), pointers, entries (u8 or u16, little-endian in u32 words). eie_spmv:
// column pointers [N][cols + 1] (absolute entry indices, PE after PE), entries PE after PE,
// column after column. eie_spmv_rows: row pointers [rows + 1], entries row after row.
@group(0) @binding(1) var<storage, read> layer: array<u32>;
// Input: [batch][x_stride] activation words, then at x_bits_base [batch][x_bits_stride]
// non-zero bitmaps (bit j of word j / 32: activation j is not zero).
@group(0) @binding(2) var<storage, read> x: array<u32>;
// Output, laid out like the input (y_stride, y_bits_base, y_bits_stride).
@group(0) @binding(3) var<storage, read_write> y: array<atomic<u32>>;
// fixed16 run counters, written by the host at the start of each submission and copied back
// with the output: word 0 the inputs of the run (padding inputs of a tile, at and above it, are
// not counted), word `params.sat_index` (1 + the layer's index) the layer's outputs clipped to
// the i16 range on write-back, over every input of the run. Integer atomics, so the counts do
// not depend on which workgroup adds first. Bound for every pipeline, touched only when FIXED.
@group(0) @binding(4) var<storage, read_write> saturations: array<atomic<u32>>;

fn product_fixed(a: i32, c: i32) -> i32 {
    // a * c is exact in i32 (|a|, |c| <= 2^15); bring Q(fi + frac) to the accumulator's
    // Q(fi + 4), round half up (fi: the input's fraction bits).
    let p = a * c;
    let frac = params.frac;
    if frac > 4u {
        let s = frac - 4u;
        return (p + (1i << (s - 1u))) >> s;
    }
    return p << (4u - frac);
}

// acc + c * a for a codebook value c and an activation a: the fixed-point product added in
// wrapping i32 for fixed16, f32 otherwise.
fn mac(acc: u32, c: u32, a: u32) -> u32 {
    if FIXED {
        return acc + bitcast<u32>(product_fixed(bitcast<i32>(a), bitcast<i32>(c)));
    }
    return bitcast<u32>(bitcast<f32>(acc) + bitcast<f32>(c) * bitcast<f32>(a));
}

// Adds two sums: wrapping i32 for fixed16 (order-independent), f32 otherwise.
fn add_bits(a: u32, b: u32) -> u32 {
    if FIXED {
        return a + b;
    }
    return bitcast<u32>(bitcast<f32>(a) + bitcast<f32>(b));
}

// f16 bits to f32 bits (exact). Written out because WGSL's unpack2x16float needs a
// capability some backends lack.
fn f16_to_f32(h: u32) -> u32 {
    let sign = (h & 0x8000u) << 16u;
    let exp = (h >> 10u) & 0x1fu;
    let man = h & 0x3ffu;
    if exp == 0u {
        // Zero or subnormal: man * 2^-24, exact in f32.
        return sign | bitcast<u32>(f32(man) * 5.9604645e-8);
    }
    if exp == 31u {
        return sign | 0x7f800000u | (man << 13u);
    }
    return sign | ((exp + 112u) << 23u) | (man << 13u);
}

// f32 to f16 bits, rounded to nearest, ties to even (as the host's `half::f16::from_f32`).
fn f32_to_f16(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    let sign = (b >> 16u) & 0x8000u;
    let biased = (b >> 23u) & 0xffu;
    var m = b & 0x7fffffu;
    if biased == 0xffu {
        return sign | 0x7c00u | select(0u, 0x200u, m != 0u);
    }
    let e = i32(biased) - 112;
    if e >= 31 {
        return sign | 0x7c00u;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        m |= 0x800000u;
        let shift = u32(14 - e);
        var h = m >> shift;
        let rem = m & ((1u << shift) - 1u);
        let half = 1u << (shift - 1u);
        if rem > half || (rem == half && (h & 1u) == 1u) {
            h += 1u;
        }
        return sign | h;
    }
    var h = (u32(e) << 10u) | (m >> 13u);
    let rem = m & 0x1fffu;
    if rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u) {
        h += 1u;
    }
    return sign | h;
}

// Activation `j` of input `bi` as a 32-bit word: f32 bits (f16 widened), or fixed16 as i32.
fn load_x(bi: u32, j: u32) -> u32 {
    if HALF {
        let w = x[bi * params.x_stride + (j >> 1u)];
        return f16_to_f32((w >> ((j & 1u) * 16u)) & 0xffffu);
    }
    return x[bi * params.x_stride + j];
}

// Rows advanced by entries a..=b of one slice (each entry: run + 1), for the entries up to and
// including `mine` (x) and for all of them (y). Word-wide sums of the 4-bit runs.
fn advance(a: u32, b: u32, mine: u32) -> vec2<u32> {
    var all = b - a + 1u;
    var upto = min(mine, b) + 1u - a;
    if WIDE {
        for (var q = a >> 1u; q <= (b >> 1u); q++) {
            let w = layer[params.entries_base + q];
            let lo = select(0u, a & 1u, q == (a >> 1u));
            let hi = select(1u, b & 1u, q == (b >> 1u));
            let m = (0xffffffffu << (16u * lo)) & (0xffffffffu >> (16u * (1u - hi)));
            let r = (w & m) >> 8u;
            all += (r & 0xffu) + ((r >> 16u) & 0xffu);
            let hm = select(1u, mine & 1u, q == (mine >> 1u));
            if q <= (mine >> 1u) {
                let rm = (w & m & (0xffffffffu >> (16u * (1u - hm)))) >> 8u;
                upto += (rm & 0xffu) + ((rm >> 16u) & 0xffu);
            }
        }
    } else {
        for (var q = a >> 2u; q <= (b >> 2u); q++) {
            let w = layer[params.entries_base + q];
            let lo = select(0u, a & 3u, q == (a >> 2u));
            let hi = select(3u, b & 3u, q == (b >> 2u));
            let m = (0xffffffffu << (8u * lo)) & (0xffffffffu >> (8u * (3u - hi)));
            let r = ((w & m) >> 4u) & 0x0f0f0f0fu;
            all += (r * 0x01010101u) >> 24u;
            if q <= (mine >> 2u) {
                let hm = select(3u, mine & 3u, q == (mine >> 2u));
                let rm = ((w & m & (0xffffffffu >> (8u * (3u - hm)))) >> 4u) & 0x0f0f0f0fu;
                upto += (rm * 0x01010101u) >> 24u;
            }
        }
    }
    return vec2<u32>(upto, all);
}

// The codebook index of entry e.
fn code_of(e: u32) -> u32 {
    if WIDE {
        let w = layer[params.entries_base + (e >> 1u)];
        return (w >> ((e & 1u) * 16u)) & 0xffu;
    }
    let w = layer[params.entries_base + (e >> 2u)];
    return (w >> ((e & 3u) * 8u)) & 0xfu;
}

// Bias, activation function, output value and its bit of the output bitmap, for local row r
// of PE p and input bi, from the row's sum `s`.
fn write_back(bi: u32, p: u32, r: u32, s: u32) {
    let row = p + r * params.pes;
    if row >= params.rows {
        return;
    }
    var nonzero: bool;
    if FIXED {
        var v = bitcast<i32>(s);
        if params.has_bias == 1u {
            v += bitcast<i32>(layer[params.bias_base + row]);
        }
        // Accumulator to output format (as fixed16::write_back). Right by s > 0: add half an
        // LSB, arithmetic shift (no overflow: (v >> s) + ((v & (2^s - 1)) + 2^(s-1)) >> s ==
        // (v + 2^(s-1)) >> s computed in 64 bits). Left by k = -s >= 0: saturating, since
        // v << k fits an i16 exactly when (-32768 >> k) <= v <= (32767 >> k).
        // `over` / `under`: the exact result is above / below the i16 range (as `y` in
        // fixed16::write_back).
        var q: i32;
        var over: bool;
        var under: bool;
        if params.shift > 0i {
            let sh = u32(params.shift);
            q = (v >> sh) + (((v & ((1i << sh) - 1i)) + (1i << (sh - 1u))) >> sh);
            over = q > 32767i;
            under = q < -32768i;
            q = clamp(q, -32768i, 32767i);
        } else {
            // v << k > 32767 exactly when v > 32767 >> k, and v << k < -32768 exactly when
            // v < -(32768 >> k) (for k > 15 that is v < 0).
            let k = u32(-params.shift);
            over = v > (32767i >> k);
            under = v < -(32768i >> k);
            q = select(v << k, 32767i, over);
            q = select(q, -32768i, under);
        }
        if params.relu == 1u {
            q = max(q, 0i);
            // ReLU zeroes a negative result anyway: not a saturation.
            under = false;
        }
        if (over || under) && bi < atomicLoad(&saturations[0]) {
            atomicAdd(&saturations[params.sat_index], 1u);
        }
        atomicStore(&y[bi * params.y_stride + row], bitcast<u32>(q));
        nonzero = q != 0i;
    } else {
        var v = bitcast<f32>(s);
        if params.has_bias == 1u {
            v += bitcast<f32>(layer[params.bias_base + row]);
        }
        if params.relu == 1u {
            v = max(v, 0.0);
        }
        if HALF {
            // Two rows share a word (and belong to different PEs): each PE replaces only its half.
            let h = f32_to_f16(v);
            let shift = (row & 1u) * 16u;
            let w = bi * params.y_stride + (row >> 1u);
            atomicAnd(&y[w], ~(0xffffu << shift));
            atomicOr(&y[w], h << shift);
            nonzero = (h & 0x7fffu) != 0u;
        } else {
            atomicStore(&y[bi * params.y_stride + row], bitcast<u32>(v));
            nonzero = v != 0.0;
        }
    }
    // Every bit has one owner (this row), so setting or clearing it needs no prior clearing.
    let bw = params.y_bits_base + bi * params.y_bits_stride + (row >> 5u);
    let bit = 1u << (row & 31u);
    if nonzero {
        atomicOr(&y[bw], bit);
    } else {
        atomicAnd(&y[bw], ~bit);
    }
}
