//! Any bytes as a `.npy` file: a typed error, or a tensor whose shape matches its data.
#![no_main]

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
    let path = dir.path().join(format!("{n}.npy"));
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
    if let Ok(t) = eie::import::read_npy(path) {
        let count = if t.shape.contains(&0) {
            Some(0)
        } else {
            t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
        };
        assert_eq!(count, Some(t.data.len()));
    }
    if let Ok((batch, values)) = eie::import::read_input(path, 4) {
        assert_eq!(batch * 4, values.len());
    }
    if let Ok(layers) = eie::import::load_dense_layers(path, &[], None) {
        assert_eq!(layers[0].weights.len(), layers[0].rows * layers[0].cols);
    }
});
