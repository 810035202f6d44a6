//! The model file: every kind of corruption is a typed error, never a panic or a bad model.

use eie::format::file::{from_bytes, to_bytes, to_bytes_v1};
use eie::{Error, Model};
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};

mod common;

/// Two seeded random layers, `fc1.weight` (40 x 12, with a bias, ReLU) and `fc2.weight` (5 x 40,
/// without), compressed to 30 % with `bits`-bit codebooks over 3 PEs.
fn small_model(bits: u8) -> Model {
    common::fixtures::compressed_model(
        &[("fc1.weight", 40, 12, true), ("fc2.weight", 5, 40, false)],
        1,
        &common::fixtures::config(0.3, bits, 3),
    )
}

/// Rewrites one tensor of a valid file (and its checksum, so only the validation can object).
fn rewrite(bytes: &[u8], name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let mut meta: HashMap<String, String> = meta.metadata().clone().unwrap();
    let mut crc: BTreeMap<String, u32> = serde_json::from_str(&meta["crc32"]).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    let t = owned
        .iter_mut()
        .find(|t| t.0 == name)
        .expect("tensor exists");
    edit(&mut t.3);
    if t.1 == safetensors::Dtype::U8 {
        t.2 = vec![t.3.len()];
    }
    crc.insert(name.to_string(), crc32fast::hash(&t.3));
    meta.insert("crc32".into(), serde_json::to_string(&crc).unwrap());
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

fn set_u32(data: &mut [u8], index: usize, value: u32) {
    data[4 * index..4 * index + 4].copy_from_slice(&value.to_le_bytes());
}

fn replace_bytes(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(
        from.len(),
        to.len(),
        "same-length patch keeps the header size"
    );
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("`{from}` not found"));
    let mut out = bytes.to_vec();
    out[at..at + from.len()].copy_from_slice(to.as_bytes());
    out
}

fn corrupt_message(bytes: &[u8]) -> String {
    match from_bytes(bytes) {
        Err(Error::CorruptModel(m)) => m,
        other => panic!("expected a corrupt-model error, got {other:?}"),
    }
}

#[test]
fn save_and_load_round_trip_on_disk() {
    let model = small_model(4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    model.save(&path).unwrap();
    assert_eq!(Model::load(&path).unwrap(), model);
    // Saving again replaces the file atomically; no temporary files are left behind.
    model.save(&path).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn missing_file_is_an_io_error() {
    assert!(matches!(
        Model::load("/nonexistent/model.safetensors"),
        Err(Error::Io { .. })
    ));
}

#[test]
fn truncated_files_are_rejected_at_every_length() {
    let bytes = to_bytes(&small_model(4)).unwrap();
    for len in (0..bytes.len()).step_by(7) {
        assert!(from_bytes(&bytes[..len]).is_err(), "accepted {len} bytes");
    }
}

#[test]
fn flipped_bytes_never_panic_and_data_flips_are_always_caught() {
    let model = small_model(4);
    let bytes = to_bytes(&model).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 8;
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        let r = from_bytes(&b);
        if i >= header_len {
            assert!(r.is_err(), "flip at data byte {i} went unnoticed");
        } else if let Ok(m) = r {
            // A flip inside a free-text field (a layer name) may still parse; the numbers may not change.
            for (x, y) in m.layers().iter().zip(model.layers()) {
                assert_eq!(x.entries(), y.entries());
                assert_eq!(x.codebook(), y.codebook());
            }
        }
    }
}

#[test]
fn wrong_version_is_reported_as_such() {
    for (bytes, old) in [
        (to_bytes(&small_model(4)).unwrap(), "2"),
        (to_bytes_v1(&small_model(4)).unwrap(), "1"),
    ] {
        for new in ["9", "0", "4"] {
            let patched = replace_bytes(
                &bytes,
                &format!("\"format_version\":\"{old}\""),
                &format!("\"format_version\":\"{new}\""),
            );
            match from_bytes(&patched) {
                Err(Error::UnsupportedVersion { found, supported }) => {
                    assert_eq!(found, new);
                    assert_eq!(supported, 3);
                }
                other => panic!("expected a version error, got {other:?}"),
            }
        }
        // Version 3 (recurrent layers) requires a `kind` per layer.
        let as_v3 = replace_bytes(
            &bytes,
            &format!("\"format_version\":\"{old}\""),
            "\"format_version\":\"3\"",
        );
        corrupt_message(&as_v3);
    }
    // A version-2 description under version 1, and the reverse, are corrupt files.
    let v2 = to_bytes(&small_model(4)).unwrap();
    let as_v1 = replace_bytes(&v2, "\"format_version\":\"2\"", "\"format_version\":\"1\"");
    corrupt_message(&as_v1);
    let v1 = to_bytes_v1(&small_model(4)).unwrap();
    let as_v2 = replace_bytes(&v1, "\"format_version\":\"1\"", "\"format_version\":\"2\"");
    corrupt_message(&as_v2);
}

#[test]
fn slice_lengths_that_disagree_with_the_entries() {
    let bytes = to_bytes(&small_model(4)).unwrap();
    // A length one larger somewhere: the lengths no longer sum to the entries.
    let b = rewrite(&bytes, "layers.0.col_len", |d| d[0] ^= 1);
    let m = corrupt_message(&b);
    assert!(m.contains("slice lengths") || m.contains("PE"), "{m}");
    // A byte more or less than pes × cols × len_bits needs.
    let b = rewrite(&bytes, "layers.0.col_len", |d| d.push(0));
    assert!(corrupt_message(&b).contains("col_len"));
    let b = rewrite(&bytes, "layers.0.col_len", |d| {
        d.pop();
    });
    assert!(corrupt_message(&b).contains("col_len"));
    // Every length at its largest value overruns the entries.
    let b = rewrite(&bytes, "layers.1.col_len", |d| d.fill(0xff));
    assert!(corrupt_message(&b).contains("exceed"));
    // A width of 0 (outside 1..=32).
    let l = small_model(4).layers()[0].len_bits();
    assert!(l < 10, "a one-digit width keeps the header's length");
    let b = replace_bytes(&bytes, &format!(r#"\"len_bits\":{l}"#), r#"\"len_bits\":0"#);
    assert!(corrupt_message(&b).contains("len_bits"));
}

#[test]
fn pointer_out_of_range() {
    let bytes = to_bytes_v1(&small_model(4)).unwrap();
    let b = rewrite(&bytes, "layers.0.col_ptr", |d| set_u32(d, 3, 1_000_000));
    assert!(corrupt_message(&b).contains("PE 0"));
    let b = rewrite(&bytes, "layers.0.pe_ptr", |d| set_u32(d, 1, u32::MAX));
    assert!(corrupt_message(&b).contains("PE pointer"));
}

#[test]
fn run_past_the_end_of_a_column() {
    let bytes = to_bytes(&small_model(4)).unwrap();
    // Make every entry's run 14 (a non-padding code keeps it a data entry): rows run out.
    let b = rewrite(&bytes, "layers.0.entries", |d| {
        for e in d.iter_mut() {
            *e = 1 | 14 << 4;
        }
    });
    assert!(corrupt_message(&b).contains("past the end"));
}

#[test]
fn codebook_index_beyond_the_codebook() {
    let bytes = to_bytes(&small_model(2)).unwrap(); // 4-entry codebook, 4-bit code field
    let b = rewrite(&bytes, "layers.1.entries", |d| d[0] = (d[0] & 0xf0) | 9);
    assert!(corrupt_message(&b).contains("beyond"));
}

#[test]
fn non_finite_codebook_and_nonzero_padding_value() {
    let bytes = to_bytes(&small_model(4)).unwrap();
    let b = rewrite(&bytes, "layers.0.codebook", |d| {
        d[4..8].copy_from_slice(&f32::NAN.to_le_bytes())
    });
    assert!(corrupt_message(&b).contains("non-finite"));
    let b = rewrite(&bytes, "layers.0.codebook", |d| {
        d[0..4].copy_from_slice(&1.0f32.to_le_bytes())
    });
    assert!(corrupt_message(&b).contains("padding"));
}

#[test]
fn shapes_that_do_not_chain_are_rejected() {
    let bytes = to_bytes_v1(&small_model(4)).unwrap();
    // Claim layer 1 takes 41 inputs: its col_ptr tensor shape no longer matches.
    let patched = replace_bytes(&bytes, r#"\"cols\":40"#, r#"\"cols\":41"#);
    assert!(corrupt_message(&patched).contains("col_ptr"));
    // In version 2, its slice lengths no longer fill `col_len`.
    let bytes = to_bytes(&small_model(4)).unwrap();
    let patched = replace_bytes(&bytes, r#"\"cols\":40"#, r#"\"cols\":41"#);
    assert!(corrupt_message(&patched).contains("col_len"));
}

#[test]
fn not_a_model_file() {
    assert!(matches!(from_bytes(b"hello"), Err(Error::CorruptModel(_))));
    // A valid safetensors file without eie metadata.
    let data = [0u8; 4];
    let v = TensorView::new(safetensors::Dtype::F32, vec![1], &data).unwrap();
    let bytes = safetensors::serialize([("x", v)], None).unwrap();
    assert!(corrupt_message(&bytes).contains("metadata"));
}
