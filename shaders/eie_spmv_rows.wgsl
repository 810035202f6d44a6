// EIE SpMV walked by rows ("pull"): the same 4-bit codes and 4-bit relative indices as the
// column walk, stored row by row (an entry's run counts the zero columns skipped in its row,
// with padding entries for gaps over 15), for layers whose inputs are mostly non-zero, where
// skipping zero activations saves little and a column walk's scattered accumulation costs more
// than a row's gather.
//
// A workgroup computes ROWS rows for a tile of TILE inputs; LANES = WG / ROWS invocations share
// a row: lane e takes the row's entries e, e + LANES, ... and finds each one's column from
// word-wide sums of the runs before it (as the column walk finds rows), gathers the inputs'
// activations of that column and keeps one sum per input. The lanes' sums are reduced in
// workgroup memory in a fixed tree, so f32 results are the same from run to run and fixed16
// (wrapping i32) equals the CPU model. Write-back (bias, ReLU, fixed16 rounding, the output's
// non-zero bitmap for the next layer) is shared with the column walk.
//
// The shared declarations and helpers are in shaders/common/eie.wgsl; `params.pes` is 1 here
// (global rows), `params.ptr_base` points at [rows + 1] absolute row pointers.

const ROWS: u32 = 8u;
const LANES: u32 = 32u;
const MAX_TILE: u32 = 4u;

// Inputs per workgroup (at most MAX_TILE).
override TILE: u32 = 1u;

var<workgroup> codebook: array<u32, MAX_CODES>;
var<workgroup> sums: array<u32, 1024>; // [ROWS * LANES][MAX_TILE]

@compute @workgroup_size(256)
fn eie_spmv_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    for (var i = lid; i < params.codes && i < MAX_CODES; i += WG) {
        codebook[i] = layer[i];
    }
    workgroupBarrier();

    let row = wg.x * ROWS + lid / LANES;
    let e = lid % LANES;
    let tile = wg.y;
    var acc = array<u32, MAX_TILE>(0u, 0u, 0u, 0u);
    if row < params.rows {
        let start = layer[params.ptr_base + row];
        let end = layer[params.ptr_base + row + 1u];
        var base = 0u;
        for (var r0 = start; r0 < end; r0 += LANES) {
            let last = min(r0 + LANES, end) - 1u;
            let mine = r0 + e;
            let adv = advance(r0, last, mine);
            if mine <= last {
                let code = code_of(mine);
                let col = base + adv.x - 1u;
                if code != 0u && col < params.cols {
                    let c = codebook[code];
                    for (var t = 0u; t < TILE; t++) {
                        let a = load_x(tile * TILE + t, col);
                        if FIXED {
                            acc[t] += bitcast<u32>(product_fixed(bitcast<i32>(a), bitcast<i32>(c)));
                        } else {
                            acc[t] = bitcast<u32>(bitcast<f32>(acc[t]) + bitcast<f32>(c) * bitcast<f32>(a));
                        }
                    }
                }
            }
            base += adv.y;
        }
    }
    for (var t = 0u; t < MAX_TILE; t++) {
        sums[lid * MAX_TILE + t] = acc[t];
    }
    workgroupBarrier();
    // Tree over the row's 32 lanes: lane e adds lane e + s, s = 16, 8, 4, 2, 1.
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if e < s {
            for (var t = 0u; t < TILE; t++) {
                let i = lid * MAX_TILE + t;
                sums[i] = add_bits(sums[i], sums[i + s * MAX_TILE]);
            }
        }
        workgroupBarrier();
    }
    if e < TILE && row < params.rows {
        write_back(tile * TILE + e, row, 0u, sums[(lid - e) * MAX_TILE + e]);
    }
}
