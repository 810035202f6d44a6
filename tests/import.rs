//! Reading dense weights and inputs from .npy and .safetensors.

use eie::import::{load_dense_layers, read_input, read_npy, write_npy};
use eie::Error;
use npyz::WriterBuilder;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::Path;

fn write_npy_as<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], data: &[T]) {
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut buf)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
    std::fs::write(path, buf).unwrap();
}

fn write_safetensors(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn npy_in_f32_f16_f64() {
    let dir = tempfile::tempdir().unwrap();
    let vals = [0.5f32, -1.25, 2.0, 0.0, 3.5, -0.75];
    let p32 = dir.path().join("w32.npy");
    write_npy(&p32, &[2, 3], &vals).unwrap();
    let p16 = dir.path().join("w16.npy");
    let h: Vec<half::f16> = vals.iter().map(|&v| half::f16::from_f32(v)).collect();
    write_npy_as(&p16, &[2, 3], &h);
    let p64 = dir.path().join("w64.npy");
    let d: Vec<f64> = vals.iter().map(|&v| v as f64).collect();
    write_npy_as(&p64, &[2, 3], &d);
    for p in [&p32, &p16, &p64] {
        let t = read_npy(p).unwrap();
        assert_eq!(t.shape, [2, 3]);
        assert_eq!(t.data, vals);
        let layers = load_dense_layers(p, &[], None).unwrap();
        assert_eq!((layers[0].rows, layers[0].cols), (2, 3));
    }
}

#[test]
fn npy_unsupported_dtype_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("i.npy");
    // Integers are read as their values; complex numbers are not read at all.
    write_npy_as(&p, &[2], &[1i32, -2]);
    assert_eq!(read_npy(&p).unwrap().data, [1.0, -2.0]);
    let dict = "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }";
    let mut header = dict.to_string();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 8]);
    std::fs::write(&p, &bytes).unwrap();
    assert!(matches!(read_npy(&p), Err(Error::UnsupportedDtype { .. })));
    let g = dir.path().join("g.npy");
    std::fs::write(&g, b"not an npy file").unwrap();
    assert!(matches!(read_npy(&g), Err(Error::Parse { .. })));
    assert!(matches!(
        read_npy(&dir.path().join("missing.npy")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn npy_bias_and_nan_weights() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.npy");
    write_npy(&w, &[2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let b = dir.path().join("b.npy");
    write_npy(&b, &[2], &[0.5, -0.5]).unwrap();
    let l = load_dense_layers(&w, &[], Some(b.to_str().unwrap())).unwrap();
    assert_eq!(l[0].bias.as_deref(), Some(&[0.5, -0.5][..]));
    let bad_b = dir.path().join("b3.npy");
    write_npy(&bad_b, &[3], &[0.5, -0.5, 1.0]).unwrap();
    assert!(matches!(
        load_dense_layers(&w, &[], Some(bad_b.to_str().unwrap())),
        Err(Error::Shape(_))
    ));
    let nan = dir.path().join("nan.npy");
    write_npy(&nan, &[2, 2], &[1.0, f32::NAN, 3.0, 4.0]).unwrap();
    assert!(matches!(
        load_dense_layers(&nan, &[], None),
        Err(Error::NonFinite { index: 1, .. })
    ));
    let one_d = dir.path().join("v.npy");
    write_npy(&one_d, &[4], &[1.0; 4]).unwrap();
    assert!(matches!(
        load_dense_layers(&one_d, &[], None),
        Err(Error::Shape(_))
    ));
}

#[test]
fn safetensors_all_dtypes_multi_layer_with_biases() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    let w1: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect(); // [4, 3]
    let w2: Vec<f32> = (0..8).map(|i| 1.0 - i as f32 * 0.25).collect(); // [2, 4]
    let f32b = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let f16b = |v: &[f32]| {
        v.iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let bf16b = |v: &[f32]| {
        v.iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let f64b = |v: &[f32]| {
        v.iter()
            .flat_map(|x| (*x as f64).to_le_bytes())
            .collect::<Vec<u8>>()
    };
    write_safetensors(
        &p,
        &[
            ("fc1.weight", Dtype::F16, vec![4, 3], f16b(&w1)),
            (
                "fc1.bias",
                Dtype::BF16,
                vec![4],
                bf16b(&[1.0, 2.0, 3.0, 4.0]),
            ),
            ("fc2.weight", Dtype::F64, vec![2, 4], f64b(&w2)),
            ("fc2.bias", Dtype::F32, vec![2], f32b(&[0.5, 0.25])),
            ("steps", Dtype::I64, vec![1], vec![0; 8]),
        ],
    );
    let layers = load_dense_layers(&p, &[], None).unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0].name, "fc1.weight");
    assert_eq!(layers[0].weights, w1);
    assert_eq!(layers[0].bias.as_deref(), Some(&[1.0, 2.0, 3.0, 4.0][..]));
    assert_eq!(layers[1].weights, w2);
    assert_eq!(layers[1].bias.as_deref(), Some(&[0.5, 0.25][..]));
    // Named tensors, and an explicit bias by name.
    let only = load_dense_layers(&p, &["fc2.weight".into()], Some("fc2.bias")).unwrap();
    assert_eq!(only.len(), 1);
    assert!(matches!(
        load_dense_layers(&p, &["fc3.weight".into()], None),
        Err(Error::TensorNotFound { .. })
    ));
    assert!(matches!(
        load_dense_layers(&p, &["steps".into()], None),
        Err(Error::UnsupportedDtype { .. })
    ));
    assert!(matches!(
        load_dense_layers(&p, &[], Some("fc1.bias")),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn inputs_must_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    write_npy(&x, &[3, 4], &[0.5; 12]).unwrap();
    assert_eq!(read_input(&x, 4).unwrap().0, 3);
    assert!(matches!(read_input(&x, 5), Err(Error::Shape(_))));
    let v = dir.path().join("v.npy");
    write_npy(&v, &[4], &[0.5, f32::INFINITY, 0.0, 1.0]).unwrap();
    assert!(matches!(
        read_input(&v, 4),
        Err(Error::NonFinite { index: 1, .. })
    ));
}
