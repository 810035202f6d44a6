// EIE sparse matrix-vector product of one layer in half precision (needs SHADER_F16): the same
// dataflow as eie_spmv.wgsl (one workgroup per PE and input, the input's non-zero column list
// read from the compact_columns dispatch before it, invocations splitting the non-zero columns,
// fused bias and ReLU), with the codebook, the activations and the products in f16 (half the
// activation traffic) and the per-row sums in f32 accumulators in workgroup memory. The result
// is rounded to f16 on write-back.

enable f16;
const WG: u32 = 256u;          // invocations per workgroup
const SCRATCH: u32 = 2048u;    // words of reduction scratch: 8 rows * WG
const MAX_LOCAL: u32 = 1024u;  // most rows one PE may own
const MAX_CODES: u32 = 256u;   // largest codebook (8-bit indices)
const PRIV_ROWS: u32 = 16u;     // PEs of at most this many rows sum in per-invocation registers

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
    frac: u32,        // unused (fixed16 only)
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
// [codes] codebook then [rows] bias, f16 values widened to f32 bits.
@group(0) @binding(3) var<storage, read> layer_meta: array<u32>;
// Input activations: [batch][x_stride] f16.
@group(0) @binding(4) var<storage, read> x: array<f16>;
// Output activations: [batch][y_stride] f16.
@group(0) @binding(5) var<storage, read_write> y: array<f16>;
// Non-zero columns of the input (compact_columns.wgsl): [batch][cols + 1] words, the count
// then the column indices in increasing order.
@group(0) @binding(6) var<storage, read> nz: array<u32>;

var<workgroup> acc: array<atomic<u32>, MAX_LOCAL>;
var<workgroup> list: array<u32, SCRATCH>;
var<workgroup> counts: array<u32, WG>;
var<workgroup> codebook: array<f16, MAX_CODES>;
// Per-invocation partial sums of the PE's rows (f32 or wrapping-i32 bits) when the PE owns at
// most PRIV_ROWS rows: no contention on shared accumulators; reduced across the workgroup at
// the end.
var<private> partial: array<u32, PRIV_ROWS>;
var<private> use_partial: bool;

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
    return vec4<u32>(start, end, bitcast<u32>(f32(x[xb + j])), word);
}

// Walks one column slice of this PE (relative-indexed entries, padding entries have code 0)
// for the activation in `c` (see `fetch`).
fn walk(c: vec4<u32>) {
    let start = c.x;
    let end = c.y;
    let a = f16(bitcast<f32>(c.z));
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
            let v = f32(codebook[code] * a);
            if use_partial {
                partial[row & 15u] = bitcast<u32>(bitcast<f32>(partial[row & 15u]) + v);
            } else {
                add_f32(row, v);
            }
        }
    }
}

fn add_bits(a: u32, b: u32) -> u32 {
    return bitcast<u32>(bitcast<f32>(a) + bitcast<f32>(b));
}

@compute @workgroup_size(256)
fn eie_spmv_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let pe = wg.x;
    let b = wg.y;
    let cols = params.cols;
    let xb = b * params.x_stride;

    for (var i = t; i < params.codes && i < MAX_CODES; i += WG) {
        codebook[i] = f16(bitcast<f32>(layer_meta[i]));
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
            var v = bitcast<f32>(atomicLoad(&acc[k]));
            if params.has_bias == 1u {
                v += bitcast<f32>(layer_meta[params.codes + row]);
            }
            if params.relu == 1u {
                v = max(v, 0.0);
            }
            y[yb + row] = f16(v);
        }
    }
}
