//! The cycle-level simulator: cycle counts worked out by hand, load-balance corner cases, and
//! its outputs against the CPU model on random layers.

use eie::format::{EieLayer, SparseCodes};
use eie::sim::{simulate_model, SimConfig, SimResult};
use eie::{Activation, CpuEngine, Model, Precision};
use proptest::prelude::*;
use rand::Rng;

fn codebook() -> Vec<f32> {
    (0..16)
        .map(|k| if k == 0 { 0.0 } else { (k as f32 - 8.5) / 8.0 })
        .collect()
}

/// A layer from `(row, col, code)` triples.
fn layer_from(
    rows: usize,
    cols: usize,
    items: &[(usize, usize, u8)],
    pes: usize,
    bias: Option<Vec<f32>>,
    activation: Activation,
) -> EieLayer {
    let mut dense = vec![0u8; rows * cols];
    for &(r, c, v) in items {
        dense[r * cols + c] = v;
    }
    let codes = SparseCodes::from_dense(rows, cols, &dense).unwrap();
    EieLayer::encode(&codes, codebook(), 4, pes, bias, activation).unwrap()
}

fn cfg(pes: usize, fifo_depth: usize) -> SimConfig {
    SimConfig {
        pes,
        fifo_depth,
        ..SimConfig::default()
    }
}

/// Simulates and checks the output against the CPU model in both precisions.
fn sim_checked(model: &Model, x: &[f32], cfg: &SimConfig) -> SimResult {
    let engine = CpuEngine::new(model.clone()).unwrap();
    let fixed = simulate_model(model, x, cfg, Precision::Fixed16).unwrap();
    assert_eq!(
        fixed.output,
        engine.with_precision(Precision::Fixed16).run(x).unwrap()
    );
    let r = simulate_model(model, x, cfg, Precision::F32).unwrap();
    assert_eq!(r.output, engine.run(x).unwrap());
    // Timing follows the non-zero pattern, which fixed16 can change (tiny values round to 0).
    for res in [&r, &fixed] {
        for p in &res.pes {
            assert_eq!(p.busy + p.starved + p.drained, res.cycles);
        }
    }
    r
}

/// The paper's example (Figure 2/3): 4 PEs, a 16x8 matrix, PE0 holding rows 0, 4, 8, 12 with
/// pointers `0 3 4 6 6 8 10 11 13`; the other PEs' slices are chosen here. Input non-zeros at
/// j = 0, 2, 4, 7 (two LNZD groups of 4, neither empty).
fn paper_example() -> (Model, Vec<f32>) {
    let mut items = Vec::new();
    let mut code = 0u8;
    let mut add = |rows: &[usize], c: usize| {
        for &r in rows {
            code = code % 15 + 1;
            items.push((r, c, code));
        }
    };
    // PE0 as in the paper.
    add(&[0, 8, 12], 0);
    add(&[4], 1);
    add(&[0, 12], 2);
    add(&[0, 4], 4);
    add(&[0, 12], 5);
    add(&[0], 6);
    add(&[8, 12], 7);
    // PE1 (rows 1, 5, 9, 13): j0: 1 entry, j2: 3, j4: 0, j7: 1.
    add(&[1], 0);
    add(&[9], 1);
    add(&[5, 9, 13], 2);
    add(&[13], 7);
    // PE2 (rows 2, 6, 10, 14): j0: 0, j2: 1, j4: 1, j7: 4.
    add(&[6], 2);
    add(&[10], 4);
    add(&[2, 6, 10, 14], 7);
    // PE3 (rows 3, 7, 11, 15): j0: 2, j2: 0, j4: 4, j7: 1.
    add(&[3, 15], 0);
    add(&[3, 7, 11, 15], 4);
    add(&[7], 7);
    let layer = layer_from(16, 8, &items, 4, None, Activation::Identity);
    assert_eq!(layer.pe(0).col_ptr, &[0, 3, 4, 6, 6, 8, 10, 11, 13]);
    let x = vec![0.5, 0.0, -1.0, 0.0, 0.25, 0.0, 0.0, 2.0];
    (Model::new(vec![layer]).unwrap(), x)
}

#[test]
fn paper_four_pe_example_by_hand() {
    let (model, x) = paper_example();
    // Work per PE, max(1, entries) per activation j = 0, 2, 4, 7:
    //   PE0 3+2+2+2 = 9, PE1 1+3+1+1 = 6, PE2 1+1+1+4 = 7, PE3 2+1+4+1 = 8.
    // CCU slots: j0, j2, then one LNZD cycle (the first group's last activation is zero), j4,
    // j7 (the second group ends on a non-zero, so the third group would load at once).
    // FIFO 8: nothing stalls; broadcasts at cycles 0, 1, 3, 4 can be popped at 2, 3, 5, 6.
    //   PE0 pops j0 at 2 and is busy through cycle 10 (j2 at 5, j4 at 7, j7 at 9); its last
    //   entry then spends four cycles in the SRAM / decode / multiply / add stages: 15 cycles.
    let r = sim_checked(&model, &x, &cfg(4, 8));
    assert_eq!(r.cycles, 15);
    let busy: Vec<u64> = r.pes.iter().map(|p| p.busy).collect();
    assert_eq!(busy, [9, 6, 7, 8]);
    // Cycles 0 and 1 wait for the first broadcast; PE2 also waits for j4 in cycle 4.
    let starved: Vec<u64> = r.pes.iter().map(|p| p.starved).collect();
    assert_eq!(starved, [2, 2, 3, 2]);
    let drained: Vec<u64> = r.pes.iter().map(|p| p.drained).collect();
    assert_eq!(drained, [4, 7, 5, 5]);
    assert_eq!(r.load_balance_efficiency, 30.0 / 60.0);
    assert_eq!(r.counters.useful_macs, 9 + 5 + 6 + 7);
    assert_eq!(r.counters.empty_slices, 3);
    assert_eq!(r.counters.padding_entries, 0);
    assert_eq!(r.counters.broadcasts, 4);
    assert_eq!(r.counters.lnzd_empty_cycles, 1);
    assert_eq!(r.counters.pointer_reads, 4 * 4 * 2);
    assert_eq!(r.counters.ccu_stall_cycles, 0);
    assert_eq!(r.time_us, 15.0 / 800.0);
    assert_eq!(r.theoretical_us, 27.0 / 4.0 / 800.0);
}

#[test]
fn shallow_fifos_by_hand() {
    let (model, x) = paper_example();
    // FIFO 2 holds one activation, and the CCU looks at the fill at the start of the cycle:
    // a broadcast needs every FIFO empty, and is popped two edges after it was decided.
    //   c0 j0 pushed | c1 stall (all FIFOs hold j0) | c2 all pop j0, j2 pushed
    //   c3 LNZD cycle | c4 stall (PE0 still on j0 holds j2) | c5 PE0 pops j2, j4 pushed
    //   c6 stall (all hold j4) | c7 all pop j4, j7 pushed | c9 PE0, PE1, PE2 pop j7
    //   c11 PE3 pops j7 | c12 PE2's last entry of j7 | + 4 pipeline cycles = 17.
    let r2 = sim_checked(&model, &x, &cfg(4, 2));
    assert_eq!(r2.cycles, 17);
    assert_eq!(r2.counters.ccu_stall_cycles, 3);
    let stalled: Vec<u64> = r2.pes.iter().map(|p| p.stalled).collect();
    assert_eq!(stalled, [3, 2, 2, 2]);
    let starved: Vec<u64> = r2.pes.iter().map(|p| p.starved).collect();
    assert_eq!(starved, [2, 3, 5, 4]);
    let busy: Vec<u64> = r2.pes.iter().map(|p| p.busy).collect();
    assert_eq!(busy, [9, 6, 7, 8]);

    // FIFO 1: no FIFO; the CCU writes into the PEs' registers only in a cycle when all four
    // are idle, so each broadcast waits for the slowest PE of the previous one:
    //   j0 at 0 (PEs busy 1..3), j2 at 4 (busy 5..7; c5 is the LNZD cycle), j4 at 8
    //   (busy 9..12), j7 at 13 (busy 14..17) | + 4 = 22 cycles.
    let r1 = sim_checked(&model, &x, &cfg(4, 1));
    assert_eq!(r1.cycles, 22);
    assert_eq!(r1.counters.ccu_stall_cycles, 9);
    let stalled: Vec<u64> = r1.pes.iter().map(|p| p.stalled).collect();
    assert_eq!(stalled, [6, 4, 2, 6]);
    let busy: Vec<u64> = r1.pes.iter().map(|p| p.busy).collect();
    assert_eq!(busy, [9, 6, 7, 8]);
    assert!((r1.load_balance_efficiency - 30.0 / 88.0).abs() < 1e-12);
    // Deeper FIFOs never take longer on this example.
    let cycles: Vec<u64> = [1, 2, 4, 8, 16]
        .iter()
        .map(|&d| sim_checked(&model, &x, &cfg(4, d)).cycles)
        .collect();
    assert!(cycles.windows(2).all(|w| w[0] >= w[1]), "{cycles:?}");
}

fn random_items(
    rows: usize,
    cols: usize,
    density: f64,
    keep: impl Fn(usize, usize) -> bool,
    seed: u64,
) -> Vec<(usize, usize, u8)> {
    let mut r = eie::synth::rng(seed);
    let mut items = Vec::new();
    for i in 0..rows {
        for j in 0..cols {
            if keep(i, j) && r.random_bool(density) {
                items.push((i, j, r.random_range(1..16u8)));
            }
        }
    }
    items
}

#[test]
fn one_pe_with_all_the_work_bounds_the_layer() {
    let (pes, rows, cols) = (4, 96, 30);
    let items = random_items(rows, cols, 0.5, |i, _| i % pes == 0, 7);
    let layer = layer_from(rows, cols, &items, pes, None, Activation::Relu);
    let pe0: Vec<u64> = (0..cols)
        .map(|j| layer.pe(0).column(j).len().max(1) as u64)
        .collect();
    let model = Model::new(vec![layer]).unwrap();
    let x = eie::synth::activations(cols, 1.0, 3);
    let pe0_work = pe0.iter().sum::<u64>();
    assert!(*pe0.last().unwrap() > 1, "the last slice streams entries");
    // FIFO 8: PE0 pops its first activation in cycle 2 and never waits again; its last entry
    // leaves the pipeline four cycles after it. FIFO 1: every broadcast waits until all PEs
    // are idle, so PE0 idles one cycle after each of its activations.
    for (depth, cycles) in [(8, pe0_work + 2 + 4), (1, pe0_work + cols as u64 + 4)] {
        let r = sim_checked(&model, &x, &cfg(pes, depth));
        assert_eq!(r.cycles, cycles, "FIFO {depth}");
        assert_eq!(r.pes[0].busy, pe0_work);
        for p in &r.pes[1..] {
            assert_eq!(p.busy, cols as u64);
            assert_eq!(p.useful_macs, 0);
        }
        let busy = pe0_work + 3 * cols as u64;
        let eff = busy as f64 / (pes as f64 * r.cycles as f64);
        assert!((r.load_balance_efficiency - eff).abs() < 1e-12);
        assert!(r.load_balance_efficiency < 0.5);
    }
}

#[test]
fn deeper_fifo_absorbs_a_skewed_layer() {
    // Column j loads PE j % 4 with 12 of its 16 rows and every other PE with one row.
    let (pes, rows, cols) = (4, 64, 64);
    let mut items = Vec::new();
    for j in 0..cols {
        let heavy = j % pes;
        for k in 0..12 {
            items.push((heavy + pes * k, j, (1 + (j + k) % 15) as u8));
        }
        for p in (0..pes).filter(|&p| p != heavy) {
            items.push((p + pes * (j % 16), j, 3));
        }
    }
    let layer = layer_from(rows, cols, &items, pes, None, Activation::Identity);
    let model = Model::new(vec![layer]).unwrap();
    let x = eie::synth::activations(cols, 1.0, 5);
    let r1 = sim_checked(&model, &x, &cfg(pes, 1));
    let r8 = sim_checked(&model, &x, &cfg(pes, 8));
    // Depth 1: a broadcast waits until every PE is idle, so every column costs its heavy slice
    // and one cycle more; the last entry then needs four pipeline cycles. Depth 8 lets each PE
    // average its 16 x 12 + 48 x 1 = 240 cycles of work.
    assert_eq!(r1.cycles, 13 * cols as u64 + 4);
    assert!(r8.cycles < 260, "{}", r8.cycles);
    assert!(
        r1.load_balance_efficiency < 0.6,
        "{}",
        r1.load_balance_efficiency
    );
    assert!(
        r8.load_balance_efficiency > 0.9,
        "{}",
        r8.load_balance_efficiency
    );
    assert!(r1.counters.ccu_stall_cycles > r8.counters.ccu_stall_cycles);
    assert_eq!(r1.counters.useful_macs, r8.counters.useful_macs);
}

#[test]
fn empty_layer_and_all_zero_input() {
    let (pes, rows, cols) = (4, 10, 13);
    let bias: Vec<f32> = (0..rows).map(|i| i as f32 * 0.25 - 1.0).collect();
    let empty = layer_from(rows, cols, &[], pes, Some(bias.clone()), Activation::Relu);
    let model = Model::new(vec![empty]).unwrap();
    // Dense input on an empty layer: every PE spends one cycle per activation on the pointers.
    // A FIFO of depth 2 holds one activation and the CCU sees it freed only a cycle after the
    // pop, so it broadcasts every other cycle; the last (j = 12, at cycle 24) is popped at 26.
    let x = eie::synth::activations(cols, 1.0, 1);
    let r = sim_checked(&model, &x, &cfg(pes, 2));
    assert_eq!(r.cycles, 2 * cols as u64 + 1);
    assert_eq!(r.counters.empty_slices, (pes * cols) as u64);
    assert_eq!(r.counters.useful_macs + r.counters.matrix_reads, 0);
    let relu_bias: Vec<f32> = bias.iter().map(|b| b.max(0.0)).collect();
    assert_eq!(r.output, relu_bias);

    // All-zero input on a non-empty layer: the LNZD scans ceil(13 / 4) = 4 empty groups.
    let items = random_items(rows, cols, 0.5, |_, _| true, 2);
    let layer = layer_from(
        rows,
        cols,
        &items,
        pes,
        Some(bias.clone()),
        Activation::Identity,
    );
    let model = Model::new(vec![layer]).unwrap();
    let r = sim_checked(&model, &vec![0.0; cols], &cfg(pes, 8));
    assert_eq!(r.cycles, 4);
    assert_eq!(r.counters.lnzd_empty_cycles, 4);
    assert_eq!(r.counters.broadcasts + r.counters.pointer_reads, 0);
    assert_eq!(r.output, bias);
    assert_eq!(r.load_balance_efficiency, 0.0);
}

#[test]
fn bad_configuration_and_input_are_errors() {
    let (model, x) = paper_example();
    for bad in [
        cfg(0, 8),
        cfg(1025, 8),
        cfg(4, 0),
        cfg(4, 257),
        SimConfig {
            line_entries: 0,
            ..cfg(4, 8)
        },
        SimConfig {
            clock_mhz: 0.0,
            ..cfg(4, 8)
        },
    ] {
        assert!(simulate_model(&model, &x, &bad, Precision::F32).is_err());
    }
    assert!(simulate_model(&model, &x[..7], &cfg(4, 8), Precision::F32).is_err());
    let mut nan = x.clone();
    nan[1] = f32::NAN;
    assert!(simulate_model(&model, &nan, &cfg(4, 8), Precision::F32).is_err());
}

#[test]
fn long_vectors_run_in_pieces() {
    // 2 activation registers per PE over 3 PEs: rounds of 6 inputs and pieces of 6 outputs.
    let (rows, cols) = (20, 17);
    let items = random_items(rows, cols, 0.3, |_, _| true, 9);
    let layer = layer_from(rows, cols, &items, 3, None, Activation::Relu);
    let model = Model::new(vec![layer]).unwrap();
    let x = eie::synth::activations(2 * cols, 0.6, 4);
    let c = SimConfig {
        pes: 3,
        act_regs_per_pe: 2,
        ..SimConfig::default()
    };
    let r = sim_checked(&model, &x, &c);
    assert_eq!((r.layers[0].row_pieces, r.layers[0].col_pieces), (4, 3));
    assert_eq!(r.batch, 2);
    let whole = sim_checked(&model, &x, &cfg(3, 8));
    assert_eq!(whole.layers[0].row_pieces, 1);
    assert_eq!(r.counters.useful_macs, whole.counters.useful_macs);
    // Every row piece broadcasts the input again.
    assert_eq!(r.counters.broadcasts, 4 * whole.counters.broadcasts);
}

/// A random layer and model input from a seed.
fn random_model(seed: u64, sizes: &[usize], density: f64, pes: usize, bias: bool) -> Model {
    let layers = sizes
        .windows(2)
        .enumerate()
        .map(|(k, w)| {
            let (cols, rows) = (w[0], w[1]);
            let items = random_items(rows, cols, density, |_, _| true, seed + k as u64);
            let b = bias.then(|| {
                let mut r = eie::synth::rng(seed ^ 0xb1a5);
                (0..rows).map(|_| r.random_range(-0.5..0.5f32)).collect()
            });
            let act = if k % 2 == 0 {
                Activation::Relu
            } else {
                Activation::Identity
            };
            layer_from(rows, cols, &items, pes, b, act)
        })
        .collect();
    Model::new(layers).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn simulator_output_equals_the_cpu_model(
        seed in 0u64..1_000_000,
        sizes in prop::collection::vec(1usize..40, 2..4),
        density in 0.0f64..1.0,
        act_density in 0.0f64..1.0,
        model_pes in 1usize..7,
        pes in 1usize..9,
        fifo in 1usize..6,
        line in 1usize..9,
        act_regs in 1usize..12,
        batch in 1usize..3,
        bias in any::<bool>(),
        fracs in prop::collection::vec(0u32..25, 4),
        default_formats in any::<bool>(),
    ) {
        let mut model = random_model(seed, &sizes, density, model_pes, bias);
        // Per-layer fixed16 formats, any of them (saturating ones included), or Q5.10.
        if !default_formats {
            let n = model.layers().len();
            model.set_fixed16_fracs(fracs[0], &fracs[1..=n]).unwrap();
        }
        let x = eie::synth::activations(batch * sizes[0], act_density, seed + 1);
        let c = SimConfig {
            pes,
            fifo_depth: fifo,
            line_entries: line,
            act_regs_per_pe: act_regs,
            ..SimConfig::default()
        };
        let r = sim_checked(&model, &x, &c);
        // Useful MACs: every stored weight times every non-zero activation of its column.
        let cpu_layers = model.with_pes(pes).unwrap();
        prop_assert_eq!(r.layers.len(), cpu_layers.layers().len());
        let first = &cpu_layers.layers()[0];
        let expect: u64 = x
            .chunks(sizes[0])
            .map(|xb| {
                (0..sizes[0])
                    .filter(|&j| xb[j] != 0.0)
                    .map(|j| {
                        (0..pes)
                            .flat_map(|p| first.pe(p).column(j).iter())
                            .filter(|&&e| eie::format::entry_code(e) != 0)
                            .count() as u64
                    })
                    .sum::<u64>()
            })
            .sum();
        prop_assert_eq!(r.layers[0].counters.useful_macs, expect);
        prop_assert!(r.load_balance_efficiency <= 1.0 && r.load_balance_efficiency >= 0.0);
        prop_assert_eq!(
            r.counters.busy_cycles + r.counters.bubble_cycles,
            pes as u64 * r.cycles
        );
    }
}

#[test]
fn cli_simulates_a_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let (model, x) = paper_example();
    let model_path = dir.path().join("m.eie");
    model.save(&model_path).unwrap();
    let x_path = dir.path().join("x.npy");
    eie::import::write_npy(&x_path, &[8], &x).unwrap();
    let y_path = dir.path().join("y.npy");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let eie = |args: &[String]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_eie"))
            .args(args)
            .output()
            .unwrap()
    };
    let args: Vec<String> = ["sim", &s(&model_path), "--input", &s(&x_path), "--pes", "4"]
        .iter()
        .map(|a| a.to_string())
        .chain(["--json".into(), "--output".into(), s(&y_path)])
        .collect();
    let out = eie(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["cycles"], 15);
    assert_eq!(json["time_us"], 15.0 / 800.0);
    assert_eq!(json["load_balance_efficiency"], 0.5);
    assert_eq!(json["pes"].as_array().unwrap().len(), 4);
    let y = eie::import::read_npy(&y_path).unwrap();
    assert_eq!(y.shape, [16]);
    assert_eq!(y.data, CpuEngine::new(model).unwrap().run(&x).unwrap());
    // Text output, and bad settings fail with a message.
    let text = eie(&args[..6]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("load-balance efficiency 0.500"));
    let mut bad = args[..6].to_vec();
    bad[5] = "0".into();
    let out = eie(&bad);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PE count"));
    assert!(!eie(&["sim".into()]).status.success());
}

#[test]
fn the_simulator_takes_its_precision_at_build_and_refuses_f16_there() {
    let m = random_model(11, &[20, 12], 0.5, 4, true);
    let cfg = SimConfig {
        pes: 4,
        ..SimConfig::default()
    };
    assert!(matches!(
        eie::sim::Simulator::new(&m, &cfg, Precision::F16),
        Err(eie::Error::UnsupportedPrecision { .. })
    ));
    let x = eie::synth::activations(20, 0.5, 3);
    let sim = eie::sim::Simulator::new(&m, &cfg, Precision::Fixed16).unwrap();
    let want = simulate_model(&m, &x, &cfg, Precision::Fixed16).unwrap();
    assert_eq!(sim.run(&x).unwrap().output, want.output);
}
