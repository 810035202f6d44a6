//! Any bytes as a `.npy` file: a typed error, or a tensor whose shape matches its data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The importers read files: one scratch file per fuzzing process.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("input.npy");
        (dir, path)
    });
    path
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("scratch file is writable");
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
