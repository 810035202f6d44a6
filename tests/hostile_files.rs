//! Hostile files and arguments: hand-made model files with valid containers and checksums but
//! impossible sizes, `.npy` headers that promise more data than they hold, public functions
//! called with inconsistent arguments, and thousands of seeded mutations of valid model,
//! `.npy` and `.safetensors` files. Every one must give `Ok` or a typed error: no panic, no
//! abort, no hang; every model that loads must run.

use eie::compress::{compress_layer, CompressConfig};
use eie::format::file::{
    from_bytes, from_bytes_with_limits, sequence_from_bytes, sequence_to_bytes, to_bytes,
    to_bytes_v1,
};
use eie::format::{encode_column, rows_of_pe, EieLayer, SparseCodes};
use eie::format::{CellKind, SequenceModel, Stage};
use eie::import::{load_dense_layers, read_input, read_npy, write_npy, SafetensorsFile};
use eie::recurrent::{compress_stages, DenseRecurrent, DenseStage, SequenceEngine, SequenceOracle};
use eie::reference::{layer_f32, layer_fixed16, ErrorStats};
use eie::{Activation, CpuEngine, DenseOracle, Error, LoadLimits, Model, Precision};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::fixtures;

type OwnedTensor = (String, Dtype, Vec<usize>, Vec<u8>);

/// Serialises tensors and metadata as a safetensors file, canonically.
fn container(tensors: &[OwnedTensor], meta: HashMap<String, String>) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    canonical(&safetensors::serialize(views, Some(meta)).unwrap())
}

/// The same safetensors file with its JSON header's keys sorted: the metadata is a `HashMap`,
/// whose order changes from run to run, and the mutations must hit the same bytes every time.
fn canonical(bytes: &[u8]) -> Vec<u8> {
    let (header, data) = split_container(bytes);
    join_container(&header, &data)
}

/// A model file with the given `model` JSON and tensors, with correct checksums: only the
/// loader's own checks can object to it.
fn model_file(model: &Value, tensors: &[OwnedTensor]) -> Vec<u8> {
    let crc: BTreeMap<&str, u32> = tensors
        .iter()
        .map(|(n, _, _, d)| (n.as_str(), crc32fast::hash(d)))
        .collect();
    let meta = HashMap::from([
        ("format".to_string(), "eie".to_string()),
        ("format_version".to_string(), "1".to_string()),
        ("model".to_string(), model.to_string()),
        ("crc32".to_string(), serde_json::to_string(&crc).unwrap()),
    ]);
    container(tensors, meta)
}

fn u32_bytes(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// One layer without bias or entries whose header states `rows`, `cols` and `pes`; the
/// tensors are those of a 1-column, 1-PE layer (`pe_ptr = [0, 0]`, `col_ptr = [[0, 0]]`).
fn empty_layer_file(rows: Value, cols: Value, pes: Value) -> Vec<u8> {
    let model = json!({"layers": [{
        "name": "hostile", "rows": rows, "cols": cols, "pes": pes, "bits": 2,
        "activation": "identity", "bias": false
    }]});
    let tensors = vec![
        (
            "layers.0.codebook".to_string(),
            Dtype::F32,
            vec![4],
            f32_bytes(&[0.0, 0.5, -0.5, 1.0]),
        ),
        (
            "layers.0.pe_ptr".to_string(),
            Dtype::U32,
            vec![2],
            u32_bytes(&[0, 0]),
        ),
        (
            "layers.0.col_ptr".to_string(),
            Dtype::U32,
            vec![1, 2],
            u32_bytes(&[0, 0]),
        ),
        ("layers.0.entries".to_string(), Dtype::U8, vec![0], vec![]),
    ];
    model_file(&model, &tensors)
}

fn corrupt_message(r: eie::Result<Model>) -> String {
    match r {
        Err(Error::CorruptModel(m)) => m,
        other => panic!("expected a corrupt-model error, got {other:?}"),
    }
}

#[test]
fn rows_beyond_the_format_are_refused() {
    // rows = 2^40 and 2^62 with no entries: the container and checksums are valid, so only the
    // size check stands between this file and a multi-terabyte output buffer.
    for rows in [1u64 << 40, 1 << 62, u64::MAX] {
        let bytes = empty_layer_file(json!(rows), json!(1), json!(1));
        let m = corrupt_message(from_bytes(&bytes));
        assert!(m.contains("beyond the format's limit"), "{m}");
        // Raising the configurable limit does not lift the format's own bound.
        let all = LoadLimits {
            max_rows: usize::MAX,
            ..LoadLimits::default()
        };
        assert!(matches!(
            from_bytes_with_limits(&bytes, &all),
            Err(Error::CorruptModel(_))
        ));
    }
}

#[test]
fn rows_above_the_load_limit_are_refused_and_the_limit_is_settable() {
    let rows = (1u64 << 24) + 1;
    let bytes = empty_layer_file(json!(rows), json!(1), json!(1));
    match from_bytes(&bytes) {
        Err(Error::LimitExceeded { value, limit, what }) => {
            assert_eq!((value, limit), (rows, 1 << 24));
            assert!(what.contains("rows"), "{what}");
        }
        other => panic!("expected a limit error, got {other:?}"),
    }
    let small = LoadLimits {
        max_rows: 1000,
        ..LoadLimits::default()
    };
    let bytes = empty_layer_file(json!(1001), json!(1), json!(1));
    assert!(matches!(
        from_bytes_with_limits(&bytes, &small),
        Err(Error::LimitExceeded {
            value: 1001,
            limit: 1000,
            ..
        })
    ));
    // At the limit the layer loads, and runs: no entries and no bias give zeros.
    let bytes = empty_layer_file(json!(1000), json!(1), json!(1));
    let model = from_bytes_with_limits(&bytes, &small).unwrap();
    let y = CpuEngine::new(model).unwrap().run(&[1.5]).unwrap();
    assert_eq!(y, vec![0.0; 1000]);
    // The file's length and the layer count have limits too.
    let tiny = LoadLimits {
        max_file_bytes: bytes.len() as u64 - 1,
        ..LoadLimits::default()
    };
    assert!(matches!(
        from_bytes_with_limits(&bytes, &tiny),
        Err(Error::LimitExceeded { .. })
    ));
    let none = LoadLimits {
        max_layers: 0,
        ..LoadLimits::default()
    };
    assert!(matches!(
        from_bytes_with_limits(&bytes, &none),
        Err(Error::LimitExceeded {
            value: 1,
            limit: 0,
            ..
        })
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.eie");
    std::fs::write(&path, &bytes).unwrap();
    assert!(Model::load_with_limits(&path, &small).is_ok());
    assert!(matches!(
        Model::load_with_limits(&path, &tiny),
        Err(Error::LimitExceeded { .. })
    ));
}

#[test]
fn cols_and_pes_that_overflow_are_refused() {
    for (cols, pes) in [
        (json!(u64::MAX), json!(1)),
        (json!(1u64 << 32), json!(1)),
        (json!(1), json!(u64::MAX)),
        (json!(1u64 << 40), json!(1u64 << 40)),
    ] {
        let bytes = empty_layer_file(json!(4), cols.clone(), pes.clone());
        let r = from_bytes(&bytes);
        assert!(
            matches!(r, Err(Error::CorruptModel(_))),
            "cols {cols} pes {pes}: {r:?}"
        );
    }
    // Negative and fractional numbers are not sizes.
    for bad in [json!(-1), json!(1.5), json!("4")] {
        let bytes = empty_layer_file(bad.clone(), json!(1), json!(1));
        assert!(matches!(from_bytes(&bytes), Err(Error::CorruptModel(_))));
    }
}

#[test]
fn empty_and_unchained_models_are_corrupt_files() {
    let bytes = model_file(&json!({"layers": []}), &[]);
    assert!(corrupt_message(from_bytes(&bytes)).contains("no layers"));
    // Two valid layers, 1 -> 4 and 1 -> 4: the second takes 1 input, the first gives 4.
    let one = empty_layer_file(json!(4), json!(1), json!(1));
    let (_, header) = SafeTensors::read_metadata(&one).unwrap();
    let meta = header.metadata().clone().unwrap();
    let mut model: Value = serde_json::from_str(&meta["model"]).unwrap();
    let layer = model["layers"][0].clone();
    model["layers"].as_array_mut().unwrap().push(layer);
    let st = SafeTensors::deserialize(&one).unwrap();
    let mut tensors: Vec<OwnedTensor> = Vec::new();
    for k in 0..2 {
        for (n, v) in st.tensors() {
            tensors.push((
                n.replace("layers.0", &format!("layers.{k}")),
                v.dtype(),
                v.shape().to_vec(),
                v.data().to_vec(),
            ));
        }
    }
    let m = corrupt_message(from_bytes(&model_file(&model, &tensors)));
    assert!(m.contains("takes 1 inputs"), "{m}");
}

#[test]
fn fixed16_formats_out_of_range_or_partly_stated_are_corrupt_files() {
    let layer = eie::synth::dense_layer("fc", 6, 5, true, 3);
    let config = CompressConfig {
        density: 0.5,
        ..CompressConfig::default()
    };
    let a = compress_layer(&layer, &config, Activation::Relu).unwrap();
    let b = compress_layer(
        &eie::synth::dense_layer("fc2", 4, 6, false, 4),
        &config,
        Activation::Identity,
    )
    .unwrap();
    let mut model = Model::new(vec![a, b]).unwrap();
    model.set_fixed16_fracs(13, &[12, 9]).unwrap();
    let good = to_bytes(&model).unwrap();
    assert_eq!(from_bytes(&good).unwrap(), model);
    let (header, data) = split_container(&good);
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut h = header.clone();
        let meta = h["__metadata__"].as_object_mut().unwrap();
        let mut m: Value = serde_json::from_str(meta["model"].as_str().unwrap()).unwrap();
        f(&mut m);
        meta.insert("model".into(), json!(m.to_string()));
        from_bytes(&join_container(&h, &data))
    };
    type Edit<'a> = &'a dyn Fn(&mut Value);
    let cases: [(&str, Edit); 7] = [
        ("`input_frac` is 25", &|m| m["input_frac"] = json!(25)),
        ("`output_frac` is 99", &|m| {
            m["layers"][1]["output_frac"] = json!(99)
        }),
        ("not valid", &|m| m["layers"][0]["output_frac"] = json!(-1)),
        ("not valid", &|m| m["input_frac"] = json!("Q5.10")),
        ("not valid", &|m| m["input_frac"] = json!(1e40)),
        ("1 of 2 layers lack", &|m| {
            m["layers"][0]
                .as_object_mut()
                .unwrap()
                .remove("output_frac");
        }),
        ("no `input_frac`", &|m| {
            m.as_object_mut().unwrap().remove("input_frac");
        }),
    ];
    for (want, f) in cases {
        let msg = corrupt_message(edit(f));
        assert!(msg.contains(want), "{want}: {msg}");
    }
    // A file that states no formats at all (as written before they were stored) runs Q5.10.
    let old = edit(&|m| {
        m.as_object_mut().unwrap().remove("input_frac");
        for l in m["layers"].as_array_mut().unwrap() {
            l.as_object_mut().unwrap().remove("output_frac");
        }
    })
    .unwrap();
    assert_eq!((old.input_frac(), old.output_frac()), (10, 10));
    assert!(old
        .layers()
        .iter()
        .all(|l| l.fixed16_format() == eie::fixed16::LayerFormat::default()));
    // A chain whose formats do not meet is refused by Model::new, and bad fractions by the
    // setter, leaving the model as it was.
    let mut layers = model.clone().into_layers();
    layers[1].set_fixed16_format(eie::fixed16::LayerFormat::new(11, 9).unwrap());
    assert!(matches!(Model::new(layers), Err(Error::Shape(_))));
    let mut m = model.clone();
    assert!(m.set_fixed16_fracs(3, &[25, 2]).is_err());
    assert!(m.set_fixed16_fracs(3, &[2]).is_err());
    assert_eq!(m, model);
}

#[test]
fn from_parts_and_encode_reject_inconsistent_arguments() {
    let codebook = vec![0.0, 1.0, 2.0, 3.0];
    let r = EieLayer::from_parts(
        "x".into(),
        4,
        usize::MAX,
        1,
        2,
        codebook.clone(),
        None,
        Activation::Identity,
        vec![0, 0],
        vec![0, 0],
        vec![],
    );
    assert!(matches!(r, Err(Error::CorruptModel(_))), "{r:?}");
    let r = EieLayer::from_parts(
        "x".into(),
        4,
        1,
        usize::MAX,
        2,
        codebook.clone(),
        None,
        Activation::Identity,
        vec![0, 0],
        vec![0, 0],
        vec![],
    );
    assert!(matches!(r, Err(Error::CorruptModel(_))), "{r:?}");

    let good = SparseCodes::from_dense(3, 2, &[1, 0, 0, 2, 3, 0]).unwrap();
    assert!(good.validate().is_ok());
    let encode =
        |c: &SparseCodes| EieLayer::encode(c, codebook.clone(), 2, 2, None, Activation::Identity);
    assert!(encode(&good).is_ok());
    let mut bad = Vec::new();
    // Column pointers that do not end at the entry count, or decrease.
    let mut c = good.clone();
    c.col_ptr[2] = 7;
    bad.push(c);
    let mut c = good.clone();
    c.col_ptr = vec![0, 3, 2];
    bad.push(c);
    // Fewer row indices than codes.
    let mut c = good.clone();
    c.row_idx.pop();
    bad.push(c);
    // Rows out of order within a column (an unsigned gap would wrap), repeated, or too large.
    let mut c = good.clone();
    c.row_idx.swap(0, 1);
    bad.push(c);
    let mut c = good.clone();
    c.row_idx[1] = c.row_idx[0];
    bad.push(c);
    let mut c = good.clone();
    c.row_idx[0] = 3;
    bad.push(c);
    // A zero code, a wrong pointer count, an impossible shape.
    let mut c = good.clone();
    c.code[0] = 0;
    bad.push(c);
    let mut c = good.clone();
    c.cols = 5;
    bad.push(c);
    let mut c = good.clone();
    c.cols = usize::MAX;
    bad.push(c);
    for c in &bad {
        assert!(c.validate().is_err(), "{c:?}");
        let r = catch_unwind(AssertUnwindSafe(|| encode(c)));
        assert!(matches!(r, Ok(Err(Error::Shape(_)))), "{c:?} gave {r:?}");
    }
    // The column encoder on its own: rows that go back would wrap an unsigned gap.
    let mut out = Vec::new();
    assert!(matches!(
        encode_column([(5, 1), (2, 1)], &mut out),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        encode_column([(3, 1), (3, 2)], &mut out),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        encode_column([(0, 0)], &mut out),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        (
            rows_of_pe(5, 0, 0),
            rows_of_pe(5, 2, 2),
            rows_of_pe(5, 2, 0)
        ),
        (0, 0, 3)
    );
    assert!(matches!(
        SparseCodes::from_dense(1 << 40, 1 << 40, &[]),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        SparseCodes::from_dense(1 << 33, 1 << 31, &[]),
        Err(Error::Shape(_))
    ));
}

#[test]
fn kernels_and_comparisons_reject_wrong_lengths() {
    let dense = eie::synth::dense_layer("fc", 6, 5, true, 3);
    let config = CompressConfig {
        density: 0.5,
        pes: 2,
        ..CompressConfig::default()
    };
    let layer = compress_layer(&dense, &config, Activation::Relu).unwrap();
    let x = [0.5f32; 5];
    let mut y = [0f32; 6];
    assert!(layer_f32(&layer, &x, &mut y).is_ok());
    assert!(matches!(
        layer_f32(&layer, &x[..4], &mut y),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        layer_f32(&layer, &x, &mut y[..5]),
        Err(Error::Shape(_))
    ));
    let xq = [3i16; 5];
    let mut yq = [0i16; 7];
    assert!(matches!(
        layer_fixed16(&layer, &xq, &mut yq),
        Err(Error::Shape(_))
    ));
    assert!(layer_fixed16(&layer, &xq, &mut yq[..6]).is_ok());

    let e = ErrorStats::compare(&[1.0, 2.0], &[1.0]);
    assert_eq!(e.max_abs, f64::INFINITY);
    assert_eq!(e.max_rel, f64::INFINITY);
    assert!(matches!(
        ErrorStats::try_compare(&[1.0, 2.0], &[1.0]),
        Err(Error::Shape(_))
    ));
    let e = ErrorStats::try_compare(&[1.0, 2.5], &[1.0, 2.0]).unwrap();
    assert_eq!(e.max_abs, 0.5);
    assert_eq!(ErrorStats::compare(&[1.0, 2.5], &[1.0, 2.0]), e);
}

/// A `.npy` file with a hand-written header (version 1.0) and `data` after it.
fn npy_with_header(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = dict.to_string();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// The image, label and sequence readers (calibration inputs, `eie demo`, the web page) decode
/// `.npy` with the same hardened decoder as `read_npy`: a header promising more than the file
/// holds, a broken dict or an unreadable dtype is a typed error, at once.
#[test]
fn image_label_and_sequence_readers_refuse_hostile_npy_headers() {
    use eie::classify::read_sequences;
    use eie::classify::{images_from_bytes, labels_from_bytes, read_images, read_labels};
    fn parse<T>(r: &Result<T, Error>) -> bool {
        matches!(r, Err(Error::Parse { .. }))
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    let data = [7u8; 64];
    for dict in [
        "{'descr': '|u1', 'fortran_order': False, 'shape': (1099511627776, 784), }",
        "{'descr': '|u1', 'fortran_order': False, 'shape': (18446744073709551615,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4, 2), }",
        "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 4), 'shape': (2, 4)}",
        "{'descr': '|u1', 'fortran_order': False, 'shape': ((((((((2, 4), }",
        "{'descr': '|u1', 'shape': (2, 4), }",
    ] {
        let bytes = npy_with_header(dict, &data);
        std::fs::write(&p, &bytes).unwrap();
        let start = Instant::now();
        let images = read_images(&p);
        assert!(parse(&images), "{dict}: {images:?}");
        let labels = read_labels(&p, 10);
        assert!(parse(&labels), "{dict}: {labels:?}");
        let seqs = read_sequences(&p);
        assert!(parse(&seqs), "{dict}: {seqs:?}");
        assert!(parse(&images_from_bytes(&bytes, "x.npy")));
        assert!(parse(&labels_from_bytes(&bytes, "x.npy", 10)));
        assert!(start.elapsed() < Duration::from_secs(1), "{dict}");
    }
    for descr in ["[('a', '<f4')]", "'|b1'", "'<c8'"] {
        let dict = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (2, 2), }}");
        std::fs::write(&p, npy_with_header(&dict, &data)).unwrap();
        let r = read_images(&p);
        assert!(
            matches!(r, Err(Error::UnsupportedDtype { .. })),
            "{descr}: {r:?}"
        );
    }
    // What the decoder reads beyond what the images reader used to: big-endian and
    // Fortran-order pixels, the values in C order.
    let dict = "{'descr': '>f4', 'fortran_order': True, 'shape': (2, 3), }";
    let be: Vec<u8> = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    std::fs::write(&p, npy_with_header(dict, &be)).unwrap();
    assert_eq!(
        read_images(&p).unwrap(),
        (2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    );
}

#[test]
fn npy_headers_that_promise_more_than_the_file_holds() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    let data = f32_bytes(&[1.0; 8]);
    for shape in [
        "(1099511627776, 4)",
        "(4, 1099511627776)",
        "(1099511627776, 1099511627776)",
        "(18446744073709551615,)",
        "(4611686018427387904, 4, 0)",
        "(3, 4)",
    ] {
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        std::fs::write(&p, npy_with_header(&dict, &data)).unwrap();
        let r = read_npy(&p);
        if shape == "(4611686018427387904, 4, 0)" {
            // No values at all: readable, and an empty input.
            assert_eq!(r.unwrap().data.len(), 0);
        } else {
            assert!(matches!(r, Err(Error::Parse { .. })), "{shape}: {r:?}");
        }
        assert!(read_input(&p, 4).is_err());
    }
    for dict in [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551616,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 2), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), 'shape': (2, 4)}",
        "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 4), }",
        "{'descr': '<f4', 'shape': (2, 4), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': ((((((((2, 4), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), } trailing",
    ] {
        std::fs::write(&p, npy_with_header(dict, &data)).unwrap();
        assert!(
            matches!(read_npy(&p), Err(Error::Parse { .. })),
            "{dict}: {:?}",
            read_npy(&p)
        );
    }
    // An empty Fortran-order array with a huge dimension: nothing to transpose, at once.
    let dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (1099511627776, 0), }";
    std::fs::write(&p, npy_with_header(dict, &data)).unwrap();
    let start = Instant::now();
    assert_eq!(read_npy(&p).unwrap().shape, [1 << 40, 0]);
    assert!(start.elapsed() < Duration::from_secs(1));
    // Deep nesting in an ignored value is skipped without recursion.
    let deep = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), 'x': {}{} }}",
        "(".repeat(20000),
        ")".repeat(20000)
    );
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend_from_slice(&(deep.len() as u32).to_le_bytes());
    bytes.extend_from_slice(deep.as_bytes());
    bytes.extend_from_slice(&data);
    std::fs::write(&p, &bytes).unwrap();
    assert_eq!(read_npy(&p).unwrap().data, vec![1.0; 8]);
    // Structured, boolean and complex dtypes are unsupported, not misread.
    for descr in ["[('a', '<f4')]", "'|b1'", "'<c8'", "'<f16'"] {
        let dict = format!("{{'descr': {descr}, 'fortran_order': False, 'shape': (2,), }}");
        std::fs::write(&p, npy_with_header(&dict, &data)).unwrap();
        assert!(matches!(read_npy(&p), Err(Error::UnsupportedDtype { .. })));
    }
    // Integers of every width and sign, either byte order, are read as their values.
    let cases: [(&str, Vec<u8>, Vec<f32>); 6] = [
        ("'|u1'", vec![0, 7, 255], vec![0.0, 7.0, 255.0]),
        ("'|i1'", vec![0x80, 0xff, 5], vec![-128.0, -1.0, 5.0]),
        ("'<u2'", vec![0x34, 0x12, 0xff, 0xff], vec![4660.0, 65535.0]),
        ("'>i2'", vec![0xff, 0xfe, 0x01, 0x00], vec![-2.0, 256.0]),
        ("'<i4'", (-70000i32).to_le_bytes().to_vec(), vec![-70000.0]),
        ("'>u8'", 1u64.to_be_bytes().to_vec(), vec![1.0]),
    ];
    for (descr, bytes, want) in cases {
        let dict = format!(
            "{{'descr': {descr}, 'fortran_order': False, 'shape': ({},), }}",
            want.len()
        );
        std::fs::write(&p, npy_with_header(&dict, &bytes)).unwrap();
        assert_eq!(read_npy(&p).unwrap().data, want, "{descr}");
    }
}

#[test]
fn npy_reader_reads_what_numpy_writes() {
    // Big-endian f8, Python 2 style long dimensions, Fortran order, double quotes.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    let vals = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]; // column-major [2, 3]: rows (1,3,5), (2,4,6)
    let data: Vec<u8> = vals.iter().flat_map(|v| v.to_be_bytes()).collect();
    let dict = "{\"descr\": \">f8\", \"fortran_order\": True, \"shape\": (2L, 3L)}";
    std::fs::write(&p, npy_with_header(dict, &data)).unwrap();
    let t = read_npy(&p).unwrap();
    assert_eq!(t.shape, [2, 3]);
    assert_eq!(t.data, [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
    let h: Vec<u8> = [0.5f32, -2.0]
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let dict = "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }";
    std::fs::write(&p, npy_with_header(dict, &h)).unwrap();
    assert_eq!(read_npy(&p).unwrap().data, [0.5, -2.0]);
}

fn eie_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eie"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// Runs a command expected to fail cleanly: exit code 1 and a one-line message.
fn fails_in_one_line(args: &[&str]) -> String {
    let o = eie_cmd(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "eie {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "eie {args:?}: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn command_line_reports_hostile_files_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let rows = dir.path().join("rows.eie");
    std::fs::write(
        &rows,
        empty_layer_file(json!(1u64 << 40), json!(1), json!(1)),
    )
    .unwrap();
    let cols = dir.path().join("cols.eie");
    std::fs::write(&cols, empty_layer_file(json!(4), json!(u64::MAX), json!(1))).unwrap();
    let x = dir.path().join("x.npy");
    write_npy(&x, &[1], &[1.0]).unwrap();
    let y = dir.path().join("y.npy");
    let e = fails_in_one_line(&["run", &s(&rows), "--input", &s(&x), "--output", &s(&y)]);
    assert!(e.contains("corrupt model"), "{e}");
    let e = fails_in_one_line(&["info", &s(&cols)]);
    assert!(e.contains("corrupt model"), "{e}");
    let e = fails_in_one_line(&["verify", &s(&rows)]);
    assert!(e.contains("corrupt model"), "{e}");

    // A valid model, and inputs whose headers claim 2^40 vectors.
    let model = dir.path().join("m.eie");
    let dense = eie::synth::dense_layer("fc", 3, 4, true, 1);
    let layer = compress_layer(&dense, &CompressConfig::default(), Activation::Relu).unwrap();
    Model::new(vec![layer]).unwrap().save(&model).unwrap();
    for shape in [
        "(1099511627776, 4)",
        "(4, 1099511627776)",
        "(1099511627776,)",
    ] {
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        std::fs::write(&x, npy_with_header(&dict, &f32_bytes(&[1.0; 8]))).unwrap();
        let e = fails_in_one_line(&["run", &s(&model), "--input", &s(&x), "--output", &s(&y)]);
        assert!(e.contains("cannot parse"), "{e}");
    }
    assert!(!y.exists());
}

// ---------------------------------------------------------------------------------------------
// Seeded structured mutation of valid files.

/// Sizes that break naive arithmetic.
fn hostile_number(rng: &mut ChaCha8Rng) -> Value {
    const N: [u64; 12] = [
        0,
        1,
        2,
        3,
        255,
        65536,
        1 << 31,
        1 << 32,
        (1 << 32) - 1,
        1 << 40,
        1 << 62,
        u64::MAX,
    ];
    match rng.random_range(0..15) {
        0 => json!(-1),
        1 => json!(-(1i64 << 40)),
        2 => json!(1.5),
        i => json!(N[i - 3]),
    }
}

/// The JSON header of a safetensors file and the bytes after it.
fn split_container(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

fn join_container(header: &Value, data: &[u8]) -> Vec<u8> {
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Generic byte-level mutations: bit flips, truncation, extension, a hostile header length.
fn mutate_bytes(rng: &mut ChaCha8Rng, seed: &[u8]) -> (String, Vec<u8>) {
    let mut b = seed.to_vec();
    match rng.random_range(0..5) {
        0 => {
            let flips = rng.random_range(1..=4);
            for _ in 0..flips {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            (format!("{flips} bit flips"), b)
        }
        1 => {
            let len = rng.random_range(0..b.len());
            b.truncate(len);
            (format!("truncated to {len}"), b)
        }
        2 => {
            let extra = rng.random_range(1..64);
            b.extend((0..extra).map(|_| rng.random::<u8>()));
            (format!("{extra} bytes appended"), b)
        }
        3 => {
            let i = rng.random_range(0..b.len());
            let v: u8 = [0, 0xff, 0x7f, 0x80][rng.random_range(0..4)];
            b[i] = v;
            (format!("byte {i} set to {v:#x}"), b)
        }
        _ => {
            // The first 8 bytes are safetensors' header length, and cover the .npy magic,
            // version and (part of) the header length.
            let v: u64 = [0, 1, 7, 1 << 31, 1 << 40, u64::MAX][rng.random_range(0..6)];
            let at = rng.random_range(0..=2) * 4;
            let end = (at + 8).min(b.len());
            b[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            (format!("u64 {v} written at {at}"), b)
        }
    }
}

/// Edits a number in a safetensors header: a tensor's shape or data offsets, or its dtype.
fn mutate_container_header(rng: &mut ChaCha8Rng, seed: &[u8]) -> (String, Vec<u8>) {
    let (mut header, data) = split_container(seed);
    let names: Vec<String> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    let name = &names[rng.random_range(0..names.len())];
    let t = header.get_mut(name).unwrap();
    let what = match rng.random_range(0..4) {
        0 | 1 => {
            let field = ["shape", "data_offsets"][rng.random_range(0..2)];
            let arr = t[field].as_array_mut().unwrap();
            if arr.is_empty() || rng.random_bool(0.2) {
                arr.push(hostile_number(rng));
            } else {
                let i = rng.random_range(0..arr.len());
                arr[i] = hostile_number(rng);
            }
            format!("{name}.{field} = {}", t[field])
        }
        2 => {
            let dt = [
                "F32", "U8", "U32", "F16", "F64", "I64", "BOOL", "F8_E4M3", "X",
            ][rng.random_range(0..9)];
            t["dtype"] = json!(dt);
            format!("{name}.dtype = {dt}")
        }
        _ => {
            let grow = rng.random_range(1..64u64);
            let end = t["data_offsets"][1].as_u64().unwrap() + grow;
            t["data_offsets"][1] = json!(end);
            format!("{name} extended by {grow} bytes")
        }
    };
    (what, join_container(&header, &data))
}

/// Valid model files to mutate, each in format versions 1 and 2: 4-bit (one byte per entry) and
/// 6-bit (two) codebooks, with and without bias, several PEs, and a layer with long zero runs
/// (padding entries).
fn model_seeds() -> Vec<Vec<u8>> {
    let make = |bits: u8, pes: usize, density: f64| {
        let m = fixtures::compressed_model(
            &[("fc1.weight", 24, 10, true), ("fc2.weight", 5, 24, false)],
            1,
            &fixtures::config(density, bits, pes),
        );
        [
            canonical(&to_bytes(&m).unwrap()),
            canonical(&to_bytes_v1(&m).unwrap()),
        ]
    };
    let sparse = {
        let config = fixtures::config(0.05, 2, 1);
        let l = fixtures::compressed_layer("tall", 80, 3, false, 4, &config, Activation::Identity);
        assert!(l.padding_count() > 0);
        let m = Model::new(vec![l]).unwrap();
        [
            canonical(&to_bytes(&m).unwrap()),
            canonical(&to_bytes_v1(&m).unwrap()),
        ]
    };
    [make(4, 3, 0.4), make(6, 2, 0.3), sparse].concat()
}

/// Edits the model description: a layer's rows, cols, pes, bits, (version 2) len_bits or
/// fixed16 output_frac, the model's fixed16 input_frac, or the layer list.
fn mutate_model_json(rng: &mut ChaCha8Rng, seed: &[u8]) -> (String, Vec<u8>) {
    let (mut header, data) = split_container(seed);
    let meta = header["__metadata__"].as_object_mut().unwrap();
    let mut model: Value = serde_json::from_str(meta["model"].as_str().unwrap()).unwrap();
    let layers = model["layers"].as_array_mut().unwrap();
    let what = match rng.random_range(0..11) {
        10 => {
            // Version 3's fields: a matrix's kind or its recurrent layer's name, changed,
            // removed or added (to a version-1 or -2 file too).
            let k = rng.random_range(0..layers.len());
            let field = ["kind", "stage"][rng.random_range(0..2)];
            let v = [
                json!("fc"),
                json!("lstm_ih"),
                json!("lstm_hh"),
                json!("gru_ih"),
                json!("gru_hh"),
                json!("conv"),
                json!("s"),
                json!(3),
                Value::Null,
            ][rng.random_range(0..9)]
            .clone();
            if v.is_null() {
                layers[k].as_object_mut().unwrap().remove(field);
            } else {
                layers[k][field] = v.clone();
            }
            format!("layer {k} {field} = {v}")
        }
        0 => {
            let l = layers[rng.random_range(0..layers.len())].clone();
            layers.push(l);
            "a layer duplicated".to_string()
        }
        1 => {
            layers.pop();
            "last layer dropped".to_string()
        }
        2 => {
            let k = rng.random_range(0..layers.len());
            let b = layers[k]["bias"].as_bool().unwrap();
            layers[k]["bias"] = json!(!b);
            format!("layer {k} bias flipped")
        }
        3 => {
            // The model's fixed16 input format: removed, or any number.
            if rng.random_bool(0.3) {
                model.as_object_mut().unwrap().remove("input_frac");
                "input_frac removed".to_string()
            } else {
                let v = hostile_number(rng);
                model["input_frac"] = v.clone();
                format!("input_frac = {v}")
            }
        }
        _ => {
            let k = rng.random_range(0..layers.len());
            let field =
                ["rows", "cols", "pes", "bits", "len_bits", "output_frac"][rng.random_range(0..6)];
            if layers[k].get(field).is_none() {
                // A version-1 layer has no `len_bits`: adding one is a mutation too.
                layers[k][field] = json!(3);
                meta.insert("model".into(), json!(model.to_string()));
                return (
                    format!("layer {k} {field} added"),
                    join_container(&header, &data),
                );
            }
            let v = if rng.random_bool(0.8) {
                hostile_number(rng)
            } else {
                // A near miss: one more or one less.
                let old = layers[k][field].as_u64().unwrap();
                json!(if rng.random_bool(0.5) || old == 0 {
                    old + 1
                } else {
                    old - 1
                })
            };
            layers[k][field] = v.clone();
            format!("layer {k} {field} = {v}")
        }
    };
    meta.insert("model".into(), json!(model.to_string()));
    (what, join_container(&header, &data))
}

/// Edits one tensor's data and fixes its checksum, so the deep validation must catch it.
fn mutate_tensor_data(rng: &mut ChaCha8Rng, seed: &[u8]) -> (String, Vec<u8>) {
    let st = SafeTensors::deserialize(seed).unwrap();
    let (_, meta) = SafeTensors::read_metadata(seed).unwrap();
    let mut meta: HashMap<String, String> = meta.metadata().clone().unwrap();
    let mut crc: BTreeMap<String, u32> = serde_json::from_str(&meta["crc32"]).unwrap();
    let mut owned: Vec<OwnedTensor> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    let i = rng.random_range(0..owned.len());
    let (name, dtype, shape, data) = &mut owned[i];
    let what = if !data.is_empty() && rng.random_bool(0.8) {
        let width = if *dtype == Dtype::U8 { 1 } else { 4 };
        let at = rng.random_range(0..data.len() / width) * width;
        let v: u32 = match rng.random_range(0..6) {
            0 => 0,
            1 => u32::MAX,
            2 => rng.random(),
            3 => {
                let mut old = [0u8; 4];
                old[..width].copy_from_slice(&data[at..at + width]);
                u32::from_le_bytes(old).wrapping_add(1)
            }
            4 => 0x7fc0_0000, // NaN as f32
            _ => 15 << 4,     // a padding entry (code 0, run 15) as one byte
        };
        data[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
        format!("{name}[{at}] = {v:#x}")
    } else if *dtype == Dtype::U8 {
        let extra = rng.random_range(1..8);
        data.extend((0..extra).map(|_| rng.random::<u8>()));
        shape[0] = data.len();
        format!("{name}: {extra} entries appended")
    } else {
        let n = data.len() / 4;
        if n > 1 && rng.random_bool(0.5) {
            data.truncate(4 * (n - 1));
        } else {
            data.extend_from_slice(&rng.random::<u32>().to_le_bytes());
        }
        let last = shape.len() - 1;
        let others: usize = shape[..last].iter().product();
        if data.len() / 4 % others.max(1) == 0 {
            shape[last] = data.len() / 4 / others.max(1);
        } else {
            *shape = vec![data.len() / 4];
        }
        format!("{name}: length changed to {}", data.len() / 4)
    };
    crc.insert(name.clone(), crc32fast::hash(data));
    meta.insert("crc32".into(), serde_json::to_string(&crc).unwrap());
    (what, container(&owned, meta))
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Everything a loaded model is used for must work: the engine in both arithmetics, the
/// oracle, the statistics `eie info` prints, saving. The engine re-interleaves layers for the
/// machine; its results must equal, bit for bit, those of the layers as stored.
fn exercise_model(model: Model) -> eie::Result<()> {
    let n = model.input_size();
    let x: Vec<f32> = (0..2 * n).map(|i| ((i % 7) as f32 - 2.0) * 0.25).collect();
    for l in model.layers() {
        let _ = (
            l.density(),
            l.dense_bytes(),
            l.compressed_bytes(),
            l.padding_count(),
        );
    }
    to_bytes(&model)?;
    let oracle = DenseOracle::try_new(&model)?.run(&x)?;
    assert_eq!(oracle.len(), 2 * model.output_size());
    let engine = CpuEngine::new(model.clone()).unwrap();
    let stored = CpuEngine::as_stored(model);
    for precision in [Precision::F32, Precision::Fixed16] {
        let y = engine.with_precision(precision).run(&x)?;
        assert_eq!(y.len(), oracle.len());
        assert_eq!(
            bits(&y),
            bits(&stored.with_precision(precision).run(&x)?),
            "{precision:?}"
        );
    }
    Ok(())
}

/// Runs `case` on every mutation, catching panics to report them; asserts there were none
/// and that no single case took long enough to be a hang.
struct Campaign {
    name: &'static str,
    cases: usize,
    ok: usize,
    panics: Vec<String>,
    slowest: Duration,
}

impl Campaign {
    fn new(name: &'static str) -> Self {
        Campaign {
            name,
            cases: 0,
            ok: 0,
            panics: Vec::new(),
            slowest: Duration::ZERO,
        }
    }

    fn run(&mut self, what: &str, case: impl FnOnce() -> bool) {
        let start = Instant::now();
        match catch_unwind(AssertUnwindSafe(case)) {
            Ok(ok) => self.ok += ok as usize,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                self.panics.push(format!("{what}: {msg}"));
            }
        }
        self.slowest = self.slowest.max(start.elapsed());
        self.cases += 1;
    }

    fn finish(self, min_cases: usize) {
        eprintln!(
            "{}: {} mutations, {} accepted, slowest {:?}",
            self.name, self.cases, self.ok, self.slowest
        );
        assert!(self.cases >= min_cases);
        assert!(
            self.panics.is_empty(),
            "{}: {} of {} mutations panicked, first: {:#?}",
            self.name,
            self.panics.len(),
            self.cases,
            &self.panics[..self.panics.len().min(10)]
        );
        assert!(
            self.slowest < Duration::from_secs(5),
            "{}: one mutation took {:?}",
            self.name,
            self.slowest
        );
        // The mutations must not all be trivially rejected, nor all accepted.
        assert!(self.ok > 0 && self.ok < self.cases, "{}", self.ok);
    }
}

#[test]
fn mutated_model_files_give_a_model_that_runs_or_a_typed_error() {
    let seeds = model_seeds();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut c = Campaign::new("model files");
    for i in 0..12000 {
        let seed = &seeds[i % seeds.len()];
        let (what, bytes) = match rng.random_range(0..4) {
            0 => mutate_bytes(&mut rng, seed),
            1 => mutate_container_header(&mut rng, seed),
            2 => mutate_model_json(&mut rng, seed),
            _ => mutate_tensor_data(&mut rng, seed),
        };
        c.run(&format!("case {i} ({what})"), || match from_bytes(&bytes) {
            Ok(model) => {
                exercise_model(model).unwrap();
                true
            }
            Err(_) => false,
        });
    }
    c.finish(12000);
}

/// Writes a case to a new file (rewriting one file in place makes some filesystems flush it on
/// every close), removing the previous case's.
fn fresh_file(dir: &Path, i: usize, ext: &str, bytes: &[u8]) -> std::path::PathBuf {
    if i > 0 {
        let _ = std::fs::remove_file(dir.join(format!("{}.{ext}", i - 1)));
    }
    let path = dir.join(format!("{i}.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn npy_seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.npy");
    write_npy(
        &p,
        &[4, 6],
        &(0..24).map(|i| i as f32 * 0.5).collect::<Vec<_>>(),
    )
    .unwrap();
    let f32_file = std::fs::read(&p).unwrap();
    let h: Vec<u8> = (0..6)
        .flat_map(|i| half::f16::from_f32(i as f32).to_le_bytes())
        .collect();
    let f16_file = npy_with_header(
        "{'descr': '<f2', 'fortran_order': True, 'shape': (2, 3), }",
        &h,
    );
    vec![f32_file, f16_file]
}

/// Edits a `.npy` header's shape, dtype or order.
fn mutate_npy_header(rng: &mut ChaCha8Rng, seed: &[u8]) -> (String, Vec<u8>) {
    let len = u16::from_le_bytes([seed[8], seed[9]]) as usize;
    let data = &seed[10 + len..];
    let mut dims: Vec<String> = (0..rng.random_range(0..4))
        .map(|_| hostile_number(rng).to_string())
        .collect();
    if rng.random_bool(0.3) {
        dims = vec!["4".into(), "6".into()];
    }
    let shape = format!("({},)", dims.join(", ")).replace("(,)", "()");
    let descr = [
        "'<f4'",
        "'>f4'",
        "'<f2'",
        "'<f8'",
        "'<i8'",
        "'|u1'",
        "[('a', '<f4')]",
    ][rng.random_range(0..7)];
    let order = ["True", "False"][rng.random_range(0..2)];
    let dict = format!("{{'descr': {descr}, 'fortran_order': {order}, 'shape': {shape}, }}");
    (dict.clone(), npy_with_header(&dict, data))
}

#[test]
fn mutated_npy_files_give_a_tensor_or_a_typed_error() {
    let seeds = npy_seeds();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut c = Campaign::new(".npy files");
    const EXT: &str = "npy";
    for i in 0..4000 {
        let seed = &seeds[i % seeds.len()];
        let (what, bytes) = if rng.random_bool(0.5) {
            mutate_bytes(&mut rng, seed)
        } else {
            mutate_npy_header(&mut rng, seed)
        };
        let path = fresh_file(dir.path(), i, EXT, &bytes);
        c.run(&format!("case {i} ({what})"), || {
            let ok = match read_npy(&path) {
                Ok(t) => {
                    let count = if t.shape.contains(&0) {
                        Some(0)
                    } else {
                        t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
                    };
                    assert_eq!(count, Some(t.data.len()));
                    true
                }
                Err(_) => false,
            };
            let _ = read_input(&path, 6);
            if let Ok(layers) = load_dense_layers(&path, &[], None) {
                assert_eq!(layers[0].weights.len(), layers[0].rows * layers[0].cols);
            }
            ok
        });
    }
    c.finish(4000);
}

fn safetensors_seed() -> Vec<u8> {
    let w: Vec<f32> = (0..24).map(|i| (i as f32 - 11.0) * 0.25).collect();
    let w2: Vec<u8> = (0..12)
        .flat_map(|i| half::bf16::from_f32(i as f32 * 0.5 - 3.0).to_le_bytes())
        .collect();
    let tensors: Vec<OwnedTensor> = vec![
        ("fc1.weight".into(), Dtype::F32, vec![4, 6], f32_bytes(&w)),
        (
            "fc1.bias".into(),
            Dtype::F32,
            vec![4],
            f32_bytes(&[0.5, -0.5, 1.0, 0.0]),
        ),
        ("fc2.weight".into(), Dtype::BF16, vec![3, 4], w2),
        (
            "fc2.bias".into(),
            Dtype::F64,
            vec![3],
            [1.0f64, 2.0, 3.0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
    ];
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn mutated_safetensors_files_give_layers_or_a_typed_error() {
    let seed = safetensors_seed();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut c = Campaign::new(".safetensors files");
    const EXT: &str = "safetensors";
    let config = CompressConfig {
        density: 0.5,
        bits: 3,
        pes: 2,
        ..CompressConfig::default()
    };
    for i in 0..4000 {
        let (what, bytes) = if rng.random_bool(0.5) {
            mutate_bytes(&mut rng, &seed)
        } else {
            mutate_container_header(&mut rng, &seed)
        };
        let path = fresh_file(dir.path(), i, EXT, &bytes);
        c.run(&format!("case {i} ({what})"), || {
            if let Ok(f) = SafetensorsFile::open(&path) {
                for n in f.names() {
                    let _ = f.tensor(&n);
                }
            }
            match load_dense_layers(&path, &[], None) {
                Ok(layers) => {
                    let compressed: eie::Result<Vec<EieLayer>> = layers
                        .iter()
                        .map(|l| compress_layer(l, &config, Activation::Relu))
                        .collect();
                    // Layers that do not chain are a typed error too.
                    if let Ok(model) = compressed.and_then(Model::new) {
                        exercise_model(model).unwrap();
                    }
                    true
                }
                Err(_) => false,
            }
        });
    }
    c.finish(4000);
}

/// A valid version-3 file: an LSTM (5 inputs, 4 hidden units, 4 PEs), a GRU without bias
/// (2 PEs) and a fully-connected layer.
fn recurrent_seed() -> Vec<u8> {
    let dense =
        |name: &str, rows, cols, bias, seed| eie::synth::dense_layer(name, rows, cols, bias, seed);
    let stages = vec![
        DenseStage::Recurrent(
            DenseRecurrent::new(
                "lstm.l0".into(),
                CellKind::Lstm,
                dense("lstm.weight_ih_l0", 16, 5, true, 1),
                dense("lstm.weight_hh_l0", 16, 4, true, 2),
            )
            .unwrap(),
        ),
        DenseStage::Recurrent(
            DenseRecurrent::new(
                "gru".into(),
                CellKind::Gru,
                dense("gru.weight_ih", 12, 4, false, 3),
                dense("gru.weight_hh", 12, 4, false, 4),
            )
            .unwrap(),
        ),
        DenseStage::Fc(dense("fc.weight", 3, 4, true, 5)),
    ];
    let mut plan = eie::compress::CompressPlan::default();
    plan.set_from_list(eie::compress::Setting::Density, "0.6")
        .unwrap();
    plan.set_from_list(
        eie::compress::Setting::Pes,
        "lstm.weight_ih_l0=4,lstm.weight_hh_l0=4,gru.weight_ih=2,gru.weight_hh=2,fc.weight=3",
    )
    .unwrap();
    let model = compress_stages(&stages, &plan, &[Activation::Identity], false).unwrap();
    canonical(&sequence_to_bytes(&model).unwrap())
}

/// Applies `edit` to the `model` JSON of a file, keeping everything else.
fn edit_model_json(bytes: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let (mut header, data) = split_container(bytes);
    let meta = header["__metadata__"].as_object_mut().unwrap();
    let mut model: Value = serde_json::from_str(meta["model"].as_str().unwrap()).unwrap();
    edit(&mut model);
    meta.insert("model".into(), json!(model.to_string()));
    join_container(&header, &data)
}

#[test]
fn recurrent_headers_that_do_not_fit_are_corrupt_files() {
    let seed = recurrent_seed();
    let model = sequence_from_bytes(&seed).unwrap();
    assert_eq!(model.stages().len(), 3);
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "kind missing",
            Box::new(|m| {
                m["layers"][2].as_object_mut().unwrap().remove("kind");
            }),
        ),
        (
            "unknown kind",
            Box::new(|m| m["layers"][4]["kind"] = json!("conv")),
        ),
        (
            "hh first",
            Box::new(|m| m["layers"][0]["kind"] = json!("lstm_hh")),
        ),
        (
            "ih without hh",
            Box::new(|m| m["layers"][1]["kind"] = json!("lstm_ih")),
        ),
        (
            "mixed cell kinds",
            Box::new(|m| m["layers"][1]["kind"] = json!("gru_hh")),
        ),
        (
            "stage names differ",
            Box::new(|m| m["layers"][1]["stage"] = json!("other")),
        ),
        (
            "stage missing",
            Box::new(|m| {
                m["layers"][3].as_object_mut().unwrap().remove("stage");
            }),
        ),
        (
            "stage on fc",
            Box::new(|m| m["layers"][4]["stage"] = json!("fc")),
        ),
        (
            "fc as a gate matrix",
            Box::new(|m| {
                m["layers"][4]["kind"] = json!("gru_ih");
                m["layers"][4]["stage"] = json!("x");
            }),
        ),
        (
            "gate matrix as fc",
            Box::new(|m| {
                m["layers"][0]["kind"] = json!("fc");
                m["layers"][0].as_object_mut().unwrap().remove("stage");
            }),
        ),
        (
            "relu on a gate matrix",
            Box::new(|m| m["layers"][1]["activation"] = json!("relu")),
        ),
        (
            "input_frac in version 3",
            Box::new(|m| {
                m["input_frac"] = json!(10);
                for l in m["layers"].as_array_mut().unwrap() {
                    l["output_frac"] = json!(10);
                }
            }),
        ),
        (
            "last matrix dropped",
            Box::new(|m| {
                m["layers"].as_array_mut().unwrap().pop();
            }),
        ),
    ];
    for (what, edit) in cases {
        let bytes = edit_model_json(&seed, edit);
        match sequence_from_bytes(&bytes) {
            Err(Error::CorruptModel(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
        assert!(from_bytes(&bytes).is_err(), "{what}");
    }
    // A gate matrix over a PE count that does not divide H is refused where every loaded
    // recurrent layer is built.
    let Stage::Recurrent(lstm) = &model.stages()[0] else {
        panic!()
    };
    assert!(matches!(
        eie::format::RecurrentLayer::new(
            "x",
            CellKind::Lstm,
            lstm.ih().clone(),
            lstm.hh().with_pes(3).unwrap()
        ),
        Err(Error::InvalidArgument(m)) if m.contains("divide")
    ));
    // A version-2 file with version 3's fields, and a version-3 header on a version-2 file.
    let v2 = canonical(&to_bytes(&eie::Model::new(vec![lstm.hh().clone()]).unwrap()).unwrap());
    let bytes = edit_model_json(&v2, |m| m["layers"][0]["kind"] = json!("fc"));
    assert!(matches!(
        sequence_from_bytes(&bytes),
        Err(Error::CorruptModel(_))
    ));
    let (mut header, data) = split_container(&v2);
    header["__metadata__"]["format_version"] = json!("3");
    let bytes = join_container(&header, &data);
    assert!(matches!(
        sequence_from_bytes(&bytes),
        Err(Error::CorruptModel(_))
    ));
    header["__metadata__"]["format_version"] = json!("4");
    let bytes = join_container(&header, &data);
    assert!(matches!(
        sequence_from_bytes(&bytes),
        Err(Error::UnsupportedVersion { .. })
    ));
}

/// Everything a loaded sequence model is used for must work: the engine in f32 and f16 over a
/// short sequence, the oracle, saving.
fn exercise_sequence(model: SequenceModel) -> eie::Result<()> {
    let n = model.input_size();
    let x: Vec<f32> = (0..3 * n).map(|i| ((i % 7) as f32 - 2.0) * 0.25).collect();
    sequence_to_bytes(&model)?;
    let state = eie::recurrent::SequenceState::zeros(&model);
    let (oracle, _) = SequenceOracle::new(&model)?.run(&x, 3, &state)?;
    assert_eq!(oracle.len(), 3 * model.output_size());
    for precision in [Precision::F32, Precision::F16] {
        let engine = SequenceEngine::new(model.clone(), precision)?;
        let y = engine.run(&x, 3, &mut engine.zero_state());
        // Weights a mutation made huge may overflow the state to infinity: a typed error.
        match y {
            Ok(y) => assert_eq!(y.len(), oracle.len()),
            Err(Error::NonFinite { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[test]
fn mutated_recurrent_model_files_give_a_model_that_runs_or_a_typed_error() {
    let seed = recurrent_seed();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut c = Campaign::new("recurrent model files");
    for i in 0..4000 {
        let (what, bytes) = match rng.random_range(0..4) {
            0 => mutate_bytes(&mut rng, &seed),
            1 => mutate_container_header(&mut rng, &seed),
            2 => mutate_model_json(&mut rng, &seed),
            _ => mutate_tensor_data(&mut rng, &seed),
        };
        c.run(&format!("case {i} ({what})"), || {
            let _ = from_bytes(&bytes);
            match sequence_from_bytes(&bytes) {
                Ok(model) => {
                    exercise_sequence(model).unwrap();
                    true
                }
                Err(_) => false,
            }
        });
    }
    c.finish(4000);
}

/// A repeated JSON key anywhere in a model file — the container header, its `__metadata__`,
/// the `model` and `crc32` values — is a corrupt file, whichever value comes first: readers
/// keeping the first or the last value would otherwise see two different models.
#[test]
fn repeated_json_keys_are_corrupt_files() {
    let seed = &model_seeds()[0];
    assert!(from_bytes(seed).is_ok());
    let (header, data) = split_container(seed);
    let text = header.to_string();
    let meta = header["__metadata__"].as_object().unwrap();
    let model = meta["model"].as_str().unwrap();
    let crc = meta["crc32"].as_str().unwrap();
    // Each case: the header's text with one key repeated (the original value kept last, so a
    // last-wins parser alone would accept it).
    let first_tensor = header
        .as_object()
        .unwrap()
        .keys()
        .find(|k| *k != "__metadata__")
        .unwrap()
        .clone();
    let tensor_json = header[&first_tensor].to_string();
    let repeat = |inner_old: &str, inner_new: String| -> String {
        assert!(text.contains(inner_old), "{inner_old}");
        text.replacen(inner_old, &inner_new, 1)
    };
    let model_dup = {
        let m: Value = serde_json::from_str(model).unwrap();
        let first = m.as_object().unwrap().keys().next().unwrap().clone();
        format!("{{\"{first}\":0,{}", &model[1..])
    };
    let crc_dup = {
        let c: Value = serde_json::from_str(crc).unwrap();
        let first = c.as_object().unwrap().keys().next().unwrap().clone();
        format!("{{\"{first}\":0,{}", &crc[1..])
    };
    let cases = [
        (
            "a tensor entry",
            repeat(
                &format!("\"{first_tensor}\":"),
                format!("\"{first_tensor}\":{tensor_json},\"{first_tensor}\":"),
            ),
        ),
        (
            "__metadata__ format",
            repeat(
                "\"__metadata__\":{",
                "\"__metadata__\":{\"format\":\"x\",".into(),
            ),
        ),
        (
            "__metadata__ itself",
            repeat(
                "\"__metadata__\":",
                "\"__metadata__\":{},\"__metadata__\":".into(),
            ),
        ),
        (
            "a key of `model`",
            text.replacen(
                &serde_json::to_string(model).unwrap(),
                &serde_json::to_string(&model_dup).unwrap(),
                1,
            ),
        ),
        (
            "a key of `crc32`",
            text.replacen(
                &serde_json::to_string(crc).unwrap(),
                &serde_json::to_string(&crc_dup).unwrap(),
                1,
            ),
        ),
    ];
    for (what, header_text) in cases {
        assert_ne!(header_text, text, "{what}: the case changed the header");
        let mut bytes = (header_text.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header_text.as_bytes());
        bytes.extend_from_slice(&data);
        // The container's own parser names `__metadata__` repeated a duplicate field.
        let m = corrupt_message(from_bytes(&bytes));
        assert!(
            m.contains("duplicate key") || m.contains("duplicate field"),
            "{what}: {m}"
        );
    }
}

// What a reader must reject (docs/FORMAT.md): one test per rule below, each mutating a valid
// file the crate wrote, with a control that the unmutated (or canonically edited) file loads.

/// The tensors of a container's header, ordered by where their bytes begin: (name, begin, end).
fn tensor_ranges(header: &Value) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, t)| {
            let o = &t["data_offsets"];
            (k.clone(), o[0].as_u64().unwrap(), o[1].as_u64().unwrap())
        })
        .collect();
    v.sort_by_key(|t| (t.1, t.2));
    v
}

/// Moves the byte ranges of the tensors from the `k`-th (by offset) on by `delta` bytes.
fn shift_ranges(header: &mut Value, from: usize, delta: i64) {
    for (name, b, e) in tensor_ranges(header).into_iter().skip(from) {
        header[&name]["data_offsets"] = json!([b as i64 + delta, e as i64 + delta]);
    }
}

/// The header's text edited by `edit`, with the header length rewritten to match.
fn edit_header_text(bytes: &[u8], edit: impl FnOnce(String) -> String) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let text = edit(String::from_utf8(bytes[8..8 + n].to_vec()).unwrap());
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// The text of the `model` metadata value edited by `edit` (a text edit, so that spellings a
/// JSON serialiser would not write can be made).
fn edit_model_text(bytes: &[u8], edit: impl FnOnce(&str) -> String) -> Vec<u8> {
    let (mut header, data) = split_container(bytes);
    let model = header["__metadata__"]["model"]
        .as_str()
        .unwrap()
        .to_string();
    let edited = edit(&model);
    assert_ne!(edited, model, "the edit changed nothing");
    header["__metadata__"]["model"] = json!(edited);
    join_container(&header, &data)
}

/// One tensor's bytes edited by `edit`, its checksum fixed (and, for a U8 tensor, its shape
/// `[bytes]`): only the validation of its content can object.
fn edit_tensor(bytes: &[u8], name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let mut meta: HashMap<String, String> = meta.metadata().clone().unwrap();
    let mut crc: BTreeMap<String, u32> = serde_json::from_str(&meta["crc32"]).unwrap();
    let mut owned: Vec<OwnedTensor> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    let t = owned
        .iter_mut()
        .find(|t| t.0 == name)
        .expect("tensor exists");
    edit(&mut t.3);
    if t.1 == Dtype::U8 {
        t.2 = vec![t.3.len()];
    }
    crc.insert(name.to_string(), crc32fast::hash(&t.3));
    meta.insert("crc32".into(), serde_json::to_string(&crc).unwrap());
    container(&owned, meta)
}

fn sequence_corrupt_message(r: eie::Result<SequenceModel>) -> String {
    match r {
        Err(Error::CorruptModel(m)) => m,
        other => panic!("expected a corrupt-model error, got {other:?}"),
    }
}

/// The tensors' byte ranges tile the data section: no hole (before the first tensor or
/// between two), no overlap, no byte after the last tensor, and each range holds exactly
/// its shape's elements.
#[test]
fn tensor_byte_ranges_must_tile_the_data_section() {
    let seed = &model_seeds()[0];
    let (header, data) = split_container(seed);
    let ranges = tensor_ranges(&header);
    // The first two tensors (F32, written first) have at least 4 bytes each.
    assert!(ranges[0].2 - ranges[0].1 >= 4 && ranges[1].2 - ranges[1].1 >= 4);
    // Control: the ranges and bytes rebuilt unchanged load.
    let mut same = header.clone();
    shift_ranges(&mut same, 0, 0);
    assert!(from_bytes(&join_container(&same, &data)).is_ok());
    let hole = |k: usize| {
        let mut h = header.clone();
        shift_ranges(&mut h, k, 4);
        let at = ranges[k].1 as usize;
        let mut d = data[..at].to_vec();
        d.extend_from_slice(&[0; 4]);
        d.extend_from_slice(&data[at..]);
        join_container(&h, &d)
    };
    // Tensor 1 begins 4 bytes before tensor 0 ends (its checksum fixed for the bytes it now
    // covers), the tensors after it moved back to follow it.
    let overlap = {
        let mut h = header.clone();
        shift_ranges(&mut h, 1, -4);
        let (name, b, e) = ranges[1].clone();
        let (b, e) = (b as usize, e as usize);
        let mut d = data[..e - 4].to_vec();
        d.extend_from_slice(&data[e..]);
        let meta = h["__metadata__"].as_object_mut().unwrap();
        let mut crc: BTreeMap<String, u32> =
            serde_json::from_str(meta["crc32"].as_str().unwrap()).unwrap();
        crc.insert(name, crc32fast::hash(&d[b - 4..e - 4]));
        meta.insert("crc32".into(), json!(serde_json::to_string(&crc).unwrap()));
        join_container(&h, &d)
    };
    let trailing = [seed.clone(), vec![0; 4]].concat();
    // A range one element short of its shape, the rest of the file unchanged.
    let short = {
        let mut h = header.clone();
        let name = &ranges[0].0;
        let n = h[name]["shape"][0].as_u64().unwrap();
        h[name]["shape"] = json!([n - 1]);
        join_container(&h, &data)
    };
    for (what, bytes, want) in [
        ("hole before the first tensor", hole(0), "invalid offset"),
        ("hole between tensors", hole(1), "invalid offset"),
        ("overlap", overlap, "invalid offset"),
        ("bytes after the last tensor", trailing, "not fully covered"),
        (
            "range longer than its shape",
            short,
            "not a valid safetensors",
        ),
    ] {
        let m = corrupt_message(from_bytes(&bytes));
        assert!(
            m.contains("not a valid safetensors container") && m.contains(want),
            "{what}: {m}"
        );
    }
}

/// The container header is a JSON object from its first byte, followed by nothing but spaces.
#[test]
fn container_header_must_begin_with_a_brace_and_end_in_spaces() {
    let seed = &model_seeds()[0];
    // Control: spaces after the object (as safetensors writers pad the header) load.
    assert!(from_bytes(&edit_header_text(seed, |t| t + "        ")).is_ok());
    for (what, bytes, want) in [
        (
            "leading space",
            edit_header_text(seed, |t| format!(" {t}")),
            "does not begin with `{`",
        ),
        (
            "leading newline",
            edit_header_text(seed, |t| format!("\n{t}")),
            "does not begin with `{`",
        ),
        (
            "trailing newline",
            edit_header_text(seed, |t| t + "\n"),
            "other than spaces",
        ),
        (
            "trailing tab",
            edit_header_text(seed, |t| t + "   \t   "),
            "other than spaces",
        ),
    ] {
        let m = corrupt_message(from_bytes(&bytes));
        assert!(m.contains(want), "{what}: {m}");
    }
}

/// Every JSON object of the file has a closed set of keys: the container header (tensor names
/// and `__metadata__`), a tensor's entry, `__metadata__`, `model`, a layer, `crc32`.
#[test]
fn unknown_keys_are_corrupt_files() {
    let seed = &model_seeds()[0];
    assert!(from_bytes(seed).is_ok());
    let (header, data) = split_container(seed);
    let first = tensor_ranges(&header)[0].0.clone();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut h = header.clone();
        f(&mut h);
        join_container(&h, &data)
    };
    type Edit<'a> = &'a dyn Fn(&mut Value);
    let cases: [(&str, Edit, &str); 7] = [
        (
            "a key in a tensor's entry",
            &|h| h[&first]["note"] = json!("x"),
            "key `note` in its header entry",
        ),
        (
            "a key in __metadata__",
            &|h| h["__metadata__"]["comment"] = json!("x"),
            "metadata key `comment`",
        ),
        (
            "an empty tensor nobody describes",
            &|h| h["extra"] = json!({"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}),
            "tensors and",
        ),
        (
            "a key of the header that is not a tensor",
            &|h| h["comment"] = json!("x"),
            "not a valid safetensors container",
        ),
        (
            "a key in `model`",
            &|h| {
                let m = h["__metadata__"]["model"].as_str().unwrap();
                let mut m: Value = serde_json::from_str(m).unwrap();
                m["comment"] = json!("x");
                h["__metadata__"]["model"] = json!(m.to_string());
            },
            "unknown field `comment`",
        ),
        (
            "a key in a layer",
            &|h| {
                let m = h["__metadata__"]["model"].as_str().unwrap();
                let mut m: Value = serde_json::from_str(m).unwrap();
                m["layers"][1]["dropout"] = json!(0);
                h["__metadata__"]["model"] = json!(m.to_string());
            },
            "unknown field `dropout`",
        ),
        (
            "a checksum of no tensor",
            &|h| {
                let c = h["__metadata__"]["crc32"].as_str().unwrap();
                let mut c: Value = serde_json::from_str(c).unwrap();
                c["layers.9.codebook"] = json!(0);
                h["__metadata__"]["crc32"] = json!(c.to_string());
            },
            "checksums",
        ),
    ];
    for (what, f, want) in cases {
        let m = corrupt_message(from_bytes(&with(f)));
        assert!(m.contains(want), "{what}: {m}");
    }
}

/// `format_version` is the decimal version exactly: another spelling of 1, 2 or 3 is an
/// unknown version, as any other string.
#[test]
fn non_canonical_versions_are_unsupported() {
    let seeds = model_seeds();
    for (seed, version) in [(&seeds[0], "2"), (&seeds[1], "1"), (&recurrent_seed(), "3")] {
        let (mut header, data) = split_container(seed);
        assert_eq!(header["__metadata__"]["format_version"], version);
        assert!(sequence_from_bytes(seed).is_ok());
        for found in [
            format!("0{version}"),
            format!("+{version}"),
            format!("{version}.0"),
            format!(" {version}"),
            format!("{version} "),
            format!("{version}\n"),
            format!("v{version}"),
            String::new(),
        ] {
            header["__metadata__"]["format_version"] = json!(found);
            match sequence_from_bytes(&join_container(&header, &data)) {
                Err(Error::UnsupportedVersion {
                    found: f,
                    supported,
                }) => {
                    assert_eq!((f.as_str(), supported), (found.as_str(), 3));
                }
                other => panic!("version {found:?}: {other:?}"),
            }
        }
    }
}

/// An integer is a JSON number without sign, fraction or exponent: `40.0`, `4e1` and `-0` are
/// not integers, wherever an integer is required (`model`, `crc32`, the container header).
#[test]
fn integers_must_be_written_as_integers() {
    // A model stating its fixed16 formats, one of them 0, so that `-0` is a case of its own.
    let seed = edit_model_json(&model_seeds()[0], |m| {
        m["input_frac"] = json!(0);
        for l in m["layers"].as_array_mut().unwrap() {
            l["output_frac"] = json!(10);
        }
    });
    assert_eq!(from_bytes(&seed).unwrap().input_frac(), 0);
    let model: Value = {
        let (h, _) = split_container(&seed);
        serde_json::from_str(h["__metadata__"]["model"].as_str().unwrap()).unwrap()
    };
    let rows = model["layers"][0]["rows"].as_u64().unwrap();
    let rows_field = format!("\"rows\":{rows}");
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for spelling in [
        format!("{rows}.0"),
        format!("{}e1", rows as f64 / 10.0),
        format!("{rows}e0"),
        format!("\"{rows}\""),
    ] {
        let bytes = edit_model_text(&seed, |m| {
            m.replacen(&rows_field, &format!("\"rows\":{spelling}"), 1)
        });
        cases.push((format!("rows {spelling}"), bytes));
    }
    for spelling in ["-0", "0.0", "-0.0", "0e0"] {
        let bytes = edit_model_text(&seed, |m| {
            m.replacen("\"input_frac\":0", &format!("\"input_frac\":{spelling}"), 1)
        });
        cases.push((format!("input_frac {spelling}"), bytes));
    }
    // A checksum, a shape and a data offset written as floats.
    let (header, data) = split_container(&seed);
    let name = tensor_ranges(&header)[1].0.clone();
    let crc_text = header["__metadata__"]["crc32"]
        .as_str()
        .unwrap()
        .to_string();
    let crc: BTreeMap<String, u32> = serde_json::from_str(&crc_text).unwrap();
    let mut h = header.clone();
    let entry = format!("\"{name}\":{}", crc[&name]);
    assert!(crc_text.contains(&entry));
    h["__metadata__"]["crc32"] = json!(crc_text.replacen(&entry, &format!("{entry}.0"), 1));
    cases.push(("a checksum".into(), join_container(&h, &data)));
    let mut h = header.clone();
    let n = h[&name]["shape"][0].as_u64().unwrap();
    h[&name]["shape"] = json!([n as f64]);
    cases.push(("a shape".into(), join_container(&h, &data)));
    let mut h = header.clone();
    let (b, e) = (tensor_ranges(&header)[1].1, tensor_ranges(&header)[1].2);
    h[&name]["data_offsets"] = json!([b as f64, e]);
    cases.push(("a data offset".into(), join_container(&h, &data)));
    for (what, bytes) in cases {
        let m = corrupt_message(from_bytes(&bytes));
        assert!(
            m.contains("invalid type") || m.contains("not a valid safetensors container"),
            "{what}: {m}"
        );
    }
}

/// An optional field is absent or has a value of its type: `null` is not "absent". Each case
/// is a file that loads with the field absent (its control), and must not with it `null`.
#[test]
fn optional_fields_are_absent_not_null() {
    let seeds = model_seeds();
    // The crate states the fixed16 formats in every file it writes; without them all, a
    // `null` format would read as a file that states none.
    let no_formats = |m: &mut Value| {
        m.as_object_mut().unwrap().remove("input_frac");
        for l in m["layers"].as_array_mut().unwrap() {
            l.as_object_mut().unwrap().remove("output_frac");
        }
    };
    // (field, seed, where the field goes: the model object or layer 0, each layer)
    let cases: [(&str, &[u8], bool); 5] = [
        ("input_frac", &seeds[0], false),
        ("output_frac", &seeds[0], true),
        ("len_bits", &seeds[1], true), // a version-1 file: no `len_bits`
        ("kind", &seeds[0], true),
        ("stage", &seeds[0], true),
    ];
    for (field, seed, in_layers) in cases {
        let set = |value: Option<Value>| {
            edit_model_json(seed, |m| {
                no_formats(m);
                let objects: Vec<&mut Value> = if in_layers {
                    m["layers"].as_array_mut().unwrap().iter_mut().collect()
                } else {
                    vec![m]
                };
                for o in objects {
                    let o = o.as_object_mut().unwrap();
                    match &value {
                        Some(v) => o.insert(field.to_string(), v.clone()),
                        None => o.remove(field),
                    };
                }
            })
        };
        assert!(from_bytes(&set(None)).is_ok(), "{field} absent");
        let m = corrupt_message(from_bytes(&set(Some(Value::Null))));
        // serde_json says "invalid type: null" for a number or string, "expected value" for
        // `kind`'s enumeration.
        assert!(
            m.contains("`model` is not valid")
                && (m.contains("invalid type: null") || m.contains("expected value")),
            "{field}: {m}"
        );
    }
}

/// Codebook entry 0 (padding) is +0.0, all four bytes zero; -0.0 compares equal to it but is
/// refused. Elsewhere (other codebook entries, bias) -0.0 is a value like any other.
#[test]
fn codebook_entry_zero_must_be_positive_zero() {
    let seed = &model_seeds()[0];
    let negative_zero = (-0.0f32).to_le_bytes();
    let b = edit_tensor(seed, "layers.0.codebook", |d| {
        d[..4].copy_from_slice(&negative_zero)
    });
    let m = corrupt_message(from_bytes(&b));
    assert!(m.contains("codebook entry 0 is -0.0"), "{m}");
    // The same value is refused when a layer is made from codes.
    let codes = SparseCodes::from_dense(1, 1, &[1]).unwrap();
    assert!(matches!(
        EieLayer::encode(&codes, vec![-0.0, 1.0, 2.0, 3.0], 2, 1, None, Activation::Relu),
        Err(Error::CorruptModel(m)) if m.contains("+0.0")
    ));
    let b = edit_tensor(seed, "layers.0.codebook", |d| {
        d[4..8].copy_from_slice(&negative_zero)
    });
    let b = edit_tensor(&b, "layers.0.bias", |d| {
        d[..4].copy_from_slice(&negative_zero)
    });
    let model = from_bytes(&b).unwrap();
    assert_eq!(
        model.layers()[0].codebook()[1].to_bits(),
        (-0.0f32).to_bits()
    );
    assert_eq!(
        model.layers()[0].bias().unwrap()[0].to_bits(),
        (-0.0f32).to_bits()
    );
}

/// Two-byte entries (`bits > 4`) fill the entries tensor exactly, and U8 tensors of any length
/// (`entries`, `col_len`) have one dimension, `[bytes]`.
#[test]
fn entries_are_whole_and_one_dimensional() {
    let seeds = model_seeds();
    let six = &seeds[2];
    assert_eq!(from_bytes(six).unwrap().layers()[0].bits(), 6);
    let b = edit_tensor(six, "layers.0.entries", |d| d.push(0x01));
    let m = corrupt_message(from_bytes(&b));
    assert!(m.contains("odd entry byte count"), "{m}");
    // The same bytes under a two-dimensional shape, a U16 dtype, and (version 1) a
    // two-dimensional shape of the column pointers' U32.
    let (header, data) = split_container(six);
    let reshaped = |name: &str, dtype: &str, shape: Value| {
        let mut h = header.clone();
        h[name]["dtype"] = json!(dtype);
        h[name]["shape"] = shape;
        join_container(&h, &data)
    };
    let n = header["layers.0.entries"]["shape"][0].as_u64().unwrap();
    assert_eq!(n % 2, 0);
    let c = header["layers.0.col_len"]["shape"][0].as_u64().unwrap();
    for (what, bytes, want) in [
        (
            "entries [n / 2, 2]",
            reshaped("layers.0.entries", "U8", json!([n / 2, 2])),
            "expected U8 [n]",
        ),
        (
            "entries [1, n]",
            reshaped("layers.0.entries", "U8", json!([1, n])),
            "expected U8 [n]",
        ),
        (
            "entries as U16",
            reshaped("layers.0.entries", "U16", json!([n / 2])),
            "expected U8 [n]",
        ),
        (
            "col_len [c, 1]",
            reshaped("layers.0.col_len", "U8", json!([c, 1])),
            "expected U8 [n]",
        ),
    ] {
        let m = corrupt_message(from_bytes(&bytes));
        assert!(m.contains(want), "{what}: {m}");
    }
}

/// A model has at least one layer, in every version.
#[test]
fn models_without_layers_are_corrupt_files() {
    let seeds = model_seeds();
    for (seed, version) in [(&seeds[0], "2"), (&seeds[1], "1"), (&recurrent_seed(), "3")] {
        let (header, _) = split_container(seed);
        let mut meta = header["__metadata__"].clone();
        assert_eq!(meta["format_version"], version);
        let mut model: Value = serde_json::from_str(meta["model"].as_str().unwrap()).unwrap();
        model["layers"] = json!([]);
        model.as_object_mut().unwrap().remove("input_frac");
        meta["model"] = json!(model.to_string());
        meta["crc32"] = json!("{}");
        let bytes = join_container(&json!({ "__metadata__": meta }), &[]);
        assert!(
            corrupt_message(from_bytes(&bytes)).contains("no layers"),
            "{version}"
        );
        let m = sequence_corrupt_message(sequence_from_bytes(&bytes));
        assert!(m.contains("no layers"), "{version}: {m}");
    }
}

/// The rules whose other tests are random mutations or elsewhere, each broken once here: the
/// container's framing, the metadata keys and their values, the shapes of `model` and `crc32`,
/// the tensors a header calls for, value types, `bits`, a non-finite bias, entries.
#[test]
fn each_remaining_rule_has_a_case() {
    let seeds = model_seeds();
    let seed = &seeds[0]; // version 2, 4-bit codebooks, bias on layer 0 only
    let model = from_bytes(seed).unwrap();
    assert!(model.layers()[0].bias().is_some() && model.layers()[1].bias().is_none());
    let (header, data) = split_container(seed);
    let header_edit = |f: &dyn Fn(&mut Value)| {
        let mut h = header.clone();
        f(&mut h);
        join_container(&h, &data)
    };
    let meta_edit = |key: &'static str, value: Value| {
        header_edit(&move |h| h["__metadata__"][key] = value.clone())
    };
    let layer_edit = |k: usize, field: &'static str, value: Value| {
        edit_model_json(seed, |m| m["layers"][k][field] = value)
    };
    let with_length = |n: u64| [&n.to_le_bytes()[..], &seed[8..]].concat();
    let not_utf8 = {
        let at = seed.windows(10).position(|w| w == b"fc1.weight").unwrap();
        let mut b = seed.clone();
        b[at] = 0xff;
        b
    };
    let removed = |key: &'static str| {
        header_edit(&move |h| {
            h["__metadata__"].as_object_mut().unwrap().remove(key);
        })
    };
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        // 1
        ("7 bytes", seed[..7].to_vec(), "not a valid safetensors"),
        (
            "header past the end",
            with_length(seed.len() as u64),
            "not a valid",
        ),
        (
            "header of 10^8 + 1 bytes",
            with_length(100_000_001),
            "too large",
        ),
        ("header not UTF-8", not_utf8, "invalid UTF-8"),
        (
            "header an array",
            edit_header_text(seed, |_| "[]".into()),
            "not a valid safetensors",
        ),
        // 6
        (
            "no format",
            removed("format"),
            "without the `format` metadata key",
        ),
        (
            "no format_version",
            removed("format_version"),
            "`format_version` missing",
        ),
        ("no model", removed("model"), "`model` missing"),
        ("no crc32", removed("crc32"), "`crc32` missing"),
        (
            "a number",
            meta_edit("format_version", json!(2)),
            "not a valid safetensors",
        ),
        // 7
        (
            "format EIE",
            meta_edit("format", json!("EIE")),
            "is `EIE`, expected `eie`",
        ),
        // 9
        (
            "model an array",
            meta_edit("model", json!("[]")),
            "`model` is not valid",
        ),
        (
            "model without layers",
            meta_edit("model", json!("{}")),
            "missing field `layers`",
        ),
        (
            "crc32 an array",
            meta_edit("crc32", json!("[]")),
            "`crc32` is not valid",
        ),
        (
            "a checksum of 2^32",
            header_edit(&|h| {
                let c = h["__metadata__"]["crc32"].as_str().unwrap();
                let mut c: Value = serde_json::from_str(c).unwrap();
                c["layers.0.codebook"] = json!(1u64 << 32);
                h["__metadata__"]["crc32"] = json!(c.to_string());
            }),
            "`crc32` is not valid",
        ),
        // 10
        (
            "a bias tensor too many",
            layer_edit(0, "bias", json!(false)),
            "tensors and",
        ),
        (
            "a bias tensor missing",
            layer_edit(1, "bias", json!(true)),
            "tensors and",
        ),
        // 15
        (
            "activation tanh",
            layer_edit(0, "activation", json!("tanh")),
            "unknown variant",
        ),
        (
            "bias a string",
            layer_edit(0, "bias", json!("true")),
            "invalid type",
        ),
        (
            "name a number",
            layer_edit(0, "name", json!(3)),
            "invalid type",
        ),
        // 18
        ("bits 9", layer_edit(0, "bits", json!(9)), "bits 9"),
        ("bits 1", layer_edit(0, "bits", json!(1)), "bits 1"),
        // 21
        (
            "a NaN bias",
            edit_tensor(seed, "layers.0.bias", |d| {
                d[4..8].copy_from_slice(&f32::NAN.to_le_bytes())
            }),
            "non-finite",
        ),
        // 24: a padding entry with z = 3; a padding entry alone in its column
        (
            "padding with a run of 3",
            edit_tensor(seed, "layers.0.entries", |d| d[0] = 3 << 4),
            "malformed padding",
        ),
    ];
    assert_eq!(model.layers()[0].pe(0).column(0).len(), 1);
    cases.push((
        "padding at the end of a column",
        edit_tensor(seed, "layers.0.entries", |d| d[0] = 15 << 4),
        "malformed padding",
    ));
    // 24: a run above 15 (two-byte entries: `v` then `z`)
    cases.push((
        "a run of 16",
        edit_tensor(&seeds[2], "layers.0.entries", |d| d[1] = 16),
        "zero run 16 exceeds 15",
    ));
    for (what, bytes, want) in cases {
        let m = corrupt_message(from_bytes(&bytes));
        assert!(m.contains(want), "{what}: {m}");
    }
}
