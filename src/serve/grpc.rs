//! The protocol over gRPC: the `inference.GRPCInferenceService` service of the Open Inference
//! Protocol (KServe v2, as Triton's clients speak it) with its health, metadata and `ModelInfer`
//! methods; inputs in `raw_input_contents` or typed `contents`, outputs in
//! `raw_output_contents`.
//!
//! The messages are written here from the protocol's specification (package `inference`, the
//! field numbers it publishes), with `prost`'s derive, and the service is routed by hand over
//! `tonic`'s unary machinery: no build script and no `protoc`.

use super::error::ServeError;
use super::models::MODEL_VERSION;
use super::tensor::{self, DataType, INPUT_NAME, OUTPUT_NAME};
use super::State;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{Grpc, NamedService};
use tonic::{Code, Status};

/// The protocol's messages.
///
/// The message types of the `inference` package, for a gRPC client of [`super::Server`] (at
/// [`super::Server::grpc_addr`]): `examples/serve_load.rs` and `tests/serve.rs` send
/// [`ModelInferRequest`]s with `tonic`.
pub mod proto {
    use std::collections::HashMap;

    /// `ServerLive` request.
    ///
    /// Answered by [`ServerLiveResponse`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerLiveRequest {}
    /// `ServerLive` response.
    ///
    /// The answer to [`ServerLiveRequest`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerLiveResponse {
        /// Whether the server is live.
        #[prost(bool, tag = "1")]
        pub live: bool,
    }
    /// `ServerReady` request.
    ///
    /// Answered by [`ServerReadyResponse`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerReadyRequest {}
    /// `ServerReady` response.
    ///
    /// The answer to [`ServerReadyRequest`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerReadyResponse {
        /// Whether the server is ready.
        #[prost(bool, tag = "1")]
        pub ready: bool,
    }
    /// `ModelReady` request.
    ///
    /// Answered by [`ModelReadyResponse`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelReadyRequest {
        /// The model.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Its version (empty: any).
        #[prost(string, tag = "2")]
        pub version: String,
    }
    /// `ModelReady` response.
    ///
    /// The answer to [`ModelReadyRequest`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelReadyResponse {
        /// Whether the model is ready.
        #[prost(bool, tag = "1")]
        pub ready: bool,
    }
    /// `ServerMetadata` request.
    ///
    /// Answered by [`ServerMetadataResponse`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerMetadataRequest {}
    /// `ServerMetadata` response.
    ///
    /// The answer to [`ServerMetadataRequest`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ServerMetadataResponse {
        /// The server's name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Its version.
        #[prost(string, tag = "2")]
        pub version: String,
        /// The protocol extensions it supports.
        #[prost(string, repeated, tag = "3")]
        pub extensions: Vec<String>,
    }
    /// `ModelMetadata` request.
    ///
    /// Answered by [`ModelMetadataResponse`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelMetadataRequest {
        /// The model.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Its version (empty: any).
        #[prost(string, tag = "2")]
        pub version: String,
    }
    /// A tensor's name, data type and shape (`-1`: any size).
    ///
    /// Part of a [`ModelMetadataResponse`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorMetadata {
        /// The name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// The data type (`FP32`, ...).
        #[prost(string, tag = "2")]
        pub datatype: String,
        /// The shape.
        #[prost(int64, repeated, tag = "3")]
        pub shape: Vec<i64>,
    }
    /// `ModelMetadata` response.
    ///
    /// The answer to [`ModelMetadataRequest`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelMetadataResponse {
        /// The model.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Its versions.
        #[prost(string, repeated, tag = "2")]
        pub versions: Vec<String>,
        /// Its platform.
        #[prost(string, tag = "3")]
        pub platform: String,
        /// Its inputs.
        #[prost(message, repeated, tag = "4")]
        pub inputs: Vec<TensorMetadata>,
        /// Its outputs.
        #[prost(message, repeated, tag = "5")]
        pub outputs: Vec<TensorMetadata>,
    }
    /// A request or tensor parameter.
    ///
    /// In the `parameters` of a [`ModelInferRequest`] or its tensors.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferParameter {
        /// The value.
        #[prost(oneof = "Parameter", tags = "1, 2, 3, 4, 5")]
        pub parameter_choice: Option<Parameter>,
    }
    /// A parameter's value.
    ///
    /// See [`InferParameter`].
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Parameter {
        /// A boolean.
        #[prost(bool, tag = "1")]
        BoolParam(bool),
        /// A signed integer.
        #[prost(int64, tag = "2")]
        Int64Param(i64),
        /// A string.
        #[prost(string, tag = "3")]
        StringParam(String),
        /// A float (Triton's extension).
        #[prost(double, tag = "4")]
        DoubleParam(f64),
        /// An unsigned integer (Triton's extension).
        #[prost(uint64, tag = "5")]
        Uint64Param(u64),
    }
    /// A tensor's values in typed form.
    ///
    /// The `contents` of an [`InferInputTensor`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferTensorContents {
        /// BOOL.
        #[prost(bool, repeated, tag = "1")]
        pub bool_contents: Vec<bool>,
        /// INT8, INT16, INT32.
        #[prost(int32, repeated, tag = "2")]
        pub int_contents: Vec<i32>,
        /// INT64.
        #[prost(int64, repeated, tag = "3")]
        pub int64_contents: Vec<i64>,
        /// UINT8, UINT16, UINT32.
        #[prost(uint32, repeated, tag = "4")]
        pub uint_contents: Vec<u32>,
        /// UINT64.
        #[prost(uint64, repeated, tag = "5")]
        pub uint64_contents: Vec<u64>,
        /// FP32.
        #[prost(float, repeated, tag = "6")]
        pub fp32_contents: Vec<f32>,
        /// FP64.
        #[prost(double, repeated, tag = "7")]
        pub fp64_contents: Vec<f64>,
        /// BYTES.
        #[prost(bytes = "vec", repeated, tag = "8")]
        pub bytes_contents: Vec<Vec<u8>>,
    }
    /// An input tensor of a request.
    ///
    /// Part of a [`ModelInferRequest`]; see [`super::INPUT_NAME`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferInputTensor {
        /// The name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// The data type.
        #[prost(string, tag = "2")]
        pub datatype: String,
        /// The shape.
        #[prost(int64, repeated, tag = "3")]
        pub shape: Vec<i64>,
        /// Its parameters.
        #[prost(map = "string, message", tag = "4")]
        pub parameters: HashMap<String, InferParameter>,
        /// Its values, unless in `raw_input_contents`.
        #[prost(message, optional, tag = "5")]
        pub contents: Option<InferTensorContents>,
    }
    /// An output a request asks for.
    ///
    /// Part of a [`ModelInferRequest`]; see [`super::OUTPUT_NAME`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferRequestedOutputTensor {
        /// The name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Its parameters.
        #[prost(map = "string, message", tag = "2")]
        pub parameters: HashMap<String, InferParameter>,
    }
    /// `ModelInfer` request.
    ///
    /// Answered by [`ModelInferResponse`]; `examples/serve_load.rs` builds one.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelInferRequest {
        /// The model.
        #[prost(string, tag = "1")]
        pub model_name: String,
        /// Its version (empty: any).
        #[prost(string, tag = "2")]
        pub model_version: String,
        /// An identifier echoed in the response.
        #[prost(string, tag = "3")]
        pub id: String,
        /// Request parameters.
        #[prost(map = "string, message", tag = "4")]
        pub parameters: HashMap<String, InferParameter>,
        /// The inputs.
        #[prost(message, repeated, tag = "5")]
        pub inputs: Vec<InferInputTensor>,
        /// The outputs asked for (none: all).
        #[prost(message, repeated, tag = "6")]
        pub outputs: Vec<InferRequestedOutputTensor>,
        /// The inputs' raw bytes, in input order.
        #[prost(bytes = "vec", repeated, tag = "7")]
        pub raw_input_contents: Vec<Vec<u8>>,
    }
    /// An output tensor of a response.
    ///
    /// Part of a [`ModelInferResponse`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferOutputTensor {
        /// The name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// The data type.
        #[prost(string, tag = "2")]
        pub datatype: String,
        /// The shape.
        #[prost(int64, repeated, tag = "3")]
        pub shape: Vec<i64>,
        /// Its parameters.
        #[prost(map = "string, message", tag = "4")]
        pub parameters: HashMap<String, InferParameter>,
        /// Typed values (this server answers in `raw_output_contents` instead).
        #[prost(message, optional, tag = "5")]
        pub contents: Option<InferTensorContents>,
    }
    /// `ModelInfer` response.
    ///
    /// The answer to [`ModelInferRequest`].
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelInferResponse {
        /// The model.
        #[prost(string, tag = "1")]
        pub model_name: String,
        /// Its version.
        #[prost(string, tag = "2")]
        pub model_version: String,
        /// The request's identifier.
        #[prost(string, tag = "3")]
        pub id: String,
        /// Response parameters.
        #[prost(map = "string, message", tag = "4")]
        pub parameters: HashMap<String, InferParameter>,
        /// The outputs.
        #[prost(message, repeated, tag = "5")]
        pub outputs: Vec<InferOutputTensor>,
        /// The outputs' raw bytes, in output order.
        #[prost(bytes = "vec", repeated, tag = "6")]
        pub raw_output_contents: Vec<Vec<u8>>,
    }
}

use proto::*;

/// The service's full name.
pub const SERVICE: &str = "inference.GRPCInferenceService";

/// The gRPC service over a server's state.
#[derive(Clone)]
pub struct InferenceService {
    state: Arc<State>,
}

impl InferenceService {
    /// The service over `state`.
    pub fn new(state: Arc<State>) -> Self {
        InferenceService { state }
    }
}

impl NamedService for InferenceService {
    const NAME: &'static str = SERVICE;
}

/// One method as a tonic unary service.
struct Method<F>(F);

impl<F, Req, Resp, Fut> Service<tonic::Request<Req>> for Method<F>
where
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
    Resp: Send + 'static,
{
    type Response = tonic::Response<Resp>;
    type Error = Status;
    type Future = BoxFuture<tonic::Response<Resp>, Status>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::Request<Req>) -> Self::Future {
        let fut = (self.0)(req.into_inner());
        Box::pin(async move { fut.await.map(tonic::Response::new) })
    }
}

async fn unary<Req, Resp, F, Fut>(
    req: http::Request<Body>,
    max_body: usize,
    f: F,
) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnMut(Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Resp, Status>> + Send + 'static,
{
    let mut grpc = Grpc::new(tonic_prost::ProstCodec::<Resp, Req>::default())
        .max_decoding_message_size(max_body)
        .max_encoding_message_size(usize::MAX);
    grpc.unary(Method(f), req).await
}

impl Service<http::Request<Body>> for InferenceService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let s = self.state.clone();
        let max = s.max_body;
        Box::pin(async move {
            let method = req
                .uri()
                .path()
                .strip_prefix(concat!("/", "inference.GRPCInferenceService", "/"))
                .unwrap_or_default()
                .to_string();
            let response = match method.as_str() {
                "ServerLive" => {
                    unary(req, max, |_: ServerLiveRequest| async {
                        Ok(ServerLiveResponse { live: true })
                    })
                    .await
                }
                "ServerReady" => {
                    unary(req, max, move |_: ServerReadyRequest| {
                        let ready = s.is_ready();
                        async move { Ok(ServerReadyResponse { ready }) }
                    })
                    .await
                }
                "ServerMetadata" => {
                    unary(req, max, move |_: ServerMetadataRequest| {
                        let r = ServerMetadataResponse {
                            name: super::SERVER_NAME.into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            extensions: super::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
                        };
                        async move { Ok(r) }
                    })
                    .await
                }
                "ModelReady" => {
                    unary(req, max, move |r: ModelReadyRequest| {
                        let result = s
                            .model(&r.name)
                            .and_then(|m| m.check_version(&r.version))
                            .map(|_| ModelReadyResponse {
                                ready: s.is_ready(),
                            })
                            .map_err(|e| e.to_status());
                        async move { result }
                    })
                    .await
                }
                "ModelMetadata" => {
                    unary(req, max, move |r: ModelMetadataRequest| {
                        let result = model_metadata(&s, &r).map_err(|e| e.to_status());
                        async move { result }
                    })
                    .await
                }
                "ModelInfer" => {
                    unary(req, max, move |r: ModelInferRequest| {
                        let s = s.clone();
                        async move { model_infer(s, r).await }
                    })
                    .await
                }
                other => Status::unimplemented(format!(
                    "{SERVICE} has no method `{other}` here; this server implements ServerLive, \
                     ServerReady, ServerMetadata, ModelReady, ModelMetadata and ModelInfer"
                ))
                .into_http(),
            };
            Ok(oversized_is_resource_exhausted(response, max))
        })
    }
}

/// tonic refuses a message over the decoding limit with `OUT_OF_RANGE`; the protocol's answer
/// to a body over the limit is `RESOURCE_EXHAUSTED` (as HTTP's is 413).
fn oversized_is_resource_exhausted(
    mut response: http::Response<Body>,
    max_body: usize,
) -> http::Response<Body> {
    let out_of_range = (Code::OutOfRange as i32).to_string();
    let h = response.headers_mut();
    if h.get("grpc-status").and_then(|v| v.to_str().ok()) == Some(out_of_range.as_str())
        && h.get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| {
                m.contains("message%20length%20too%20large")
                    || m.contains("message length too large")
            })
    {
        let s = Status::resource_exhausted(format!(
            "the request message is over this server's limit of {max_body} bytes"
        ));
        if let Ok(v) = http::HeaderValue::from_str(&(Code::ResourceExhausted as i32).to_string()) {
            h.insert("grpc-status", v);
        }
        if let Ok(v) = http::HeaderValue::from_str(&s.message().replace(' ', "%20")) {
            h.insert("grpc-message", v);
        }
    }
    response
}

fn model_metadata(
    s: &State,
    r: &ModelMetadataRequest,
) -> Result<ModelMetadataResponse, ServeError> {
    let m = s.model(&r.name)?;
    m.check_version(&r.version)?;
    let t = |name: &str, width: usize| TensorMetadata {
        name: name.into(),
        datatype: "FP32".into(),
        shape: vec![-1, width as i64],
    };
    Ok(ModelMetadataResponse {
        name: m.name().into(),
        versions: vec![MODEL_VERSION.into()],
        platform: super::PLATFORM.into(),
        inputs: vec![t(INPUT_NAME, m.input_size())],
        outputs: vec![t(OUTPUT_NAME, m.output_size())],
    })
}

async fn model_infer(s: Arc<State>, r: ModelInferRequest) -> Result<ModelInferResponse, Status> {
    let labels = s.metrics.arrived(s.model_label(&r.model_name), "grpc");
    let started = Instant::now();
    let result = infer(&s, r).await;
    s.metrics.answered(&labels, started, &result);
    result.map_err(|e| e.to_status())
}

async fn infer(s: &State, r: ModelInferRequest) -> Result<ModelInferResponse, ServeError> {
    let model = s.model(&r.model_name)?;
    model.check_version(&r.model_version)?;
    model.check_input_names(r.inputs.iter().map(|i| i.name.as_str()))?;
    model.check_outputs(r.outputs.iter().map(|o| o.name.as_str()))?;
    let input = &r.inputs[0];
    let dtype = DataType::parse(&input.datatype)?;
    let shape = model.check_shape(&input.shape)?;
    let count = shape.batch * model.input_size();
    let values = match (r.raw_input_contents.as_slice(), &input.contents) {
        ([raw], None) => tensor::from_raw(dtype, raw, count)?,
        ([], Some(c)) => typed_contents(dtype, c, count)?,
        ([], None) => {
            return Err(ServeError::bad_request(format!(
                "input `{INPUT_NAME}` has neither raw_input_contents nor contents"
            )))
        }
        ([_], Some(_)) => {
            return Err(ServeError::bad_request(format!(
                "input `{INPUT_NAME}` has both raw_input_contents and contents"
            )))
        }
        (raw, _) => {
            return Err(ServeError::bad_request(format!(
                "raw_input_contents holds {} tensors for one input",
                raw.len()
            )))
        }
    };
    let out = model.infer(values, shape, &s.metrics).await?;
    Ok(ModelInferResponse {
        model_name: model.name().into(),
        model_version: MODEL_VERSION.into(),
        id: r.id,
        parameters: HashMap::new(),
        outputs: vec![InferOutputTensor {
            name: OUTPUT_NAME.into(),
            datatype: "FP32".into(),
            shape: shape.output(model.output_size()),
            parameters: HashMap::new(),
            contents: None,
        }],
        raw_output_contents: vec![tensor::to_raw(&out)],
    })
}

/// An input's typed `contents`: `fp32_contents` for FP32, `uint_contents` for UINT8. FP16
/// has no typed form in the protocol (raw only).
fn typed_contents(
    dtype: DataType,
    c: &InferTensorContents,
    count: usize,
) -> Result<Vec<f32>, ServeError> {
    let values: Vec<f32> = match dtype {
        DataType::Fp32 => c.fp32_contents.clone(),
        DataType::Uint8 => c
            .uint_contents
            .iter()
            .map(|&v| {
                u8::try_from(v).map(f32::from).map_err(|_| {
                    ServeError::bad_request(format!(
                        "input `{INPUT_NAME}`: {v} is not a UINT8 value (0..=255)"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        DataType::Fp16 => {
            return Err(ServeError::bad_request(format!(
                "input `{INPUT_NAME}`: FP16 values go in raw_input_contents"
            )))
        }
    };
    if values.len() != count {
        return Err(ServeError::bad_request(format!(
            "input `{INPUT_NAME}` has {} values in contents; its shape needs {count}",
            values.len()
        )));
    }
    tensor::finite(values)
}
