// The second dispatch of a layer whose columns are split into S > 1 slices (see eie_spmv.wgsl):
// for each row and input, the S partial sums in slice order, then the write-back (bias, ReLU,
// fixed16 rounding and saturation, counted per layer; the output and its bit of the output's
// non-zero bitmap).
// Reading the partials in the next dispatch is what makes the split portable: a dispatch
// boundary orders every write of one dispatch before every read of the next on every backend
// (Vulkan, Metal, DX12, WebGPU), where nothing orders writes and reads between workgroups of
// one dispatch.
//
// Invocation (i, bi): global row i = pe + r * N of input bi. The S loads of a row are issued
// eight at a time before they are added, in slice order, so that f32 sums are the same from
// run to run and alone or in any batch.
//
// The shared declarations and helpers are in shaders/common/eie.wgsl (`x` is not used here).

// Partial sums [batch][S][N][local_rows], written by eie_spmv.wgsl.
@group(0) @binding(5) var<storage, read> partials: array<u32>;

@compute @workgroup_size(256)
fn eie_reduce(@builtin(global_invocation_id) id: vec3<u32>) {
    let row = id.x;
    let bi = id.y;
    if row >= params.rows {
        return;
    }
    let pes = params.pes;
    let local_rows = params.local_rows;
    let slices = params.slices;
    let pe = row % pes;
    let r = row / pes;
    let first = (bi * slices * pes + pe) * local_rows + r;
    let step = pes * local_rows;
    var sum = partials[first];
    var q = 1u;
    for (; q + 8u <= slices; q += 8u) {
        var v: array<u32, 8>;
        for (var u = 0u; u < 8u; u++) {
            v[u] = partials[first + (q + u) * step];
        }
        for (var u = 0u; u < 8u; u++) {
            sum = add_bits(sum, v[u]);
        }
    }
    for (; q < slices; q++) {
        sum = add_bits(sum, partials[first + q * step]);
    }
    write_back(bi, pe, r, sum);
}
