//! Every WGSL kernel in `shaders/` parses and validates with naga under the default
//! capabilities (no GPU needed), and declares one compute entry point named after its file.

use std::path::Path;

fn shader_files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_kernel_validates_with_naga() {
    let files = shader_files();
    assert!(
        files.len() >= 4,
        "expected the four kernels, found {files:?}"
    );
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::default(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        let _ = info;
        let entries: Vec<_> = module.entry_points.iter().map(|e| e.name.clone()).collect();
        assert_eq!(entries, vec![stem.to_string()], "{}", path.display());
        assert_eq!(module.entry_points[0].stage, naga::ShaderStage::Compute);
        // Every workgroup-memory declaration fits the WebGPU default of 16 KiB.
        let bytes: u32 = module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
            .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
            .sum();
        assert!(
            bytes <= 16384,
            "{}: {bytes} bytes of workgroup memory",
            path.display()
        );
    }
}
