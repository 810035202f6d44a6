//! On a machine without any GPU driver the library says so with a typed error, and the CPU
//! engine runs. The test re-runs itself in a child process whose Vulkan drivers (ICD manifests)
//! and EGL vendors are hidden, so it holds on any machine, lavapipe or a real GPU included.
#![cfg(feature = "gpu")]

use eie::gpu::{DeviceOptions, EngineOptions, GpuContext};
use eie::{Activation, Device, Engine, Error, Model, Precision};
use std::process::Command;

const TEST: &str = "without_a_gpu_driver_the_gpu_is_a_typed_error_and_the_cpu_runs";
const CHILD: &str = "EIE_TEST_NO_GPU_CHILD";

mod common;

/// One seeded random 32 x 48 layer with a bias and a ReLU, compressed to 30 % over 4 PEs.
fn model() -> Model {
    let config = common::fixtures::config(0.3, 4, 4);
    let fc = common::fixtures::compressed_layer("fc", 32, 48, true, 3, &config, Activation::Relu);
    Model::new(vec![fc]).unwrap()
}

/// What the child checks, with every driver hidden.
fn without_drivers() {
    let e = GpuContext::new(&DeviceOptions::default()).expect_err("no adapter without drivers");
    assert!(matches!(e, Error::NoAdapter(_)), "{e:?}");
    assert!(
        eie::gpu::list_adapters().is_empty(),
        "{:?}",
        eie::gpu::list_adapters()
    );
    let m = model();
    assert!(matches!(
        eie::gpu::gpu_backends(&m).err(),
        Some(Error::NoAdapter(_))
    ));
    let gpu = || {
        Engine::builder(m.clone())
            .device(Device::Gpu(DeviceOptions::default()))
            .gpu_options(EngineOptions::default())
    };
    assert!(matches!(gpu().build().err(), Some(Error::NoAdapter(_))));
    #[cfg(feature = "async")]
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let r = rt.block_on(gpu().build_async());
        assert!(matches!(r.err(), Some(Error::NoAdapter(_))));
    }
    // `Device::Auto` falls back to the CPU engine and says why; the CPU engine needs no
    // driver.
    let auto = Engine::builder(m.clone()).build().unwrap();
    let d = auto.device().to_string();
    assert!(!auto.device().is_gpu() && d.contains("no GPU taken"), "{d}");
    let x = eie::synth::activations(48, 0.5, 1);
    let y = Engine::builder(m.clone())
        .precision(Precision::F32)
        .device(Device::Cpu)
        .build()
        .unwrap()
        .run(&x)
        .unwrap();
    assert_eq!((y.batch(), y.width()), (1, 32));
    assert_eq!(auto.run(&x).unwrap(), y);
}

#[test]
fn without_a_gpu_driver_the_gpu_is_a_typed_error_and_the_cpu_runs() {
    if std::env::var_os(CHILD).is_some() {
        return without_drivers();
    }
    // A manifest path that does not exist: the Vulkan loader (both its current and its legacy
    // variable) and glvnd's EGL then find no driver.
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("none.json");
    let o = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("VK_DRIVER_FILES", &none)
        .env("VK_ICD_FILENAMES", &none)
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", &none)
        .env_remove("VK_ADD_DRIVER_FILES")
        .env_remove("WGPU_BACKEND")
        .env_remove("WGPU_ADAPTER_NAME")
        .output()
        .expect("the test binary runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{log}");
    assert!(log.contains("1 passed"), "the child ran no test: {log}");
}
