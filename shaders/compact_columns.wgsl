// Non-zero column list of a layer's input, built once per input vector before the layer's EIE
// dispatch (EIE's leading non-zero detection), so that the EIE workgroups of every PE read the
// list instead of each scanning the dense input.
//
// One workgroup per input vector (workgroup_id.y) scans it CHUNK values at a time: each
// invocation counts the non-zeros of its 8 consecutive values, a two-level workgroup prefix sum
// turns the counts into offsets, and the column indices are written in increasing order after
// those of the previous chunks. Row b of the output holds the count, then the indices.

const WG: u32 = 256u;
const PER_THREAD: u32 = 8u;
const CHUNK: u32 = 2048u;
const SCAN_GROUPS: u32 = 32u;

// Activation width: false = 32-bit words (f32 bits, -0.0 counts as zero, or Q5.10 as i32),
// true = f16 values packed two per word (-0.0 counts as zero).
override HALF: bool = false;

struct Params {
    n: u32,           // values per input vector (the layer's columns)
    x_stride: u32,    // values between consecutive input vectors
    list_stride: u32, // words between consecutive output rows (n + 1)
    pad0: u32,
}

// Vector length and strides.
@group(0) @binding(0) var<uniform> params: Params;
// Inputs: [batch][x_stride] values.
@group(0) @binding(1) var<storage, read> x: array<u32>;
// Output: [batch][list_stride]: count, then the non-zero column indices in increasing order.
@group(0) @binding(2) var<storage, read_write> nz: array<u32>;

var<workgroup> counts: array<u32, WG>;
var<workgroup> group_base: array<u32, SCAN_GROUPS>;
var<workgroup> chunk_total: u32;

fn is_nonzero(i: u32) -> bool {
    if HALF {
        let h = (x[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu;
        return (h & 0x7fffu) != 0u;
    }
    return (x[i] & 0x7fffffffu) != 0u;
}

@compute @workgroup_size(256)
fn compact_columns(@builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(local_invocation_index) t: u32) {
    let b = wg.y;
    let n = params.n;
    let xb = b * params.x_stride;
    let lb = b * params.list_stride + 1u;
    var base = 0u;
    for (var c0 = 0u; c0 < n; c0 += CHUNK) {
        let first = c0 + t * PER_THREAD;
        var bits = 0u;
        var m = 0u;
        for (var i = 0u; i < PER_THREAD; i++) {
            let j = first + i;
            if j < n && is_nonzero(xb + j) {
                bits |= 1u << i;
                m += 1u;
            }
        }
        counts[t] = m;
        workgroupBarrier();
        if t < SCAN_GROUPS {
            var s = 0u;
            for (var i = 0u; i < 8u; i++) {
                let v = counts[t * 8u + i];
                counts[t * 8u + i] = s;
                s += v;
            }
            group_base[t] = s;
        }
        workgroupBarrier();
        if t == 0u {
            var s = 0u;
            for (var g = 0u; g < SCAN_GROUPS; g++) {
                let v = group_base[g];
                group_base[g] = s;
                s += v;
            }
            chunk_total = s;
        }
        workgroupBarrier();
        var o = lb + base + counts[t] + group_base[t / 8u];
        for (var i = 0u; i < PER_THREAD; i++) {
            if (bits & (1u << i)) != 0u {
                nz[o] = first + i;
                o += 1u;
            }
        }
        base += chunk_total;
        // `counts` and `chunk_total` are rewritten only after every invocation has read them.
        workgroupBarrier();
    }
    if t == 0u {
        nz[lb - 1u] = base;
    }
}
