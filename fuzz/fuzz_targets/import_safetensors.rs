//! Any bytes as a `.safetensors` weights file: a typed error, or dense layers that compress
//! and run.
#![no_main]

use eie::compress::{compress_layer, CompressConfig};
use eie::{Activation, CpuEngine, Model};
use libfuzzer_sys::fuzz_target;
mod scratch;

use scratch::Scratch;

fuzz_target!(|data: &[u8]| {
    let file = Scratch::new(data, "safetensors");
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
            .expect("the CPU engine takes a compressed model")
            .run(&x)
            .expect("a compressed model runs");
        assert_eq!(y.len(), model.output_size());
    }
});
