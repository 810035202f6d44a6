//! The GPU test context and harness, shared by the GPU test files.
//!
//! Those files run without libtest (`harness = false` in Cargo.toml) under [`run`], so that a
//! test that found no adapter is reported ignored, and counted as such in the summary
//! (`test result: ok. 0 passed; 0 failed; 16 ignored`), instead of passing without running.

use eie::gpu::{wgpu, DeviceOptions, GpuContext};
use std::io::Write;
use std::sync::{Arc, OnceLock};

/// Why a GPU test is reported ignored (`test name ... ignored, <this>`).
const SKIPPED: &str = "no GPU adapter: see the `GPU tests skipped` line";

/// Runs a test file's tests, each a plain `fn()`, with libtest's command line and output
/// (filters, `--exact`, `--skip`, `--list`, `--test-threads`, the summary line).
/// Each of `gpu_tests` looks for the shared context ([`gpu()`]) first and, where there is none
/// (and none is required), is reported ignored with the reason instead of running; where a GPU
/// is required (`CI=true` or `EIE_REQUIRE_GPU=1`) a missing adapter fails every one that runs.
/// `other_tests` (those of a file that need no GPU) just run. Built by [`gpu_main!`], which names
/// each test after its function as libtest would.
pub fn run(gpu_tests: &[(&'static str, fn())], other_tests: &[(&'static str, fn())]) -> ! {
    let args = libtest_mimic::Arguments::from_args();
    let gpu_trials = gpu_tests.iter().map(|&(name, test)| {
        libtest_mimic::Trial::ignorable_test(name, move || {
            if gpu().is_none() {
                return Ok(libtest_mimic::Completion::ignored_with(SKIPPED));
            }
            test();
            Ok(libtest_mimic::Completion::Completed)
        })
    });
    let other_trials = other_tests.iter().map(|&(name, test)| {
        libtest_mimic::Trial::test(name, move || {
            test();
            Ok(())
        })
    });
    libtest_mimic::run(&args, gpu_trials.chain(other_trials).collect()).exit()
}

/// `fn main` of a GPU test file: `gpu_main!(test_a, test_b, ...)` runs those functions under
/// [`run`], each named as its function, as GPU tests; `gpu_main!(gpu: [a, ...], cpu: [b, ...])`
/// runs `b`, ... as tests that need no GPU beside them.
#[allow(unused_macros)] // the test files that drive the binary include this module too
macro_rules! gpu_main {
    (gpu: [$($gpu:ident),* $(,)?], cpu: [$($cpu:ident),* $(,)?] $(,)?) => {
        fn main() {
            $crate::common::gpu::run(
                &[$((stringify!($gpu), $gpu as fn())),*],
                &[$((stringify!($cpu), $cpu as fn())),*],
            )
        }
    };
    ($($test:ident),+ $(,)?) => {
        $crate::common::gpu::gpu_main!(gpu: [$($test),+], cpu: []);
    };
}
#[allow(unused_imports)]
pub(crate) use gpu_main;

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
