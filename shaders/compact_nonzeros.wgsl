// Non-zero compaction (EIE's leading non-zero detection) as a kernel of its own: each input
// vector of a batch becomes the list of its non-zero activations as (index, value) pairs in
// increasing index order, plus their count. The EIE SpMV kernel does its own detection from the
// non-zero bitmaps inside its single dispatch per layer; this kernel serves callers that want
// the list itself (`eie::gpu::compact_nonzeros`).
//
// One workgroup per input vector scans it CHUNK values at a time: each invocation counts the
// non-zeros of its 8 consecutive values, a two-level workgroup prefix sum turns the counts into
// offsets, and the pairs are written in order after those of the previous chunks.

const WG: u32 = 256u;
const PER_THREAD: u32 = 8u;
const CHUNK: u32 = WG * PER_THREAD;
const SCAN_GROUPS: u32 = 32u;

struct Params {
    n: u32,        // values per input vector
    x_stride: u32, // words between consecutive input vectors
    pad0: u32,
    pad1: u32,
}

// Vector length and stride.
@group(0) @binding(0) var<uniform> params: Params;
// Inputs: [batch][x_stride] f32 bits (-0.0 counts as zero).
@group(0) @binding(1) var<storage, read> x: array<u32>;
// Output pairs: [batch][n] (index, value bits); entries past the count are untouched.
@group(0) @binding(2) var<storage, read_write> pairs: array<vec2<u32>>;
// Output counts: [batch] number of non-zeros.
@group(0) @binding(3) var<storage, read_write> count: array<u32>;

var<workgroup> counts: array<u32, WG>;
var<workgroup> group_base: array<u32, SCAN_GROUPS>;
var<workgroup> chunk_total: u32;

fn is_nonzero(v: u32) -> bool {
    return (v & 0x7fffffffu) != 0u;
}

@compute @workgroup_size(256)
fn compact_nonzeros(@builtin(workgroup_id) wg: vec3<u32>,
                    @builtin(local_invocation_index) t: u32) {
    let b = wg.x;
    let n = params.n;
    let xb = b * params.x_stride;
    let pb = b * n;
    var base = 0u;
    for (var c0 = 0u; c0 < n; c0 += CHUNK) {
        let first = c0 + t * PER_THREAD;
        var m = 0u;
        for (var i = 0u; i < PER_THREAD; i++) {
            let j = first + i;
            if j < n && is_nonzero(x[xb + j]) {
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
        var o = base + counts[t] + group_base[t / 8u];
        for (var i = 0u; i < PER_THREAD; i++) {
            let j = first + i;
            if j < n && is_nonzero(x[xb + j]) {
                pairs[pb + o] = vec2<u32>(j, x[xb + j]);
                o += 1u;
            }
        }
        base += chunk_total;
        workgroupBarrier();
    }
    if t == 0u {
        count[b] = base;
    }
}
