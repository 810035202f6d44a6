//! The GPU test context, shared by the GPU test files.

use eie::gpu::{wgpu, DeviceOptions, GpuContext};
use std::io::Write;
use std::sync::{Arc, OnceLock};

/// The shared context, or `None` (after one line on the terminal saying why and how to get
/// lavapipe) when this machine has no adapter. Where a GPU is required (`CI=true` or
/// `EIE_REQUIRE_GPU=1`, as `.ci/run` sets) a missing adapter, or one that is not Vulkan (wgpu
/// falls back to OpenGL silently when the Vulkan packages are missing), fails the tests.
pub fn gpu() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    CTX.get_or_init(|| {
        let required = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
            || std::env::var("EIE_REQUIRE_GPU").is_ok_and(|v| v == "1");
        let ctx = match GpuContext::new(&DeviceOptions::default()) {
            Ok(ctx) => ctx,
            Err(e) if !required => {
                // Written past the test harness's capture, so it shows in `cargo test`.
                let _ = writeln!(
                    std::io::stderr(),
                    "GPU tests skipped: no GPU adapter ({e}); on Debian/Ubuntu \
                     `apt-get install libvulkan1 mesa-vulkan-drivers` provides lavapipe"
                );
                return None;
            }
            Err(e) => panic!("a GPU adapter is required here (CI / EIE_REQUIRE_GPU): {e}"),
        };
        let info = ctx.adapter_info();
        let _ = writeln!(
            std::io::stderr(),
            "GPU tests on `{}` ({:?}), timestamps {}",
            info.name,
            info.backend,
            ctx.has_timestamps()
        );
        assert!(
            !required || info.backend == wgpu::Backend::Vulkan,
            "adapter `{}` is {:?}, not Vulkan: install the Vulkan loader and lavapipe",
            info.name,
            info.backend
        );
        Some(ctx)
    })
    .clone()
}
