//! `eie serve` (the library's `eie::serve`): the Open Inference Protocol over REST and gRPC on
//! the committed LeNet-300-100 model, checked against the engine run on each input alone and
//! against `eie run`; every kind of bad request answered with the protocol's error while the
//! server keeps serving; overload; graceful shutdown by `Server::stop` and by SIGTERM.

use eie::batching::BatchConfig;
use eie::serve::proto::*;
use eie::serve::{Backend, ModelSpec, ServeConfig, Server, HEADER_LENGTH};
use eie::{Device, Engine, Inputs};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;
use tonic::codegen::http::uri::PathAndQuery;

mod common;
use common::fixtures::{lenet, lenet_asset as asset};

/// The first `n` committed test images, scaled to 0..=1.
fn images(n: usize) -> Vec<f32> {
    let (_, width, pixels) = eie::classify::read_images(&asset("test-images.npy")).unwrap();
    pixels[..n * width].to_vec()
}

/// The CPU engine's answer for each input run alone.
fn alone(x: &[f32]) -> Vec<f32> {
    let engine = Engine::builder(lenet())
        .device(Device::Cpu)
        .build()
        .unwrap();
    x.chunks(784)
        .flat_map(|row| engine.run(Inputs::one(row)).unwrap().into_vec())
        .collect()
}

fn config(batch: BatchConfig) -> ServeConfig {
    let mut c = ServeConfig::new(vec![ModelSpec::new("lenet", lenet())]);
    c.http = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    c.grpc = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    c.backend = Backend::Cpu;
    c.batch = batch;
    c.max_body = 1 << 20;
    c
}

fn batching() -> BatchConfig {
    BatchConfig {
        max_batch: 16,
        max_delay: Duration::from_millis(2),
        queue_capacity: 256,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// An HTTP answer: status, headers' inference length, body.
struct Answer {
    status: u16,
    header_length: Option<usize>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        let n = self.header_length.unwrap_or(self.body.len());
        serde_json::from_slice(&self.body[..n])
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap().to_string()
    }
}

fn get(addr: SocketAddr, path: &str) -> Answer {
    let mut r = agent().get(format!("http://{addr}{path}")).call().unwrap();
    Answer {
        status: r.status().as_u16(),
        header_length: None,
        body: r.body_mut().read_to_vec().unwrap(),
    }
}

fn post(addr: SocketAddr, path: &str, body: &[u8], json_len: Option<usize>) -> Answer {
    let mut req = agent().post(format!("http://{addr}{path}"));
    if let Some(n) = json_len {
        req = req.header(HEADER_LENGTH, n.to_string());
    }
    let mut r = req.send(body).unwrap();
    let header_length = r
        .headers()
        .get(HEADER_LENGTH)
        .map(|v| v.to_str().unwrap().parse().unwrap());
    Answer {
        status: r.status().as_u16(),
        header_length,
        body: r
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .unwrap(),
    }
}

fn infer_json(addr: SocketAddr, x: &[f32], batch: usize) -> Answer {
    let body = json!({
        "id": "req-1",
        "inputs": [{"name": "input", "shape": [batch, 784], "datatype": "FP32", "data": x}],
    });
    post(
        addr,
        "/v2/models/lenet/infer",
        body.to_string().as_bytes(),
        None,
    )
}

fn le_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn from_le(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// A binary-extension request: JSON header, then the input's bytes.
fn infer_binary(addr: SocketAddr, datatype: &str, raw: &[u8], shape: &[usize]) -> Answer {
    let header = json!({
        "inputs": [{"name": "input", "shape": shape, "datatype": datatype,
                    "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "output", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = header.as_bytes().to_vec();
    body.extend_from_slice(raw);
    post(addr, "/v2/models/lenet/infer", &body, Some(header.len()))
}

fn binary_output(a: &Answer) -> Vec<f32> {
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let n = a
        .header_length
        .expect("a binary answer has Inference-Header-Content-Length");
    let h = a.json();
    assert_eq!(
        h["outputs"][0]["parameters"]["binary_data_size"].as_u64(),
        Some((a.body.len() - n) as u64)
    );
    from_le(&a.body[n..])
}

async fn grpc_call<Req, Resp>(
    addr: SocketAddr,
    method: &'static str,
    req: Req,
) -> Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20);
    client.ready().await.unwrap();
    let path = PathAndQuery::from_static(method);
    client
        .unary(
            tonic::Request::new(req),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .map(|r| r.into_inner())
}

fn infer_request(datatype: &str, shape: Vec<i64>, raw: Vec<u8>) -> ModelInferRequest {
    ModelInferRequest {
        model_name: "lenet".into(),
        id: "g-1".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: datatype.into(),
            shape,
            ..Default::default()
        }],
        raw_input_contents: vec![raw],
        ..Default::default()
    }
}

const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

#[test]
fn metadata_health_and_bit_exact_answers_on_every_transport() {
    let rt = runtime();
    let server = rt.block_on(Server::start(config(batching()))).unwrap();
    let (h, g) = (server.http_addr().unwrap(), server.grpc_addr().unwrap());

    assert_eq!(get(h, "/v2/health/live").status, 200);
    assert_eq!(get(h, "/v2/health/ready").status, 200);
    assert_eq!(get(h, "/v2/models/lenet/ready").status, 200);
    assert_eq!(get(h, "/v2/models/lenet/versions/1/ready").status, 200);
    let meta = get(h, "/v2/models/lenet").json();
    assert_eq!(meta["platform"], "eie");
    assert_eq!(
        meta["inputs"][0],
        json!({"name": "input", "datatype": "FP32", "shape": [-1, 784]})
    );
    assert_eq!(
        meta["outputs"][0],
        json!({"name": "output", "datatype": "FP32", "shape": [-1, 10]})
    );
    assert_eq!(
        get(h, "/v2").json()["extensions"],
        json!(["binary_tensor_data"])
    );

    let x = images(12);
    let want = alone(&x);

    // JSON: numbers round-trip exactly through their decimal form.
    let a = infer_json(h, &x, 12);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let j = a.json();
    assert_eq!(j["id"], "req-1");
    assert_eq!(j["outputs"][0]["shape"], json!([12, 10]));
    let got: Vec<f32> = j["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(
        got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );

    // Binary extension, one flat input.
    let a = infer_binary(h, "FP32", &le_bytes(&x[..784]), &[784]);
    assert_eq!(a.json()["outputs"][0]["shape"], json!([10]));
    assert_eq!(binary_output(&a), want[..10]);

    // gRPC: server calls, then inference through raw contents and typed contents.
    rt.block_on(async {
        let live: ServerLiveResponse = grpc_call(
            g,
            "/inference.GRPCInferenceService/ServerLive",
            ServerLiveRequest {},
        )
        .await
        .unwrap();
        assert!(live.live);
        let m: ModelMetadataResponse = grpc_call(
            g,
            "/inference.GRPCInferenceService/ModelMetadata",
            ModelMetadataRequest {
                name: "lenet".into(),
                version: String::new(),
            },
        )
        .await
        .unwrap();
        assert_eq!(
            (m.inputs[0].shape.clone(), m.outputs[0].shape.clone()),
            (vec![-1, 784], vec![-1, 10])
        );
        let r: ModelInferResponse =
            grpc_call(g, INFER, infer_request("FP32", vec![12, 784], le_bytes(&x)))
                .await
                .unwrap();
        assert_eq!(r.id, "g-1");
        assert_eq!(r.outputs[0].shape, vec![12, 10]);
        assert_eq!(from_le(&r.raw_output_contents[0]), want);
        let mut typed = infer_request("FP32", vec![12, 784], vec![]);
        typed.raw_input_contents.clear();
        typed.inputs[0].contents = Some(InferTensorContents {
            fp32_contents: x.clone(),
            ..Default::default()
        });
        let r: ModelInferResponse = grpc_call(g, INFER, typed).await.unwrap();
        assert_eq!(from_le(&r.raw_output_contents[0]), want);
    });

    // FP16 and UINT8 are widened as `eie run` reads them.
    let halves: Vec<half::f16> = x[..784].iter().map(|&v| half::f16::from_f32(v)).collect();
    let widened: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
    let raw16: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
    assert_eq!(
        binary_output(&infer_binary(h, "FP16", &raw16, &[1, 784])),
        alone(&widened)
    );
    let bytes: Vec<u8> = x[..784]
        .iter()
        .map(|&v| (v * 255.0).round() as u8)
        .collect();
    let ints: Vec<f32> = bytes.iter().map(|&b| b as f32).collect();
    assert_eq!(
        binary_output(&infer_binary(h, "UINT8", &bytes, &[1, 784])),
        alone(&ints)
    );

    let metrics = String::from_utf8(get(h, "/metrics").body).unwrap();
    for m in [
        "eie_requests_total{model=\"lenet\",protocol=\"http\"}",
        "eie_requests_total{model=\"lenet\",protocol=\"grpc\"}",
        "eie_batch_size_bucket",
        "eie_queue_depth",
        "eie_inferences_total{model=\"lenet\"}",
        "eie_device_info{",
        "eie_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(m), "/metrics lacks {m}:\n{metrics}");
    }
    server.stop();
    rt.block_on(server.wait()).unwrap();
}

#[test]
fn the_answer_is_what_eie_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let x = images(5);
    let input = dir.path().join("x.npy");
    let output = dir.path().join("y.npy");
    eie::import::write_npy(&input, &[5, 784], &x).unwrap();
    let model = asset("lenet-300-100.eie.safetensors");
    let out = common::eie(&[
        "run",
        common::s(&model),
        "--input",
        common::s(&input),
        "--output",
        common::s(&output),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = eie::import::read_npy(&output).unwrap().data;

    let rt = runtime();
    let server = rt.block_on(Server::start(config(batching()))).unwrap();
    let h = server.http_addr().unwrap();
    // Sent one by one from several threads, so that they share batches with each other.
    let got: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = x
            .chunks(784)
            .map(|row| {
                s.spawn(move || binary_output(&infer_binary(h, "FP32", &le_bytes(row), &[1, 784])))
            })
            .collect();
        handles.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(got.concat(), want);
    server.stop();
    rt.block_on(server.wait()).unwrap();
}

#[test]
fn bad_requests_get_the_protocols_errors_and_cost_nothing_else() {
    let rt = runtime();
    let server = rt.block_on(Server::start(config(batching()))).unwrap();
    let (h, g) = (server.http_addr().unwrap(), server.grpc_addr().unwrap());
    let x = images(1);
    let want = alone(&x);
    let good = |body: &Value| -> Vec<u8> { body.to_string().into_bytes() };
    let input = |name: &str, shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]});
    let mut nan = x.clone();
    nan[3] = f32::NAN;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"inputs\": [".to_vec(),
            400,
            "malformed",
        ),
        (
            "wrong tensor name",
            good(&input("pixels", json!([1, 784]), "FP32", json!(x))),
            400,
            "no input `pixels`",
        ),
        (
            "wrong shape",
            good(&input("input", json!([1, 783]), "FP32", json!(x[..783]))),
            400,
            "shape [1, 783]",
        ),
        (
            "wrong dtype",
            good(&input(
                "input",
                json!([1, 784]),
                "INT64",
                json!(vec![1; 784]),
            )),
            400,
            "INT64",
        ),
        (
            "too few values",
            good(&input("input", json!([2, 784]), "FP32", json!(x))),
            400,
            "needs 1568",
        ),
        (
            "batch over the limit",
            good(&input(
                "input",
                json!([17, 784]),
                "FP32",
                json!(vec![0.0; 17 * 784]),
            )),
            400,
            "at most 16",
        ),
        (
            "UINT8 out of range",
            good(&input(
                "input",
                json!([1, 784]),
                "UINT8",
                json!(vec![300; 784]),
            )),
            400,
            "UINT8",
        ),
        (
            "no data",
            good(&json!({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32"}]})),
            400,
            "no `data`",
        ),
        (
            "wrong output",
            good(
                &json!({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": x}], "outputs": [{"name": "probs"}]}),
            ),
            400,
            "no output `probs`",
        ),
        (
            "body over the limit",
            vec![b' '; (1 << 20) + 1],
            413,
            "limit",
        ),
    ];
    for (what, body, status, message) in &cases {
        let a = post(h, "/v2/models/lenet/infer", body, None);
        assert_eq!(
            a.status,
            *status,
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
        let e = a.error();
        assert!(e.contains(message), "{what}: `{e}` lacks `{message}`");
        assert!(!e.contains('\n'), "{what}: one line: {e}");
    }
    // NaN travels only in binary form.
    let a = infer_binary(h, "FP32", &le_bytes(&nan), &[1, 784]);
    assert_eq!(a.status, 400);
    assert!(a.error().contains("flat index 3"), "{}", a.error());
    let a = infer_binary(h, "FP32", &le_bytes(&x[..700]), &[1, 784]);
    assert_eq!(a.status, 400, "short binary data");
    let a = post(
        h,
        "/v2/models/resnet/infer",
        &good(&input("input", json!([1, 784]), "FP32", json!(x))),
        None,
    );
    assert_eq!(
        (a.status, a.error().contains("no model `resnet`")),
        (404, true)
    );
    assert_eq!(get(h, "/v2/models/lenet/versions/7").status, 404);
    assert_eq!(get(h, "/v2/nowhere").status, 404);

    rt.block_on(async {
        let code = |r: Result<ModelInferResponse, tonic::Status>| r.unwrap_err().code();
        let mut wrong_model = infer_request("FP32", vec![1, 784], le_bytes(&x));
        wrong_model.model_name = "resnet".into();
        assert_eq!(
            code(grpc_call(g, INFER, wrong_model).await),
            tonic::Code::NotFound
        );
        assert_eq!(
            code(
                grpc_call(
                    g,
                    INFER,
                    infer_request("FP32", vec![1, 784], le_bytes(&nan))
                )
                .await
            ),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(grpc_call(g, INFER, infer_request("BF16", vec![1, 784], le_bytes(&x))).await),
            tonic::Code::InvalidArgument
        );
        let huge = infer_request("FP32", vec![1, 784], vec![0; 2 << 20]);
        assert_eq!(
            code(grpc_call(g, INFER, huge).await),
            tonic::Code::ResourceExhausted
        );
        // Bytes that are not a protobuf message.
        let garbage: Result<ModelInferResponse, _> = grpc_call(
            g,
            INFER,
            InferTensorContents {
                bytes_contents: vec![vec![0xff; 64]],
                ..Default::default()
            },
        )
        .await;
        assert!(garbage.is_err());
    });

    // Good and bad requests at once: every good one is answered correctly.
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for i in 0..24 {
            let xs = &x;
            let nan = &nan;
            handles.push(s.spawn(move || {
                if i % 3 == 0 {
                    let a = infer_binary(h, "FP32", &le_bytes(nan), &[1, 784]);
                    assert_eq!(a.status, 400);
                    None
                } else {
                    Some(binary_output(&infer_binary(
                        h,
                        "FP32",
                        &le_bytes(xs),
                        &[1, 784],
                    )))
                }
            }));
        }
        for t in handles {
            if let Some(y) = t.join().unwrap() {
                assert_eq!(y, want);
            }
        }
    });
    let metrics = String::from_utf8(get(h, "/metrics").body).unwrap();
    assert!(metrics.contains(
        "eie_request_failures_total{model=\"lenet\",protocol=\"http\",reason=\"bad_request\"}"
    ));
    assert!(metrics
        .contains("eie_request_failures_total{model=\"\",protocol=\"grpc\",reason=\"not_found\"}"));
    server.stop();
    rt.block_on(server.wait()).unwrap();
}

#[test]
fn a_full_queue_is_unavailable_at_once() {
    let rt = runtime();
    let tight = BatchConfig {
        max_batch: 8,
        max_delay: Duration::from_millis(1),
        queue_capacity: 4,
    };
    let server = rt.block_on(Server::start(config(tight))).unwrap();
    let (h, g) = (server.http_addr().unwrap(), server.grpc_addr().unwrap());
    // Eight inputs in one request cannot all queue behind a capacity of four.
    let x = images(8);
    let a = infer_binary(h, "FP32", &le_bytes(&x), &[8, 784]);
    assert_eq!(a.status, 503, "{}", String::from_utf8_lossy(&a.body));
    let r: Result<ModelInferResponse, _> = rt.block_on(grpc_call(
        g,
        INFER,
        infer_request("FP32", vec![8, 784], le_bytes(&x)),
    ));
    assert_eq!(r.unwrap_err().code(), tonic::Code::Unavailable);
    // And the server still answers what fits.
    assert_eq!(
        binary_output(&infer_binary(
            h,
            "FP32",
            &le_bytes(&x[..4 * 784]),
            &[4, 784]
        )),
        alone(&x[..4 * 784])
    );
    server.stop();
    rt.block_on(server.wait()).unwrap();
}

#[test]
fn stop_answers_every_accepted_request() {
    let rt = runtime();
    let slow = BatchConfig {
        max_batch: 64,
        max_delay: Duration::from_millis(300),
        queue_capacity: 256,
    };
    let server = rt.block_on(Server::start(config(slow))).unwrap();
    let h = server.http_addr().unwrap();
    let x = images(1);
    let want = alone(&x);
    let stopper = server.stopper();
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..8)
            .map(|_| s.spawn(|| binary_output(&infer_binary(h, "FP32", &le_bytes(&x), &[1, 784]))))
            .collect();
        // The requests are waiting for their batch (300 ms) when the server is told to stop.
        std::thread::sleep(Duration::from_millis(100));
        stopper.stop();
        for c in clients {
            assert_eq!(c.join().unwrap(), want);
        }
    });
    rt.block_on(server.wait()).unwrap();
    assert!(
        std::net::TcpStream::connect(h).is_err(),
        "still listening after stop"
    );
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let model = asset("lenet-300-100.eie.safetensors");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eie"))
        .args([
            "serve",
            "--model",
            &format!("lenet={}", model.display()),
            "--http",
            "127.0.0.1:0",
            "--grpc",
            "127.0.0.1:0",
            "--backend",
            "cpu",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let http: SocketAddr = loop {
        let line = lines
            .next()
            .expect("eie serve printed its start line")
            .unwrap();
        log.push_str(&line);
        log.push('\n');
        if let Some(rest) = line.strip_prefix("eie serve: started, HTTP on ") {
            break rest.split(',').next().unwrap().parse().unwrap();
        }
    };
    assert!(log.contains("loaded model `lenet`"), "{log}");
    let x = images(2);
    assert_eq!(
        binary_output(&infer_binary(http, "FP32", &le_bytes(&x), &[2, 784])),
        alone(&x)
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(status.success(), "exit {status}: {}", rest.join("\n"));
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("eie serve: stopped")),
        "{rest:?}"
    );
}

/// Two engines on the same adapter stand in for two GPUs: requests spread over both, and every
/// answer matches the CPU engine's within f32 rounding of a different summation order.
#[test]
fn requests_spread_over_the_engines_of_several_devices() {
    let required = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("EIE_REQUIRE_GPU").is_ok_and(|v| v == "1");
    let Some(index) = eie::gpu::list_adapters()
        .iter()
        .position(|a| a.backend == "vulkan")
    else {
        assert!(
            !required,
            "a Vulkan adapter is required here (CI / EIE_REQUIRE_GPU)"
        );
        eprintln!("GPU serve test skipped: no Vulkan adapter");
        return;
    };
    let rt = runtime();
    let mut c = config(batching());
    c.backend = Backend::Gpu;
    c.devices = eie::serve::Devices::List(vec![index, index]);
    let server = rt.block_on(Server::start(c)).unwrap();
    assert_eq!(server.models()[0].engines.len(), 2);
    assert!(
        server.models()[0].engines[0].0.starts_with("gpu-"),
        "{:?}",
        server.models()
    );
    let h = server.http_addr().unwrap();
    let x = images(48);
    let want = alone(&x);
    std::thread::scope(|s| {
        let handles: Vec<_> = x
            .chunks(784)
            .map(|row| {
                s.spawn(move || binary_output(&infer_binary(h, "FP32", &le_bytes(row), &[1, 784])))
            })
            .collect();
        for (t, w) in handles.into_iter().zip(want.chunks(10)) {
            let y = t.join().unwrap();
            for (a, b) in y.iter().zip(w) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{y:?} vs {w:?}");
            }
        }
    });
    let metrics = String::from_utf8(get(h, "/metrics").body).unwrap();
    let per_replica: Vec<u64> = (0..2)
        .map(|r| {
            let key = format!("eie_replica_inferences_total{{model=\"lenet\",replica=\"{r}\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .map_or(0, |v| v.trim().parse().unwrap())
        })
        .collect();
    assert_eq!(per_replica.iter().sum::<u64>(), 48, "{metrics}");
    assert!(
        per_replica.iter().all(|&n| n > 0),
        "both engines served: {per_replica:?}"
    );
    server.stop();
    rt.block_on(server.wait()).unwrap();
}
