use eie::batching::BatchConfig;
use eie::serve::{Backend, Devices, ModelSpec, ServeConfig, Server};
use eie::{Error, Model, Precision, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The engine behind the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendArg {
    /// The EIE CPU engine.
    Cpu,
    /// The GPU kernels (an error without an adapter).
    Gpu,
    /// A hardware GPU when there is one, else the CPU engine.
    Auto,
}

/// The arithmetic: a [`Precision`] on the command line, by its name, one of
/// [`Precision::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrecisionArg(Precision);

impl clap::ValueEnum for PrecisionArg {
    fn value_variants<'a>() -> &'a [Self] {
        const ALL: [PrecisionArg; Precision::ALL.len()] = {
            let mut all = [PrecisionArg(Precision::F32); Precision::ALL.len()];
            let mut i = 0;
            while i < all.len() {
                all[i] = PrecisionArg(Precision::ALL[i]);
                i += 1;
            }
            all
        };
        &ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self.0 {
            Precision::F32 => "32-bit float",
            Precision::Fixed16 => {
                "EIE's 16-bit fixed point (each layer's formats as stored in the model)"
            }
            Precision::F16 => "f16 activations and codebook, f32 arithmetic",
        };
        Some(clap::builder::PossibleValue::new(self.0.name()).help(help))
    }
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// A model to serve, as NAME=PATH (repeat for several). Default: the committed
    /// LeNet-300-100 as `lenet`, when this is a checkout.
    #[arg(long = "model", value_name = "NAME=PATH")]
    models: Vec<String>,
    /// Where the REST endpoints listen (`off`: no HTTP).
    #[arg(long, default_value = "127.0.0.1:8000")]
    http: String,
    /// Where the gRPC service listens (`off`: no gRPC).
    #[arg(long, default_value = "127.0.0.1:8001")]
    grpc: String,
    /// The engine.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    /// GPUs for --backend gpu|auto: `all` (every hardware adapter) or positions in
    /// `eie devices`' list, comma-separated; one engine per GPU.
    #[arg(long, default_value = "all")]
    devices: String,
    /// The arithmetic.
    #[arg(long, value_enum, default_value_t = PrecisionArg(Precision::F32))]
    precision: PrecisionArg,
    /// Most inputs per engine call, and per request.
    #[arg(long, default_value_t = 64)]
    max_batch: usize,
    /// Longest a request waits for others to join its batch, in microseconds.
    #[arg(long, default_value_t = 500)]
    max_delay_us: u64,
    /// Most inputs waiting per engine; beyond it requests get HTTP 503 / gRPC UNAVAILABLE.
    #[arg(long, default_value_t = 1024)]
    max_queue: usize,
    /// Largest request body (HTTP) or message (gRPC), in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_body: usize,
}

fn address(s: &str, flag: &str) -> Result<Option<SocketAddr>> {
    if s == "off" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| {
        Error::InvalidArgument(format!(
            "--{flag} {s}: not an address such as 127.0.0.1:8000 ({e})"
        ))
    })
}

fn model_spec(s: &str) -> Result<(String, PathBuf)> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(Error::InvalidArgument(format!(
            "--model {s}: expected NAME=PATH, e.g. lenet=assets/lenet/lenet-300-100.eie.safetensors"
        ))),
    }
}

/// The committed model, when this binary runs from a checkout.
fn default_model() -> Option<PathBuf> {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/lenet/lenet-300-100.eie.safetensors");
    p.exists().then_some(p)
}

pub fn run(a: &ServeArgs) -> Result<ExitCode> {
    let mut named = a
        .models
        .iter()
        .map(|m| model_spec(m))
        .collect::<Result<Vec<_>>>()?;
    if named.is_empty() {
        let path = default_model().ok_or_else(|| {
            Error::InvalidArgument(
                "no --model NAME=PATH given (and no committed model here)".into(),
            )
        })?;
        named.push(("lenet".into(), path));
    }
    let devices = match a.devices.as_str() {
        "all" => Devices::All,
        list => Devices::List(
            list.split(',')
                .map(|d| {
                    d.trim().parse().map_err(|_| {
                        Error::InvalidArgument(format!(
                            "--devices {list}: expected `all` or positions such as 0,1"
                        ))
                    })
                })
                .collect::<Result<_>>()?,
        ),
    };
    let mut models = Vec::with_capacity(named.len());
    for (name, path) in named {
        let t = Instant::now();
        let model = Model::load(&path)?;
        eprintln!(
            "eie serve: loaded model `{name}` from {} ({} → {}, {} layers) in {:.0} ms",
            path.display(),
            model.input_size(),
            model.output_size(),
            model.layers().len(),
            t.elapsed().as_secs_f64() * 1e3
        );
        models.push(ModelSpec::new(name, model));
    }
    let mut config = ServeConfig::new(models);
    config.http = address(&a.http, "http")?;
    config.grpc = address(&a.grpc, "grpc")?;
    config.backend = match a.backend {
        BackendArg::Cpu => Backend::Cpu,
        BackendArg::Gpu => Backend::Gpu,
        BackendArg::Auto => Backend::Auto,
    };
    config.devices = devices;
    config.precision = a.precision.0;
    config.batch = BatchConfig {
        max_batch: a.max_batch,
        max_delay: Duration::from_micros(a.max_delay_us),
        queue_capacity: a.max_queue,
    };
    config.max_body = a.max_body;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("eie-serve")
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: ServeConfig) -> Result<()> {
    let server = Server::start(config).await?;
    for m in server.models() {
        for (i, (engine, device)) in m.engines.iter().enumerate() {
            eprintln!(
                "eie serve: model `{}` engine {i}: {engine} on {device}",
                m.name
            );
        }
    }
    let show = |a: Option<SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    eprintln!(
        "eie serve: started, HTTP on {}, gRPC on {} (pid {})",
        show(server.http_addr()),
        show(server.grpc_addr()),
        std::process::id()
    );
    let stopper = server.stopper();
    let signal = tokio::spawn(async move {
        let why = stop_signal().await;
        eprintln!("eie serve: {why}: no longer accepting; answering accepted requests");
        stopper.stop();
    });
    let t = Instant::now();
    let result = server.wait().await;
    signal.abort();
    eprintln!(
        "eie serve: stopped after {:.1} s{}",
        t.elapsed().as_secs_f64(),
        match &result {
            Ok(()) => String::new(),
            Err(e) => format!(" with an error: {e}"),
        }
    );
    result
}

/// Waits for SIGTERM or Ctrl-C (SIGINT) and says which.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
