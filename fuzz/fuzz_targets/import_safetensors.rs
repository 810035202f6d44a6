//! Any bytes as a `.safetensors` weights file: a typed error, or dense layers that compress
//! and run.
#![no_main]

use eie::compress::{compress_layer, CompressConfig};
use eie::{Activation, CpuEngine, Model, Precision};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The importers read files. Each input goes to a new file in one scratch folder per
/// process, removed after the run: rewriting one file in place makes some filesystems flush
/// it on every close.
fn scratch_file(data: &[u8]) -> Scratch {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder"));
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let path = dir.path().join(format!("{n}.safetensors"));
    std::fs::write(&path, data).expect("scratch file is writable");
    Scratch(path)
}

/// A scratch file, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fuzz_target!(|data: &[u8]| {
    let file = scratch_file(data);
    let path = &file.0;
    if let Ok(f) = eie::import::SafetensorsFile::open(path) {
        for name in f.names() {
            let _ = f.tensor(&name);
        }
    }
    let Ok(layers) = eie::import::load_dense_layers(path, &[], None) else {
        return;
    };
    let config = CompressConfig {
        density: 0.5,
        bits: 3,
        pes: 2,
        ..CompressConfig::default()
    };
    let compressed: eie::Result<Vec<_>> = layers
        .iter()
        .map(|l| compress_layer(l, &config, Activation::Relu))
        .collect();
    if let Ok(model) = compressed.and_then(Model::new) {
        let x = vec![0.5f32; model.input_size()];
        let y = CpuEngine::new(model.clone())
            .run(&x, Precision::F32)
            .expect("a compressed model runs");
        assert_eq!(y.len(), model.output_size());
    }
});
