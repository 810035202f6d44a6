// Dense f32 GEMV / GEMM baseline ("cuBLAS-style"): y = f(W x + bias) for up to four inputs per
// weight load.
//
// A workgroup computes 8 rows of one row tile for 4 inputs of the batch: 32 invocations per
// row stride over the row with vec4 loads (consecutive invocations read consecutive 16-byte
// words, so a row is streamed fully coalesced), keep four partial sums, and reduce them in
// workgroup memory. A matrix larger than one storage binding is split into row tiles (see
// `dense_tiles` in src/schedule/mod.rs), each with its own weight buffer and dispatch.

const WG: u32 = 256u;
// Inputs per workgroup, one per vec4 component (the host's BATCH_TILE).
const BATCH_TILE: u32 = 4u;
// Rows per workgroup (the host's ROWS_PER_WORKGROUP) and invocations per row (WG / ROWS), set by
// the host.
override ROWS: u32;
override LANES: u32;

struct Params {
    tile_rows: u32,  // rows in this tile
    row_offset: u32, // first row of this tile in the layer
    cols4: u32,      // vec4 words per weight row (columns padded to a multiple of 4 with zeros)
    x_stride4: u32,  // vec4 words between consecutive input vectors
    y_stride: u32,   // f32 words between consecutive output vectors
    relu: u32,       // 1: apply ReLU
    has_bias: u32,   // 1: add bias
    pad0: u32,
}

// Tile shape and flags.
@group(0) @binding(0) var<uniform> params: Params;
// Weights of the tile: [tile_rows][cols4] vec4<f32>, row-major.
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
// Bias of the whole layer: [rows] f32 (one zero when the layer has none).
@group(0) @binding(2) var<storage, read> bias: array<f32>;
// Inputs: [batch padded to 4][x_stride4] vec4<f32>, zero beyond the input size.
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
// Outputs: [batch padded to 4][y_stride] f32.
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> partial: array<vec4<f32>, WG>;

@compute @workgroup_size(256)
fn dense_gemv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let lane = t % LANES;
    let r = wg.x * ROWS + t / LANES;
    let b0 = wg.y * BATCH_TILE;
    let xs = params.x_stride4;
    var s = vec4<f32>(0.0);
    if r < params.tile_rows {
        let wb = r * params.cols4;
        for (var k = lane; k < params.cols4; k += LANES) {
            let wv = w[wb + k];
            s.x += dot(wv, x[b0 * xs + k]);
            s.y += dot(wv, x[(b0 + 1u) * xs + k]);
            s.z += dot(wv, x[(b0 + 2u) * xs + k]);
            s.w += dot(wv, x[(b0 + 3u) * xs + k]);
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
    if lane < BATCH_TILE && r < params.tile_rows {
        let row = params.row_offset + r;
        var v = partial[t - lane][lane];
        if params.has_bias == 1u {
            v += bias[row];
        }
        if params.relu == 1u {
            v = max(v, 0.0);
        }
        y[(b0 + lane) * params.y_stride + row] = v;
    }
}
