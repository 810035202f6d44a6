// EIE sparse matrix-vector product of one layer, straight from the compressed format (f32,
// fixed16 and f16 from this one source).
//
// The layer is interleaved over N PEs (PE p owns rows i with i % N == p, local row i / N) and
// stored as EIE's relative-indexed CSC: each PE's slice of each column is a run of entries
// (code, run), padding entries have code 0. The dispatch is (S * N, tiles): workgroup
// (s, p, tile) is PE p walking column slice s of the layer for a tile of TILE inputs.
//  1. Leading non-zero detection, fused: the input's non-zero bitmap (written by the previous
//     layer's write-back, or uploaded with the first layer's input) is read for the slice, the
//     tile's bitmaps are OR-ed, and the workgroup compacts the non-zero columns into one list
//     per column group in workgroup memory, with their activations, CHUNK columns at a time.
//     Only those columns are walked: zero activations are never broadcast.
//  2. The workgroup's lanes form GROUPS column groups; group g takes the listed columns j with
//     j % GROUPS == g, in increasing order, reads this PE's pointer pair for each once, and its
//     lanes take one entry each (LANES lanes per input of the tile). A lane finds its entry's
//     row from the 4-bit runs before it (row += run + 1) with a few word-wide sums, and adds
//     codebook[code] * a_j to that row's accumulator. The entries of one column slice are on
//     distinct rows, so a group's lanes never collide; each group owns its own copy of the PE's
//     accumulators in workgroup memory, and groups step in lockstep (a barrier per step). No
//     atomics, no compare-exchange loops: every accumulator has one writer at a time.
//  3. The groups' copies are summed in group order. With one slice (S == 1) that is the row's
//     value, written back here. Otherwise the workgroup stores its partial sums and the next
//     dispatch, eie_reduce.wgsl, adds the S partials in slice order and writes back: no
//     workgroup ever reads another workgroup's writes of the same dispatch, which WGSL does not
//     order (its atomics are relaxed and its barriers act within one workgroup), while a
//     dispatch boundary orders every write before every later read on every backend.
//  4. Write-back: bias, ReLU (fixed16: rounding to the output format and saturation, counted
//     per layer), the output value and its bit of the output's non-zero bitmap, which is the
//     next layer's input bitmap.
// Which column goes to which group and slice depends on the column alone, and GROUPS and S are
// the same for every batch size, so each input's terms are added in one fixed order: f32 output
// is bit-identical from run to run and alone or in any batch, and the fixed16 sums (wrapping
// i32) equal the CPU model's bit for bit.
//
// Activations are 32-bit words (f32 bits, or fixed16 values as i32 bits) or, with HALF, f16
// values packed two per word. Sums are f32 (f32 and HALF) or wrapping i32 in the accumulator's
// format (FIXED).

// The shared declarations and helpers are in shaders/common/eie.wgsl.

// Workgroup memory: accumulator words (GROUPS * TILE * local rows must fit; sized per layer
// within the device's workgroup memory by the host, DeviceLimits::eie_acc_words), listed
// columns per chunk, their activations (CHUNK * TILE), codebook. Every size is set by the host
// (src/gpu/kernels/eie_spmv.rs): LIST_WORDS is EIE_LIST_WORDS, MAX_CHUNK_WORDS the bitmap words
// of LIST_WORDS columns, MAX_GROUPS EIE_MAX_GROUPS.
override ACC_WORDS: u32;
override LIST_WORDS: u32;
override MAX_CHUNK_WORDS: u32;
override MAX_GROUPS: u32;

// Column groups per workgroup (a power of two up to 16) and inputs per tile; LANES = WG /
// (GROUPS * TILE) lanes share a column slice for each input.
override GROUPS: u32;
override TILE: u32;

// Partial sums [batch][S][N][local_rows] (S > 1), added by eie_reduce.wgsl.
@group(0) @binding(5) var<storage, read_write> partials: array<u32>;

var<workgroup> acc: array<u32, ACC_WORDS>;
var<workgroup> list: array<u32, LIST_WORDS>;
var<workgroup> xs: array<u32, LIST_WORDS>;
var<workgroup> codebook: array<u32, MAX_CODES>;
var<workgroup> words: array<u32, MAX_CHUNK_WORDS>;
var<workgroup> counts: array<u32, MAX_GROUPS>;
var<workgroup> steps_wg: u32;

// Bits of a 32-column bitmap word whose columns belong to group g (GROUPS divides 32).
fn group_mask(g: u32) -> u32 {
    var m = 0u;
    for (var i = g; i < 32u; i += GROUPS) {
        m |= 1u << i;
    }
    return m;
}

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
    // Columns per chunk (a multiple of 32), and list places per group: a chunk has at most
    // chunk / GROUPS columns of each group.
    let chunk = LIST_WORDS / TILE;
    let cap = chunk / GROUPS;
    let ptr_row = params.ptr_base + pe * (cols + 1u);
    for (var cc = c0; cc < c1; cc += chunk) {
        // Leading non-zero detection over this chunk: OR of the tile's bitmaps.
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
        // Compaction into one list per group: invocation (g, w) places word w's columns of
        // group g after those of the group's earlier words.
        if lid < GROUPS * nw {
            let gg = lid / nw;
            let w = lid % nw;
            let mask = group_mask(gg);
            var o = 0u;
            for (var q = 0u; q < w; q++) {
                o += countOneBits(words[q] & mask);
            }
            var bits = words[w] & mask;
            if w == nw - 1u {
                counts[gg] = o + countOneBits(bits);
            }
            while bits != 0u {
                list[gg * cap + o] = cc + 32u * w + firstTrailingBit(bits);
                o += 1u;
                bits &= bits - 1u;
            }
        }
        workgroupBarrier();
        if lid == 0u {
            var most = 0u;
            for (var q = 0u; q < GROUPS; q++) {
                most = max(most, counts[q]);
            }
            steps_wg = most;
        }
        for (var i = lid; i < GROUPS * cap * TILE; i += WG) {
            let place = i / TILE;
            if place % cap < counts[place / cap] {
                xs[i] = load_x(tile * TILE + i % TILE, list[place]);
            }
        }
        // (A barrier: the activations are in place before the walk.)
        let steps = workgroupUniformLoad(&steps_wg);

        // The walk: group g takes its listed columns in order, one per step; one entry per
        // lane. The pointer pair of a group's next column is loaded before the current one is
        // walked.
        let mine_count = counts[g];
        var next = vec2<u32>(0u);
        if mine_count > 0u {
            let j = list[g * cap];
            next = vec2<u32>(layer[ptr_row + j], layer[ptr_row + j + 1u]);
        }
        for (var st = 0u; st < steps; st++) {
            let start = next.x;
            let end = next.y;
            if st + 1u < mine_count {
                let jn = list[g * cap + st + 1u];
                next = vec2<u32>(layer[ptr_row + jn], layer[ptr_row + jn + 1u]);
            }
            if st < mine_count {
                let a = xs[(g * cap + st) * TILE + b];
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
                                acc[ai] = mac(acc[ai], codebook[code], a);
                            }
                        }
                        base += adv.y;
                    }
                }
            }
            workgroupBarrier();
        }
    }

    // The groups' copies, summed in group order; written back, or stored for eie_reduce.
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
            partials[((bi * slices + s) * params.pes + pe) * local_rows + r] = sum;
        }
    }
}
