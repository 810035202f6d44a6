// EIE sparse matrix-vector product of one layer, straight from the compressed format.
//
// One workgroup is one processing element (PE) for one input vector: workgroup (p, b) owns the
// rows i with i % pes == p (local row i / pes) and computes them for input b of the batch.
//  1. Codebook to workgroup memory; accumulators cleared.
//  2. Leading non-zero detection is done once per input vector by the compact_columns dispatch
//     recorded just before this one: the workgroup reads the input's list of non-zero column
//     indices (increasing order) and its count from `nz` instead of scanning the dense input.
//  3. The invocations split the listed columns among themselves; each walks this PE's slice of
//     its column (relative-indexed entries: row += run + 1, padding entries have code 0) and
//     adds codebook[code] * a_j to the local row's accumulator in workgroup memory.
//     f32: compare-exchange loop on the float's bits; fixed16: wrapping integer add, which is
//     order-independent and therefore bit-exact against the CPU model.
//  4. Write-back: bias, ReLU (and for fixed16 the rounding to Q5.10), stored to the output.
// Activations are 32-bit words: f32 bits, or Q5.10 values as i32 bits (fixed16).

const WG: u32 = 256u;          // invocations per workgroup
const SCRATCH: u32 = 2048u;    // words of reduction scratch: 8 rows * WG
const MAX_LOCAL: u32 = 1024u;  // most rows one PE may own
const MAX_CODES: u32 = 256u;   // largest codebook (8-bit indices)
const PRIV_ROWS: u32 = 16u;     // PEs of at most this many rows sum in per-invocation registers

// Arithmetic: false = f32, true = EIE fixed16 (see src/fixed16.rs).
override FIXED: bool = false;
// Entry width: false = 8-bit entries (4-bit code | 4-bit run << 4, four per word),
// true = 16-bit entries (8-bit code | run << 8, two per word) for codebooks over 16 entries.
override WIDE: bool = false;

struct Params {
    rows: u32,        // outputs of the layer
    cols: u32,        // inputs of the layer
    pes: u32,         // PEs = workgroups along x
    local_rows: u32,  // ceil(rows / pes)
    x_stride: u32,    // words between consecutive input vectors
    y_stride: u32,    // words between consecutive output vectors
    relu: u32,        // 1: apply ReLU on write-back
    has_bias: u32,    // 1: layer_meta holds a bias after the codebook
    frac: u32,        // fixed16: fraction bits of the codebook
    codes: u32,       // codebook entries
    pad0: u32,
    pad1: u32,
}

// Layer shape and flags.
@group(0) @binding(0) var<uniform> params: Params;
// Entries of every PE, packed little-endian (u8 or u16 entries in u32 words).
@group(0) @binding(1) var<storage, read> entries: array<u32>;
// Column pointers: [pes][cols + 1] absolute entry indices into `entries`.
@group(0) @binding(2) var<storage, read> col_ptr: array<u32>;
// [codes] codebook then [rows] bias: f32 bits, or i32 (Q(frac) codebook, Q.14 bias) for fixed16.
@group(0) @binding(3) var<storage, read> layer_meta: array<u32>;
// Input activations: [batch][x_stride] words.
@group(0) @binding(4) var<storage, read> x: array<u32>;
// Output activations: [batch][y_stride] words.
@group(0) @binding(5) var<storage, read_write> y: array<u32>;
// Non-zero columns of the input (compact_columns.wgsl): [batch][cols + 1] words, the count
// then the column indices in increasing order.
@group(0) @binding(6) var<storage, read> nz: array<u32>;

var<workgroup> acc: array<atomic<u32>, MAX_LOCAL>;
var<workgroup> list: array<u32, SCRATCH>;
var<workgroup> counts: array<u32, WG>;
var<workgroup> codebook: array<u32, MAX_CODES>;
// Per-invocation partial sums of the PE's rows (f32 or wrapping-i32 bits) when the PE owns at
// most PRIV_ROWS rows: no contention on shared accumulators; reduced across the workgroup at
// the end.
var<private> partial: array<u32, PRIV_ROWS>;
var<private> use_partial: bool;

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

fn add_f32(k: u32, v: f32) {
    var old = atomicLoad(&acc[k]);
    loop {
        let r = atomicCompareExchangeWeak(&acc[k], old, bitcast<u32>(bitcast<f32>(old) + v));
        if r.exchanged {
            break;
        }
        old = r.old_value;
    }
}

// Fetches what walking listed column k needs, so that the loads of several columns are in
// flight together: (first entry, end, activation bits, first entry word); an empty range
// when k is past the list.
fn fetch(pe: u32, k: u32, m: u32, lb: u32, xb: u32) -> vec4<u32> {
    if k >= m {
        return vec4<u32>(0u);
    }
    let j = nz[lb + k];
    let base = pe * (params.cols + 1u) + j;
    let start = col_ptr[base];
    let end = col_ptr[base + 1u];
    var word = 0u;
    if start < end {
        if WIDE {
            word = entries[start >> 1u];
        } else {
            word = entries[start >> 2u];
        }
    }
    return vec4<u32>(start, end, x[xb + j], word);
}

// Walks one column slice of this PE (relative-indexed entries, padding entries have code 0)
// for the activation in `c` (see `fetch`).
fn walk(c: vec4<u32>) {
    let start = c.x;
    let end = c.y;
    let a = c.z;
    var row = 0xffffffffu;
    var word = c.w;
    for (var e = start; e < end; e++) {
        var code: u32;
        var run: u32;
        if WIDE {
            if e != start && (e & 1u) == 0u {
                word = entries[e >> 1u];
            }
            let h = (word >> ((e & 1u) * 16u)) & 0xffffu;
            code = h & 0xffu;
            run = h >> 8u;
        } else {
            if e != start && (e & 3u) == 0u {
                word = entries[e >> 2u];
            }
            let b = (word >> ((e & 3u) * 8u)) & 0xffu;
            code = b & 0xfu;
            run = b >> 4u;
        }
        row += run + 1u;
        if code != 0u && row < MAX_LOCAL {
            if FIXED {
                let t = bitcast<u32>(product_fixed(bitcast<i32>(a), bitcast<i32>(codebook[code])));
                if use_partial {
                    partial[row & 15u] += t;
                } else {
                    atomicAdd(&acc[row], t);
                }
            } else {
                let v = bitcast<f32>(codebook[code]) * bitcast<f32>(a);
                if use_partial {
                    partial[row & 15u] = bitcast<u32>(bitcast<f32>(partial[row & 15u]) + v);
                } else {
                    add_f32(row, v);
                }
            }
        }
    }
}

// Adds two partial sums: wrapping i32 for fixed16 (order-independent), f32 otherwise.
fn add_bits(a: u32, b: u32) -> u32 {
    if FIXED {
        return a + b;
    }
    return bitcast<u32>(bitcast<f32>(a) + bitcast<f32>(b));
}

@compute @workgroup_size(256)
fn eie_spmv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let pe = wg.x;
    let b = wg.y;
    let cols = params.cols;
    let xb = b * params.x_stride;

    for (var i = t; i < params.codes && i < MAX_CODES; i += WG) {
        codebook[i] = layer_meta[i];
    }
    for (var k = t; k < params.local_rows && k < MAX_LOCAL; k += WG) {
        atomicStore(&acc[k], 0u);
    }
    use_partial = params.local_rows <= PRIV_ROWS;
    for (var r = 0u; r < PRIV_ROWS; r++) {
        partial[r] = 0u;
    }

    // Codebook and accumulators visible to every invocation before the walk.
    workgroupBarrier();

    // Four listed columns per invocation and step: their pointer, activation and first entry
    // loads are issued before any of them is walked.
    let lb = b * (cols + 1u);
    let m = nz[lb];
    for (var k0 = t; k0 < m; k0 += 4u * WG) {
        let c0 = fetch(pe, k0, m, lb + 1u, xb);
        let c1 = fetch(pe, k0 + WG, m, lb + 1u, xb);
        let c2 = fetch(pe, k0 + 2u * WG, m, lb + 1u, xb);
        let c3 = fetch(pe, k0 + 3u * WG, m, lb + 1u, xb);
        walk(c0);
        walk(c1);
        walk(c2);
        walk(c3);
    }
    workgroupBarrier();

    if use_partial {
        // Reduce the per-invocation sums, 8 rows per round: `list` holds [row][invocation],
        // then 32 lanes per row each add 8 invocations' values into `counts`, then one
        // invocation per row adds its 32 lane sums.
        for (var r0 = 0u; r0 < params.local_rows; r0 += 8u) {
            for (var r = 0u; r < 8u; r++) {
                list[r * WG + t] = partial[(r0 + r) & 15u];
            }
            workgroupBarrier();
            let r = t / 32u;
            let lane = t % 32u;
            var s = 0u;
            for (var i = 0u; i < 8u; i++) {
                s = add_bits(s, list[r * WG + lane + 32u * i]);
            }
            counts[t] = s;
            workgroupBarrier();
            if t < 8u && r0 + t < params.local_rows {
                var total = 0u;
                for (var i = 0u; i < 32u; i++) {
                    total = add_bits(total, counts[t * 32u + i]);
                }
                atomicStore(&acc[r0 + t], total);
            }
            workgroupBarrier();
        }
    }

    let rows = params.rows;
    let pes = params.pes;
    let yb = b * params.y_stride;
    for (var k = t; k < params.local_rows && k < MAX_LOCAL; k += WG) {
        let row = pe + k * pes;
        if row < rows {
            let s = atomicLoad(&acc[k]);
            if FIXED {
                var v = bitcast<i32>(s);
                if params.has_bias == 1u {
                    v += bitcast<i32>(layer_meta[params.codes + row]);
                }
                // Q17.14 -> Q5.10: add half an LSB, arithmetic shift, saturate (no overflow:
                // (v >> 4) + ((v & 15) + 8) >> 4 == (v + 8) >> 4 computed in 64 bits).
                var q = (v >> 4u) + (((v & 15i) + 8i) >> 4u);
                q = clamp(q, -32768i, 32767i);
                if params.relu == 1u {
                    q = max(q, 0i);
                }
                y[yb + row] = bitcast<u32>(q);
            } else {
                var v = bitcast<f32>(s);
                if params.has_bias == 1u {
                    v += bitcast<f32>(layer_meta[params.codes + row]);
                }
                if params.relu == 1u {
                    v = max(v, 0.0);
                }
                y[yb + row] = bitcast<u32>(v);
            }
        }
    }
}
