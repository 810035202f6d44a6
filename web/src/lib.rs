//! The wasm module of the browser page (`web/index.html`): an EIE model run by the `eie`
//! library on the browser's WebGPU, or on its CPU engine (one thread) where the browser has no
//! WebGPU. Built for `wasm32-unknown-unknown` by `web/build.sh`; on other targets the crate is
//! empty.
//!
//! The page fetches the model file and the test set as they are (the same bytes as native),
//! hands them to [`Classifier::create`] and [`npy_values`] / [`npy_labels`], and runs batches
//! with [`Classifier::run`].

#![cfg(target_arch = "wasm32")]

use eie::gpu::{wgpu, DeviceOptions};
use eie::{Device, Engine, EngineDevice, Model, Precision};
use wasm_bindgen::prelude::*;

fn js_error(e: eie::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// One row of the page's layer table, as `eie info` prints it.
#[derive(serde::Serialize)]
struct LayerRow {
    name: String,
    rows: usize,
    cols: usize,
    density: f64,
    bits: u8,
    pes: usize,
    activation: &'static str,
    dense_bytes: usize,
    compressed_bytes: usize,
    ratio: f64,
}

fn layer_rows(model: &Model) -> Vec<LayerRow> {
    model
        .layers()
        .iter()
        .map(|l| LayerRow {
            name: l.name().to_string(),
            rows: l.rows(),
            cols: l.cols(),
            density: l.density(),
            bits: l.bits(),
            pes: l.pes(),
            activation: l.activation().name(),
            dense_bytes: l.dense_bytes(),
            compressed_bytes: l.compressed_bytes(),
            ratio: l.dense_bytes() as f64 / l.compressed_bytes().max(1) as f64,
        })
        .collect()
}

/// A model on an engine: the browser's GPU through WebGPU, or the CPU engine.
#[wasm_bindgen]
pub struct Classifier {
    engine: Engine,
    fallback: Option<String>,
    layers: String,
}

#[wasm_bindgen]
impl Classifier {
    /// Parses and validates `model` (a model file's bytes) and builds an f32 engine on it.
    /// `backend` is `"webgpu"` (the browser's WebGPU adapter; when the browser has none, or it
    /// fails to open, the CPU engine, and [`fallback`](Self::fallback) says why) or `"cpu"`
    /// (the CPU engine). A corrupt model or an unknown backend rejects the promise.
    pub async fn create(model: Vec<u8>, backend: String) -> Result<Classifier, JsError> {
        let model = Model::from_bytes(&model).map_err(js_error)?;
        let layers = serde_json::to_string(&layer_rows(&model))
            .map_err(|e| JsError::new(&format!("layer table: {e}")))?;
        let builder = Engine::builder(model.clone()).precision(Precision::F32);
        let (engine, fallback) = match backend.as_str() {
            "cpu" => (builder.device(Device::Cpu).build().map_err(js_error)?, None),
            "webgpu" => {
                let options = DeviceOptions {
                    backend: Some(wgpu::Backends::BROWSER_WEBGPU),
                    ..DeviceOptions::default()
                };
                match builder.device(Device::Gpu(options)).build_async().await {
                    Ok(engine) => (engine, None),
                    Err(e) => {
                        let cpu = Engine::builder(model)
                            .precision(Precision::F32)
                            .device(Device::Cpu)
                            .build()
                            .map_err(js_error)?;
                        (cpu, Some(e.to_string()))
                    }
                }
            }
            other => {
                return Err(JsError::new(&format!(
                    "unknown backend `{other}`: expected `webgpu` or `cpu`"
                )))
            }
        };
        Ok(Classifier {
            engine,
            fallback,
            layers,
        })
    }

    /// The backend that runs: `"webgpu"` or `"cpu"`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        if self.engine.device().is_gpu() {
            "webgpu".into()
        } else {
            "cpu".into()
        }
    }

    /// What runs the model, in words: the WebGPU adapter's name and backend, or the CPU engine
    /// and its thread count.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        match self.engine.device() {
            EngineDevice::Gpu {
                adapter, backend, ..
            } if adapter.is_empty() => format!("unnamed adapter ({backend})"),
            EngineDevice::Gpu {
                adapter, backend, ..
            } => format!("{adapter} ({backend})"),
            EngineDevice::Cpu { threads, .. } => {
                format!("eie CPU engine, {threads} thread(s), wasm32")
            }
        }
    }

    /// Why WebGPU was asked for and the CPU engine runs instead; `undefined` otherwise.
    #[wasm_bindgen(getter)]
    pub fn fallback(&self) -> Option<String> {
        self.fallback.clone()
    }

    /// The engine's name (kernel and precision).
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.engine.id().to_string()
    }

    /// Values per input (784 for MNIST's 28×28 pixels).
    #[wasm_bindgen(getter, js_name = inputSize)]
    pub fn input_size(&self) -> usize {
        self.engine.input_size()
    }

    /// Values per output (10 classes).
    #[wasm_bindgen(getter, js_name = outputSize)]
    pub fn output_size(&self) -> usize {
        self.engine.output_size()
    }

    /// The model's layers as a JSON array of `{name, rows, cols, density, bits, pes,
    /// activation, dense_bytes, compressed_bytes, ratio}`.
    #[wasm_bindgen(getter)]
    pub fn layers(&self) -> String {
        self.layers.clone()
    }

    /// Runs `batch` inputs held row after row in `input`; resolves to their outputs
    /// (`batch × outputSize` values, a `Float32Array`). A wrong length, a non-finite input or
    /// a device error rejects the promise.
    pub fn run(&self, input: Vec<f32>, batch: usize) -> js_sys::Promise {
        let run = self.engine.run_async(input, batch);
        wasm_bindgen_futures::future_to_promise(async move {
            let out = run.await.map_err(js_error)?;
            Ok(js_sys::Float32Array::from(out.as_slice()).into())
        })
    }
}

/// The values of a 2-D `.npy` file's bytes, row after row: u8 pixels scaled to `pixel / 255`
/// (the network's input), floats as they are. `name` names the file in errors.
#[wasm_bindgen(js_name = npyValues)]
pub fn npy_values(bytes: &[u8], name: &str) -> Result<Vec<f32>, JsError> {
    eie::classify::images_from_bytes(bytes, name)
        .map(|(_, _, values)| values)
        .map_err(js_error)
}

/// The labels in a 1-D integer `.npy` file's bytes, each below `classes`.
#[wasm_bindgen(js_name = npyLabels)]
pub fn npy_labels(bytes: &[u8], name: &str, classes: usize) -> Result<Vec<u32>, JsError> {
    let labels = eie::classify::labels_from_bytes(bytes, name, classes).map_err(js_error)?;
    Ok(labels.into_iter().map(|l| l as u32).collect())
}
