// EIE SpMV walked by rows ("pull"): the same 4-bit codes and 4-bit relative indices as the
// column walk, stored row by row (an entry's run counts the zero columns skipped in its row,
// with padding entries for gaps over 15), for layers whose inputs are mostly non-zero, where
// skipping zero activations saves little and a column walk's scattered accumulation costs more
// than a row's gather.
//
// A workgroup computes WG / LANES rows for a tile of TILE inputs; LANES invocations share a row.
//  * LANES == 1 (CPU adapters, where invocations are SIMD lanes of a few cores): each
//    invocation walks its row serially, as an EIE PE walks its column slice: the column
//    advances by run + 1 per entry, one word load per four entries, no barrier and no
//    reduction.
//  * LANES > 1 (GPUs, where the lanes of a row read its entries coalesced): lane e takes the
//    row's entries e, e + LANES, ... and finds each one's column from word-wide sums of the runs
//    before it (as the column walk finds rows); the lanes' sums are then reduced in workgroup
//    memory in a fixed tree.
// Either way each input's terms are added in an order fixed by the layer and LANES alone (never
// by the batch), so f32 results are the same from run to run and alone or in any batch, and
// fixed16 (wrapping i32) equals the CPU model. Write-back (bias, ReLU, fixed16 rounding, the
// output's non-zero bitmap for the next layer) is shared with the column walk.
//
// The shared declarations and helpers are in shaders/common/eie.wgsl; `params.pes` is 1 here
// (global rows), `params.ptr_base` points at [rows + 1] absolute row pointers.

// The host's EIE_BATCH_TILE (checked by tests/shaders.rs): a constant, since it sizes each
// invocation's sums.
const MAX_TILE: u32 = 4u;

// Inputs per workgroup (at most MAX_TILE).
override TILE: u32;
// Invocations per row: a power of two, 1 to 32.
override LANES: u32;

var<workgroup> codebook: array<u32, MAX_CODES>;
var<workgroup> sums: array<u32, WG * MAX_TILE>; // [WG][MAX_TILE]

@compute @workgroup_size(256)
fn eie_spmv_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    for (var i = lid; i < params.codes && i < MAX_CODES; i += WG) {
        codebook[i] = layer[i];
    }
    workgroupBarrier();

    let row = wg.x * (WG / LANES) + lid / LANES;
    let e = lid % LANES;
    let tile = wg.y;
    var acc = array<u32, MAX_TILE>(0u, 0u, 0u, 0u);
    if row < params.rows {
        let start = layer[params.ptr_base + row];
        let end = layer[params.ptr_base + row + 1u];
        if LANES == 1u {
            // Serial walk: `pos` is one past the current entry's column.
            var pos = 0u;
            for (var k = start; k < end; k++) {
                var code: u32;
                var run: u32;
                if WIDE {
                    let v = layer[params.entries_base + (k >> 1u)] >> ((k & 1u) * 16u);
                    code = v & 0xffu;
                    run = (v >> 8u) & 0xffu;
                } else {
                    let v = layer[params.entries_base + (k >> 2u)] >> ((k & 3u) * 8u);
                    code = v & 0xfu;
                    run = (v >> 4u) & 0xfu;
                }
                pos += run + 1u;
                if code != 0u && pos <= params.cols {
                    let c = codebook[code];
                    for (var t = 0u; t < TILE; t++) {
                        acc[t] = mac(acc[t], c, load_x(tile * TILE + t, pos - 1u));
                    }
                }
            }
        } else {
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
                            acc[t] = mac(acc[t], c, load_x(tile * TILE + t, col));
                        }
                    }
                }
                base += adv.y;
            }
        }
    }
    if LANES == 1u {
        if row < params.rows {
            for (var t = 0u; t < TILE; t++) {
                write_back(tile * TILE + t, row, 0u, acc[t]);
            }
        }
        return;
    }
    for (var t = 0u; t < MAX_TILE; t++) {
        sums[lid * MAX_TILE + t] = acc[t];
    }
    workgroupBarrier();
    // Tree over the row's lanes: lane e adds lane e + s, s = LANES / 2, ..., 2, 1.
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if e < s {
            for (var t = 0u; t < TILE; t++) {
                let i = lid * MAX_TILE + t;
                sums[i] = add_bits(sums[i], sums[i + s * MAX_TILE]);
            }
        }
        workgroupBarrier();
    }
    if row < params.rows {
        for (var t = e; t < TILE; t += LANES) {
            write_back(tile * TILE + t, row, 0u, sums[(lid - e) * MAX_TILE + t]);
        }
    }
}
