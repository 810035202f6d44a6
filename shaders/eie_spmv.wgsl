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
//  4. Write-back: bias, ReLU (fixed16: rounding to the output format and saturation), the
//     output value and its bit of the output's non-zero bitmap, which is the next layer's input
//     bitmap.
//
// Activations are 32-bit words (f32 bits, or fixed16 values as i32 bits) or, with HALF, f16
// values packed two per word. Sums are f32 (f32 and HALF) or wrapping i32 in the accumulator's
// format (FIXED).

// The shared declarations and helpers are in shaders/common/eie.wgsl.

// Workgroup memory: accumulator words (GROUPS * TILE * local rows must fit), listed columns
// per chunk, their activations (CHUNK * TILE), codebook.
const ACC_WORDS: u32 = 2560u;
const LIST_WORDS: u32 = 512u;
const MAX_CHUNK_WORDS: u32 = 16u;

// Column groups per workgroup and inputs per tile; LANES = WG / (GROUPS * TILE) lanes share
// a column slice for each input.
override GROUPS: u32 = 16u;
override TILE: u32 = 1u;

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
