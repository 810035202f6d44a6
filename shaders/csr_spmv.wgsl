// Plain CSR SpMV baseline ("cuSPARSE-style" CSR-vector): y = f(W x + bias) with f32 values and
// u32 column indices, no codebook and no skipping of zero activations.
//
// A workgroup computes 8 rows for 4 inputs of the batch; 32 invocations share a row's
// non-zeros (coalesced reads of values and column indices) and reduce in workgroup memory.

const WG: u32 = 256u;
// Inputs per workgroup, one per vec4 component (the host's BATCH_TILE).
const BATCH_TILE: u32 = 4u;
// Rows per workgroup (the host's ROWS_PER_WORKGROUP) and invocations per row (WG / ROWS), set by
// the host.
override ROWS: u32;
override LANES: u32;

struct Params {
    rows: u32,      // outputs of the layer
    x_stride: u32,  // f32 words between consecutive input vectors
    y_stride: u32,  // f32 words between consecutive output vectors
    relu: u32,      // 1: apply ReLU
    has_bias: u32,  // 1: add bias
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

// Layer shape and flags.
@group(0) @binding(0) var<uniform> params: Params;
// Row pointers: [rows + 1] indices into `col_idx` / `values`.
@group(0) @binding(1) var<storage, read> row_ptr: array<u32>;
// Column index of each non-zero: [nnz] u32.
@group(0) @binding(2) var<storage, read> col_idx: array<u32>;
// Value of each non-zero: [nnz] f32.
@group(0) @binding(3) var<storage, read> values: array<f32>;
// Bias: [rows] f32 (one zero when the layer has none).
@group(0) @binding(4) var<storage, read> bias: array<f32>;
// Inputs: [batch padded to 4][x_stride] f32.
@group(0) @binding(5) var<storage, read> x: array<f32>;
// Outputs: [batch padded to 4][y_stride] f32.
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<vec4<f32>, WG>;

@compute @workgroup_size(256)
fn csr_spmv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let lane = t % LANES;
    let r = wg.x * ROWS + t / LANES;
    let b0 = wg.y * BATCH_TILE;
    let xs = params.x_stride;
    var s = vec4<f32>(0.0);
    if r < params.rows {
        let end = row_ptr[r + 1u];
        for (var k = row_ptr[r] + lane; k < end; k += LANES) {
            let v = values[k];
            let j = col_idx[k];
            s += v * vec4<f32>(x[b0 * xs + j], x[(b0 + 1u) * xs + j], x[(b0 + 2u) * xs + j],
                               x[(b0 + 3u) * xs + j]);
        }
    }
    partial[t] = s;
    workgroupBarrier();
    for (var h = LANES / 2u; h > 0u; h >>= 1u) {
        if lane < h {
            partial[t] += partial[t + h];
        }
        workgroupBarrier();
    }
    if lane < BATCH_TILE && r < params.rows {
        var v = partial[t - lane][lane];
        if params.has_bias == 1u {
            v += bias[r];
        }
        if params.relu == 1u {
            v = max(v, 0.0);
        }
        y[(b0 + lane) * params.y_stride + r] = v;
    }
}
