// EIE sparse matrix-vector product of one layer, straight from the compressed format, in one
// dispatch per layer (f32, fixed16 and f16 from this one source).
//
// The layer is interleaved over N PEs (PE p owns rows i with i % N == p, local row i / N) and
// stored as EIE's relative-indexed CSC: each PE's slice of each column is a run of entries
// (code, run), padding entries have code 0. The dispatch is (S * N, tiles): workgroup
// (s, p, tile) is PE p walking column slice s of the layer for a tile of TILE inputs.
//  1. Leading non-zero detection, fused: the input's non-zero bitmap (written by the previous
//     layer's write-back, or uploaded with the first layer's input) is read for the slice, the
//     tile's bitmaps are OR-ed, and the workgroup compacts the non-zero columns into a list in
//     workgroup memory, with their activations, CHUNK columns at a time. Only those columns are
//     walked: zero activations are never broadcast.
//  2. The workgroup's lanes form GROUPS column groups; each group takes every GROUPS-th listed
//     column, reads this PE's pointer pair for it once, and its lanes take one entry each
//     (a lane per entry of the slice, LANES lanes per input of the tile). A lane finds its
//     entry's row from the 4-bit runs before it (row += run + 1) with a few word-wide sums, and
//     adds codebook[code] * a_j to that row's accumulator. The entries of one column slice are
//     on distinct rows, so a group's lanes never collide; each group owns its own copy of the
//     PE's accumulators in workgroup memory, and groups step in lockstep (a barrier per step).
//     No atomics, no compare-exchange loops: every accumulator has one writer at a time.
//  3. The groups' copies are summed in group order. With one slice (S == 1) that is the row's
//     value; otherwise the workgroup stores its partial sums, and the last of the S workgroups
//     of its PE and tile to finish (a counter) adds the S partials in slice order. Either way the
//     order of every addition is fixed, so f32 output is bit-identical from run to run, and the
//     fixed16 sums (wrapping i32) equal the CPU model's bit for bit.
//  4. Write-back: bias, ReLU (fixed16: rounding to Q5.10 and saturation), the output value and
//     its bit of the output's non-zero bitmap, which is the next layer's input bitmap.
//
// Activations are 32-bit words (f32 bits, or Q5.10 values as i32 bits) or, with HALF, f16
// values packed two per word. Sums are f32 (f32 and HALF) or wrapping i32 Q.14 (FIXED).

const WG: u32 = 256u;
// Workgroup memory: accumulator words (GROUPS * TILE * local rows must fit), listed columns
// per chunk, their activations (CHUNK * TILE), codebook.
const ACC_WORDS: u32 = 2560u;
const LIST_WORDS: u32 = 512u;
const MAX_CODES: u32 = 256u;
const MAX_CHUNK_WORDS: u32 = 16u;

// Arithmetic: FIXED = EIE's fixed16 (see src/fixed16.rs); HALF = f16 activations (f16
// codebook values, f32 products and sums); neither = f32.
override FIXED: bool = false;
override HALF: bool = false;
// Entry width: false = 8-bit entries (4-bit code | 4-bit run << 4, four per word), true =
// 16-bit entries (8-bit code | run << 8, two per word) for codebooks of more than 16 entries.
override WIDE: bool = false;
// Column groups per workgroup and inputs per tile; LANES = WG / (GROUPS * TILE) lanes share
// a column slice for each input.
override GROUPS: u32 = 16u;
override TILE: u32 = 1u;

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
    ptr_base: u32,      // first column pointer word in `layer`
    entries_base: u32,  // first entry word in `layer`
    relu: u32,          // 1: ReLU on write-back
    has_bias: u32,      // 1: add the bias
    frac: u32,          // fixed16: fraction bits of the codebook
    part_base: u32,     // first partial-sum word in `scratch` (after the counters)
}

// Layer shape, strides and offsets.
@group(0) @binding(0) var<uniform> params: Params;
// The layer: codebook [codes] (f32 bits, or i32 Q(frac) values for fixed16), bias [rows] (f32
// bits, or i32 Q.14), column pointers [N][cols + 1] (absolute entry indices, PE after PE),
// entries (u8 or u16, little-endian in u32 words, PE after PE, column after column).
@group(0) @binding(1) var<storage, read> layer: array<u32>;
// Input: [batch][x_stride] activation words, then at x_bits_base [batch][x_bits_stride]
// non-zero bitmaps (bit j of word j / 32: activation j is not zero).
@group(0) @binding(2) var<storage, read> x: array<u32>;
// Output, laid out like the input (y_stride, y_bits_base, y_bits_stride).
@group(0) @binding(3) var<storage, read_write> y: array<atomic<u32>>;
// Counters [tiles][N] (one per PE and tile: workgroups of that PE done), then partial sums
// [batch][S][N][local_rows] at part_base. Counters are zero between runs.
@group(0) @binding(4) var<storage, read_write> scratch: array<atomic<u32>>;

var<workgroup> acc: array<u32, ACC_WORDS>;
var<workgroup> list: array<u32, LIST_WORDS>;
var<workgroup> xs: array<u32, LIST_WORDS>;
var<workgroup> codebook: array<u32, MAX_CODES>;
var<workgroup> words: array<u32, MAX_CHUNK_WORDS>;
var<workgroup> offsets: array<u32, MAX_CHUNK_WORDS>;
var<workgroup> listed: u32;
var<workgroup> last_flag: u32;

fn product_fixed(a: i32, c: i32) -> i32 {
    // a * c is exact in i32 (|a|, |c| <= 2^15); bring Q(10 + frac) to Q.14, round half up.
    let p = a * c;
    let frac = params.frac;
    if frac > 4u {
        let s = frac - 4u;
        return (p + (1i << (s - 1u))) >> s;
    }
    return p << (4u - frac);
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

// Activation `j` of input `bi` as a 32-bit word: f32 bits (f16 widened), or Q5.10 as i32.
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
        // Q17.14 -> Q5.10: add half an LSB, arithmetic shift, saturate (no overflow:
        // (v >> 4) + ((v & 15) + 8) >> 4 == (v + 8) >> 4 computed in 64 bits).
        var q = (v >> 4u) + (((v & 15i) + 8i) >> 4u);
        q = clamp(q, -32768i, 32767i);
        if params.relu == 1u {
            q = max(q, 0i);
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

@compute @workgroup_size(256)
fn eie_spmv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let slices = params.slices;
    let s = wg.x % slices;
    let pe = wg.x / slices;
    let tile = wg.y;
    let local_rows = params.local_rows;
    let cols = params.cols;
    let lanes = WG / (GROUPS * TILE);
    let g = lid / (TILE * lanes);
    let b = (lid / lanes) % TILE;
    let e = lid % lanes;
    let copy = (g * TILE + b) * local_rows;

    for (var i = lid; i < params.codes && i < MAX_CODES; i += WG) {
        codebook[i] = layer[i];
    }
    for (var i = lid; i < GROUPS * TILE * local_rows && i < ACC_WORDS; i += WG) {
        acc[i] = 0u;
    }

    let c0 = s * params.slice_cols;
    let c1 = min(c0 + params.slice_cols, cols);
    let chunk = LIST_WORDS / TILE;
    let ptr_row = params.ptr_base + pe * (cols + 1u);
    for (var cc = c0; cc < c1; cc += chunk) {
        // Leading non-zero detection over this chunk: OR of the tile's bitmaps, compacted.
        let ce = min(cc + chunk, c1);
        let nw = (ce - cc + 31u) / 32u;
        if lid < nw {
            var w = 0u;
            for (var t = 0u; t < TILE; t++) {
                let bi = tile * TILE + t;
                w |= x[params.x_bits_base + bi * params.x_bits_stride + (cc >> 5u) + lid];
            }
            let valid = ce - (cc + 32u * lid);
            if valid < 32u {
                w &= (1u << valid) - 1u;
            }
            words[lid] = w;
        }
        workgroupBarrier();
        if lid == 0u {
            var total = 0u;
            for (var i = 0u; i < nw; i++) {
                offsets[i] = total;
                total += countOneBits(words[i]);
            }
            listed = total;
        }
        workgroupBarrier();
        if lid < nw {
            var w = words[lid];
            var o = offsets[lid];
            while w != 0u {
                list[o] = cc + 32u * lid + firstTrailingBit(w);
                o += 1u;
                w &= w - 1u;
            }
        }
        let m = workgroupUniformLoad(&listed);
        for (var i = lid; i < m * TILE; i += WG) {
            xs[i] = load_x(tile * TILE + i % TILE, list[i / TILE]);
        }
        workgroupBarrier();

        // The walk: group g takes listed columns g, g + GROUPS, ...; one entry per lane. The
        // pointer pair of a group's next column is loaded before the current one is walked.
        let steps = (m + GROUPS - 1u) / GROUPS;
        var next = vec2<u32>(0u);
        if g < m {
            next = vec2<u32>(layer[ptr_row + list[g]], layer[ptr_row + list[g] + 1u]);
        }
        for (var st = 0u; st < steps; st++) {
            let k = st * GROUPS + g;
            let start = next.x;
            let end = next.y;
            if k + GROUPS < m {
                let jn = list[k + GROUPS];
                next = vec2<u32>(layer[ptr_row + jn], layer[ptr_row + jn + 1u]);
            }
            if k < m {
                let a = xs[k * TILE + b];
                if a != 0u && a != 0x80000000u {
                    var base = 0u;
                    for (var r0 = start; r0 < end; r0 += lanes) {
                        let last = min(r0 + lanes, end) - 1u;
                        let mine = r0 + e;
                        let adv = advance(r0, last, mine);
                        if mine <= last {
                            let code = code_of(mine);
                            let row = base + adv.x - 1u;
                            if code != 0u && row < local_rows {
                                let ai = copy + row;
                                if FIXED {
                                    let t = product_fixed(bitcast<i32>(a), bitcast<i32>(codebook[code]));
                                    acc[ai] = acc[ai] + bitcast<u32>(t);
                                } else {
                                    let v = bitcast<f32>(codebook[code]) * bitcast<f32>(a);
                                    acc[ai] = bitcast<u32>(bitcast<f32>(acc[ai]) + v);
                                }
                            }
                        }
                        base += adv.y;
                    }
                }
            }
            workgroupBarrier();
        }
    }

    // The groups' copies, summed in group order.
    for (var i = lid; i < TILE * local_rows; i += WG) {
        let t = i / local_rows;
        let r = i % local_rows;
        var sum = acc[t * local_rows + r];
        for (var q = 1u; q < GROUPS; q++) {
            sum = add_bits(sum, acc[(q * TILE + t) * local_rows + r]);
        }
        let bi = tile * TILE + t;
        if slices == 1u {
            write_back(bi, pe, r, sum);
        } else {
            let pi = params.part_base + ((bi * slices + s) * params.pes + pe) * local_rows + r;
            atomicStore(&scratch[pi], sum);
        }
    }
    if slices == 1u {
        return;
    }

    // Split columns: the last workgroup of this PE and tile adds the S partials in slice order.
    // storageBarrier() is a device-scope release (here) and acquire (below) around the counter.
    storageBarrier();
    let counter = tile * params.pes + pe;
    if lid == 0u {
        let done = atomicAdd(&scratch[counter], 1u);
        last_flag = select(0u, 1u, done == slices - 1u);
    }
    if workgroupUniformLoad(&last_flag) == 1u {
        storageBarrier();
        for (var i = lid; i < TILE * local_rows; i += WG) {
            let t = i / local_rows;
            let r = i % local_rows;
            let bi = tile * TILE + t;
            let first = params.part_base + (bi * slices * params.pes + pe) * local_rows + r;
            let step = params.pes * local_rows;
            var sum = atomicLoad(&scratch[first]);
            // Eight loads in flight before their values are added (in slice order).
            var q = 1u;
            for (; q + 8u <= slices; q += 8u) {
                var v: array<u32, 8>;
                for (var u = 0u; u < 8u; u++) {
                    v[u] = atomicLoad(&scratch[first + (q + u) * step]);
                }
                for (var u = 0u; u < 8u; u++) {
                    sum = add_bits(sum, v[u]);
                }
            }
            for (; q < slices; q++) {
                sum = add_bits(sum, atomicLoad(&scratch[first + q * step]));
            }
            write_back(bi, pe, r, sum);
        }
        if lid == 0u {
            atomicStore(&scratch[counter], 0u);
        }
    }
}
