//! Every WGSL kernel parses and validates with naga under the default capabilities (no GPU
//! needed), as the module the backend compiles (shared prelude + the kernel's file); each file
//! in `shaders/` is one kernel with one compute entry point named after it, and its workgroup
//! memory fits the WebGPU default of 16 KiB.
#![cfg(feature = "gpu")]

use eie::gpu::kernels;
use std::path::Path;

fn shader_files() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn every_kernel_validates_with_naga() {
    let mut names: Vec<String> = kernels::ALL.iter().map(|k| k.name.to_string()).collect();
    names.sort();
    assert_eq!(shader_files(), names, "one kernel per file in shaders/");
    for kernel in kernels::ALL {
        let src = kernel.module_source();
        let file = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("shaders")
                .join(format!("{}.wgsl", kernel.name)),
        )
        .unwrap();
        assert_eq!(
            kernel.source, file,
            "{} is built from its file",
            kernel.name
        );
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", kernel.name, e.emit_to_string(&src)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::default(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", kernel.name, e.emit_to_string(&src)));
        let entries: Vec<_> = module.entry_points.iter().map(|e| e.name.clone()).collect();
        assert_eq!(entries, vec![kernel.name.to_string()], "{}", kernel.name);
        assert_eq!(module.entry_points[0].stage, naga::ShaderStage::Compute);
        let bytes: u32 = module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
            .map(|(_, v)| module.types[v.ty].inner.size(module.to_ctx()))
            .sum();
        assert!(
            bytes <= 16384,
            "{}: {bytes} bytes of workgroup memory",
            kernel.name
        );
    }
}

#[test]
fn the_shared_prelude_declares_no_entry_point() {
    let module = naga::front::wgsl::parse_str(kernels::EIE_COMMON).unwrap();
    assert!(module.entry_points.is_empty());
}
