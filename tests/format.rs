//! EIE storage format: the paper's worked examples and round-trip properties.

use eie::format::{encode_column, entry_code, entry_run, Activation, EieLayer, SparseCodes};
use proptest::prelude::*;

fn codebook(bits: u8) -> Vec<f32> {
    (0..1usize << bits).map(|i| i as f32 * 0.25).collect()
}

#[test]
fn column_example_from_the_paper() {
    // Column [0,0,1,2, 18 zeros, 3] encodes as v=[1,2,0,3], z=[2,0,15,2].
    let mut out = Vec::new();
    encode_column([(2, 1), (3, 2), (22, 3)], &mut out).unwrap();
    let v: Vec<u8> = out.iter().map(|&e| entry_code(e)).collect();
    let z: Vec<u8> = out.iter().map(|&e| entry_run(e)).collect();
    assert_eq!(v, [1, 2, 0, 3]);
    assert_eq!(z, [2, 0, 15, 2]);
}

#[test]
fn gap_of_exactly_sixteen_needs_one_padding_entry() {
    let mut out = Vec::new();
    encode_column([(15, 1)], &mut out).unwrap();
    assert_eq!(out.iter().map(|&e| entry_run(e)).collect::<Vec<_>>(), [15]);
    out.clear();
    encode_column([(16, 1)], &mut out).unwrap();
    let got: Vec<(u8, u8)> = out.iter().map(|&e| (entry_code(e), entry_run(e))).collect();
    assert_eq!(got, [(0, 15), (1, 0)]);
    out.clear();
    encode_column([(32, 1)], &mut out).unwrap();
    let got: Vec<(u8, u8)> = out.iter().map(|&e| (entry_code(e), entry_run(e))).collect();
    assert_eq!(got, [(0, 15), (0, 15), (1, 0)]);
}

/// The paper's Figure 2/3 example: 16x8 matrix over 4 PEs; PE0 holds rows 0, 4, 8, 12.
#[test]
fn worked_example_pe0_arrays() {
    // PE0's non-zeros, in the paper's order, each with its own code to recognise it.
    let pe0 = [
        (0, 0),
        (8, 0),
        (12, 0),
        (4, 1),
        (0, 2),
        (12, 2),
        (0, 4),
        (4, 4),
        (0, 5),
        (12, 5),
        (0, 6),
        (8, 7),
        (12, 7),
    ];
    // Other PEs get some non-zeros too; they must not disturb PE0's slice.
    let others = [(1, 0), (5, 1), (14, 3), (7, 7), (10, 2), (3, 6), (15, 5)];
    let mut dense = vec![0u8; 16 * 8];
    for (k, &(r, c)) in pe0.iter().enumerate() {
        dense[r * 8 + c] = (k % 15 + 1) as u8;
    }
    for &(r, c) in &others {
        dense[r * 8 + c] = 15;
    }
    let codes = SparseCodes::from_dense(16, 8, &dense).unwrap();
    let layer = EieLayer::encode(&codes, codebook(4), 4, 4, None, Activation::Identity).unwrap();
    let pe = layer.pe(0);
    let values: Vec<u8> = pe.entries.iter().map(|&e| entry_code(e)).collect();
    let runs: Vec<u8> = pe.entries.iter().map(|&e| entry_run(e)).collect();
    assert_eq!(values, (1..=13).collect::<Vec<u8>>());
    assert_eq!(runs, [0, 1, 0, 1, 0, 2, 0, 0, 0, 2, 0, 2, 0]);
    assert_eq!(pe.col_ptr, [0, 3, 4, 6, 6, 8, 10, 11, 13]);
    assert_eq!(layer.sparse_codes().to_dense(), dense);
}

#[test]
fn rows_not_divisible_by_pes_and_more_pes_than_rows() {
    let dense: Vec<u8> = (0..7 * 3).map(|i| (i % 4) as u8).collect();
    let codes = SparseCodes::from_dense(7, 3, &dense).unwrap();
    for pes in [1, 2, 3, 7, 8, 64] {
        let l = EieLayer::encode(&codes, codebook(2), 2, pes, None, Activation::Relu).unwrap();
        assert_eq!(l.sparse_codes().to_dense(), dense, "pes = {pes}");
        let local: usize = (0..pes).map(|p| l.rows_of_pe(p)).sum();
        assert_eq!(local, 7);
    }
}

#[test]
fn zero_pes_is_an_error() {
    let codes = SparseCodes::from_dense(1, 1, &[1]).unwrap();
    assert!(matches!(
        EieLayer::encode(&codes, codebook(2), 2, 0, None, Activation::Identity),
        Err(eie::Error::InvalidArgument(_))
    ));
}

fn matrix() -> impl Strategy<Value = (usize, usize, Vec<u8>, usize, u8)> {
    (1usize..70, 1usize..12, 0.0f64..=1.0, 1usize..20, 2u8..=8).prop_flat_map(
        |(rows, cols, density, pes, bits)| {
            let max_code = ((1u16 << bits) - 1) as u8;
            (
                Just(rows),
                Just(cols),
                proptest::collection::vec(
                    (proptest::bool::weighted(density), 1..=max_code).prop_map(|(keep, c)| {
                        if keep {
                            c
                        } else {
                            0
                        }
                    }),
                    rows * cols,
                ),
                Just(pes),
                Just(bits),
            )
        },
    )
}

proptest! {
    #[test]
    fn decode_of_encode_is_identity((rows, cols, dense, pes, bits) in matrix()) {
        let codes = SparseCodes::from_dense(rows, cols, &dense).unwrap();
        let l = EieLayer::encode(&codes, codebook(bits), bits, pes, None, Activation::Identity)
            .unwrap();
        prop_assert_eq!(l.sparse_codes().to_dense(), dense.clone());
        prop_assert_eq!(l.nnz(), dense.iter().filter(|&&c| c != 0).count());
        // Re-interleaving keeps the matrix, and is exactly what encoding at that PE count gives.
        for q in [1, pes % 5 + 1, pes + 3, rows + 2] {
            let other = l.with_pes(q).unwrap();
            prop_assert_eq!(other.sparse_codes().to_dense(), dense.clone());
            let direct = EieLayer::encode(&codes, codebook(bits), bits, q, None, Activation::Identity)
                .unwrap();
            prop_assert_eq!(&other, &direct);
        }
        // Dequantised weights are the codebook looked up at every code.
        let w = l.dense_weights();
        for (x, &c) in w.iter().zip(&dense) {
            prop_assert_eq!(*x, codebook(bits)[c as usize]);
        }
    }

    #[test]
    fn model_file_round_trips((rows, cols, dense, pes, bits) in matrix()) {
        let codes = SparseCodes::from_dense(rows, cols, &dense).unwrap();
        let bias: Vec<f32> = (0..rows).map(|i| i as f32 - 3.5).collect();
        let l = EieLayer::encode(&codes, codebook(bits), bits, pes, Some(bias), Activation::Relu)
            .unwrap();
        let model = eie::Model::new(vec![l]).unwrap();
        let bytes = eie::format::file::to_bytes(&model).unwrap();
        prop_assert_eq!(eie::format::file::from_bytes(&bytes).unwrap(), model);
    }
}

#[test]
fn runs_up_to_a_limit_and_their_count() {
    // 4-bit runs: a gap of 40 zeros needs two padding entries; 8-bit runs none.
    let items = [(3usize, 1u8), (44, 2), (301, 3), (302, 4)];
    for max_run in [eie::format::MAX_RUN, 255] {
        let mut out = Vec::new();
        eie::format::encode_runs(items, max_run, &mut out).unwrap();
        assert_eq!(
            out.len(),
            eie::format::encoded_len(items.iter().map(|&(i, _)| i), max_run)
        );
        // Decoding the runs gives the indices back.
        let mut pos = 0usize;
        let mut got = Vec::new();
        for &e in &out {
            pos += entry_run(e) as usize + 1;
            if entry_code(e) != 0 {
                got.push((pos - 1, entry_code(e)));
            }
        }
        assert_eq!(got, items);
    }
    let mut wide = Vec::new();
    eie::format::encode_runs(items, 255, &mut wide).unwrap();
    assert_eq!(
        wide.len(),
        5,
        "one padding entry, for the gap of 256 zeros (255 fit one run)"
    );
    assert!(eie::format::encode_runs([(2, 1), (2, 1)], 255, &mut wide).is_err());
}

#[test]
fn a_plain_safetensors_file_is_named_as_not_an_eie_model() {
    use safetensors::tensor::{Dtype, TensorView};
    let weights: Vec<u8> = [0.5f32; 6].iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![2, 3], &weights).unwrap();
    let mut meta = std::collections::HashMap::new();
    meta.insert("producer".to_string(), "pytorch".to_string());
    let bytes = safetensors::serialize([("fc.weight", view)], Some(meta)).unwrap();
    let e = eie::format::file::from_bytes(&bytes)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not an eie model") && e.contains("eie compress") && e.contains("1 tensors"),
        "{e}"
    );
}
