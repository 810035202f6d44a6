//! The cost of serving over the network: closed-loop clients (each sends one input, waits for
//! the answer, sends the next) against the in-process dynamic `Batcher`, and against
//! `eie::serve` (what `eie serve` runs) over gRPC and over REST with binary tensors, on
//! loopback, with the same engine and batching settings. Prints requests per second and
//! p50 / p99 latency per transport and client count, and the server's share of the in-process
//! throughput.
//!
//! ```text
//! cargo run --release --example serve_load -- [--clients 1,16,64] [--seconds 5]
//!     [--max-batch 64] [--max-delay-us 500]
//! ```
//!
//! Clients and server share the machine: on a small one the clients' own protocol work (gRPC
//! and HTTP encoding, connection handling) takes cores from the server, which the in-process
//! runs do not pay.

use eie::batching::{BatchConfig, Batcher};
use eie::serve::proto::{InferInputTensor, ModelInferRequest, ModelInferResponse};
use eie::serve::{Backend, ModelSpec, ServeConfig, Server, HEADER_LENGTH};
use eie::{Device, Engine, Model, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    clients: Vec<usize>,
    seconds: f64,
    max_batch: usize,
    max_delay: Duration,
}

fn parse() -> std::result::Result<Args, String> {
    let mut a = Args {
        clients: vec![1, 16, 64],
        seconds: 5.0,
        max_batch: 64,
        max_delay: Duration::from_micros(500),
    };
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        let v = it.next().ok_or(format!("{f} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{f} {v}: {e}");
        match f.as_str() {
            "--clients" => {
                a.clients = v
                    .split(',')
                    .map(|c| c.trim().parse::<usize>().map_err(|e| bad(&e)))
                    .collect::<std::result::Result<_, _>>()?
            }
            "--seconds" => a.seconds = v.parse().map_err(|e| bad(&e))?,
            "--max-batch" => a.max_batch = v.parse().map_err(|e| bad(&e))?,
            "--max-delay-us" => {
                a.max_delay = Duration::from_micros(v.parse().map_err(|e| bad(&e))?)
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.clients.contains(&0) || a.seconds <= 0.0 {
        return Err("client counts and --seconds must be positive".into());
    }
    Ok(a)
}

/// Requests answered and their latencies (µs) within the run.
#[derive(Default)]
struct Tally {
    latencies: Vec<f64>,
}

struct Outcome {
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
}

fn outcome(mut t: Tally, seconds: f64) -> Outcome {
    t.latencies.sort_by(f64::total_cmp);
    let p = |q: f64| {
        t.latencies
            .get(((t.latencies.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Outcome {
        per_second: t.latencies.len() as f64 / seconds,
        p50_us: p(0.5),
        p99_us: p(0.99),
    }
}

/// `clients` async clients calling `call` back to back for `seconds` (after a short warm-up).
async fn closed_loop<F, Fut>(
    clients: usize,
    seconds: f64,
    inputs: Arc<Vec<Vec<f32>>>,
    call: F,
) -> Outcome
where
    F: Fn(usize, Vec<f32>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Vec<f32>> + Send,
{
    let warm_until = Instant::now() + Duration::from_millis(300);
    let start = warm_until;
    let end = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (call, inputs) = (call.clone(), inputs.clone());
            tokio::spawn(async move {
                let mut t = Tally::default();
                let mut i = c;
                loop {
                    let x = inputs[i % inputs.len()].clone();
                    i += clients;
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let y = call(c, x).await;
                    assert_eq!(y.len(), 10, "an answer of 10 values");
                    if t0 >= start {
                        t.latencies.push(t0.elapsed().as_secs_f64() * 1e6);
                    }
                }
                t
            })
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        all.latencies
            .extend(task.await.expect("client task").latencies);
    }
    outcome(all, seconds)
}

/// The same with blocking clients on OS threads (the REST client is blocking).
fn closed_loop_threads(
    clients: usize,
    seconds: f64,
    inputs: Arc<Vec<Vec<f32>>>,
    call: impl Fn(&ureq::Agent, &[f32]) -> Vec<f32> + Sync,
) -> Outcome {
    let start = Instant::now() + Duration::from_millis(300);
    let end = start + Duration::from_secs_f64(seconds);
    let all: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (call, inputs) = (&call, inputs.clone());
                std::thread::Builder::new()
                    .name(format!("client-rest-{c}"))
                    .spawn_scoped(s, move || {
                        let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
                        let mut t = Tally::default();
                        let mut i = c;
                        loop {
                            let t0 = Instant::now();
                            if t0 >= end {
                                break;
                            }
                            let y = call(&agent, &inputs[i % inputs.len()]);
                            i += clients;
                            assert_eq!(y.len(), 10, "an answer of 10 values");
                            if t0 >= start {
                                t.latencies.push(t0.elapsed().as_secs_f64() * 1e6);
                            }
                        }
                        t
                    })
                    .expect("client thread starts")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let mut tally = Tally::default();
    for t in all {
        tally.latencies.extend(t.latencies);
    }
    outcome(tally, seconds)
}

/// CPU seconds used so far by this process's threads, by role: the server's async runtime
/// (protocol handling), the batchers' workers and the engine's pool (the model itself), the
/// clients. Linux only (`/proc/self/task`); empty elsewhere.
fn cpu_by_role() -> std::collections::BTreeMap<&'static str, f64> {
    let mut m = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return m;
    };
    // Clock ticks per second: 100 on every Linux this runs on.
    const TICK: f64 = 0.01;
    // The whole process, threads that have ended included (the REST clients' threads end
    // before they could be counted by name).
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        if let Some(close) = stat.rfind(')') {
            let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
            let ticks: f64 = fields
                .get(11..13)
                .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
                .unwrap_or(0.0);
            m.insert("process", ticks * TICK);
        }
    }
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks: f64 = fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
            .unwrap_or(0.0);
        let role = if name.starts_with("server") {
            "server protocol"
        } else if name.starts_with("client") {
            "clients"
        } else if name.starts_with("eie-batcher") || name.starts_with("rayon") {
            "engine + batcher"
        } else {
            "other"
        };
        *m.entry(role).or_insert(0.0) += ticks * TICK;
    }
    m
}

fn le_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn from_le(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn rest_call(agent: &ureq::Agent, addr: SocketAddr, x: &[f32]) -> Vec<f32> {
    let raw = le_bytes(x);
    let header = serde_json::json!({
        "inputs": [{"name": "input", "shape": [1, x.len()], "datatype": "FP32",
                    "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "output", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&raw);
    let mut r = agent
        .post(format!("http://{addr}/v2/models/m/infer"))
        .header(HEADER_LENGTH, header.len().to_string())
        .send(&body[..])
        .expect("REST request answered");
    let n: usize = r.headers()[HEADER_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.body_mut().read_to_vec().expect("REST body");
    from_le(&bytes[n..])
}

async fn grpc_client(addr: SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("gRPC connection");
    tonic::client::Grpc::new(channel)
}

async fn grpc_call(
    mut client: tonic::client::Grpc<tonic::transport::Channel>,
    x: Vec<f32>,
) -> Vec<f32> {
    let req = ModelInferRequest {
        model_name: "m".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, x.len() as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![le_bytes(&x)],
        ..Default::default()
    };
    client.ready().await.expect("gRPC channel ready");
    let r: tonic::Response<ModelInferResponse> = client
        .unary(
            tonic::Request::new(req),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/inference.GRPCInferenceService/ModelInfer",
            ),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect("gRPC request answered");
    from_le(&r.into_inner().raw_output_contents[0])
}

fn main() -> std::process::ExitCode {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(a: &Args) -> Result<()> {
    // Named, so that the CPU accounting can tell the engine's threads apart.
    rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("rayon-{i}"))
        .build_global()
        .map_err(|e| eie::Error::InvalidArgument(format!("thread pool: {e}")))?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/lenet");
    let model = Model::load(root.join("lenet-300-100.eie.safetensors"))?;
    let (n, width, pixels) = eie::classify::read_images(&root.join("test-images.npy"))?;
    let inputs: Arc<Vec<Vec<f32>>> =
        Arc::new(pixels.chunks(width).take(n).map(<[f32]>::to_vec).collect());
    let batch = BatchConfig {
        max_batch: a.max_batch,
        max_delay: a.max_delay,
        queue_capacity: 4096,
    };
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("server")
        .build()
        .map_err(|e| eie::Error::InvalidArgument(format!("tokio runtime: {e}")))?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("client")
        .build()
        .map_err(|e| eie::Error::InvalidArgument(format!("tokio runtime: {e}")))?;
    let mut config = ServeConfig::new(vec![ModelSpec::new("m", model.clone())]);
    config.backend = Backend::Cpu;
    config.batch = batch;
    config.http = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.grpc = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let server = server_rt.block_on(Server::start(config))?;
    let (http, grpc) = (server.http_addr().unwrap(), server.grpc_addr().unwrap());
    let engine = Engine::builder(model).device(Device::Cpu).build()?;
    println!(
        "LeNet-300-100, {} on {}; max batch {}, max delay {} µs; {} s per row, closed loop",
        engine.id(),
        engine.device(),
        a.max_batch,
        a.max_delay.as_micros(),
        a.seconds
    );
    println!("\n| transport | clients | requests/s | p50 µs | p99 µs | share of in-process |");
    println!("|---|---|---|---|---|---|");
    let mut cpu_notes: Vec<String> = Vec::new();
    for &clients in &a.clients {
        let batcher = Batcher::new(engine.clone(), batch)?;
        let b = batcher.clone();
        let inproc = client_rt.block_on(closed_loop(
            clients,
            a.seconds,
            inputs.clone(),
            move |_, x| {
                let b = b.clone();
                async move { b.run_async(x).await.expect("in-process answer") }
            },
        ));
        client_rt.block_on(batcher.shutdown());
        let channels: Vec<_> = client_rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..clients {
                v.push(grpc_client(grpc).await);
            }
            v
        });
        let channels = Arc::new(channels);
        let before_g = cpu_by_role();
        let g = client_rt.block_on(closed_loop(
            clients,
            a.seconds,
            inputs.clone(),
            move |c, x| grpc_call(channels[c].clone(), x),
        ));
        let before_r = cpu_by_role();
        let r = closed_loop_threads(clients, a.seconds, inputs.clone(), |agent, x| {
            rest_call(agent, http, x)
        });
        let after = cpu_by_role();
        for (name, o) in [
            ("in-process Batcher", &inproc),
            ("gRPC", &g),
            ("REST, binary", &r),
        ] {
            println!(
                "| {name} | {clients} | {:.0} | {:.0} | {:.0} | {:.0} % |",
                o.per_second,
                o.p50_us,
                o.p99_us,
                100.0 * o.per_second / inproc.per_second
            );
        }
        for (name, o, from, to) in [
            ("gRPC", &g, &before_g, &before_r),
            ("REST", &r, &before_r, &after),
        ] {
            // The warm-up's requests are not counted; their CPU time is (a small bias up).
            let requests = o.per_second * a.seconds;
            let per = |role: &str| {
                1e6 * (to.get(role).unwrap_or(&0.0) - from.get(role).unwrap_or(&0.0)) / requests
            };
            let (server, engine) = (per("server protocol"), per("engine + batcher"));
            cpu_notes.push(format!(
                "{name}, {clients} clients, CPU µs per request: server protocol {server:.0}, \
                 engine + batcher {engine:.0}, clients and the rest {:.0}",
                per("process") - server - engine
            ));
        }
    }
    println!();
    for n in cpu_notes {
        println!("{n}");
    }
    server.stop();
    server_rt.block_on(server.wait())?;
    Ok(())
}
