//! Scratch files for the importer targets: the importers read files, so each input goes to a
//! new file in one scratch folder per process, removed after the run (rewriting one file in
//! place makes some filesystems flush it on every close).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// A scratch file holding `data`, named with `extension`, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(data: &[u8], extension: &str) -> Scratch {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder"));
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path = dir.path().join(format!("{n}.{extension}"));
        std::fs::write(&path, data).expect("scratch file is writable");
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
