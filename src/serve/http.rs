//! The protocol over HTTP/REST: health, metadata and inference under `/v2`, with JSON tensors
//! or Triton's binary tensor data extension, and Prometheus metrics at `/metrics`.
//!
//! Binary tensor data: the request body is the JSON header (its length in the
//! `Inference-Header-Content-Length` header) followed by each input's bytes, in input order,
//! for inputs whose `parameters` hold `binary_data_size`. Outputs come back the same way when
//! the request asks for it (`"binary_data": true` on the output, or `"binary_data_output":
//! true` in the request's `parameters`).

use super::error::{ErrorKind, ServeError};
use super::models::{ServedModel, MODEL_VERSION};
use super::tensor::{self, DataType, INPUT_NAME, OUTPUT_NAME};
use super::State;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Instant;

/// The header that carries the JSON part's length in a binary request or response.
///
/// `examples/serve_load.rs` sends binary requests with it; see [`super::EXTENSIONS`].
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The REST routes.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(model_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(model_metadata_v),
        )
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready_v),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_v))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::BAD_REQUEST);
        (status, axum::Json(json!({ "error": self.message() }))).into_response()
    }
}

async fn not_found() -> ServeError {
    ServeError::not_found("no such endpoint; see /v2 and /v2/models/{name}")
}

async fn live() -> StatusCode {
    StatusCode::OK
}

async fn ready(AxState(s): AxState<Arc<State>>) -> StatusCode {
    if s.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn server_metadata(AxState(s): AxState<Arc<State>>) -> Response {
    axum::Json(s.server_metadata()).into_response()
}

fn metadata(s: &State, name: &str, version: &str) -> Result<Response, ServeError> {
    let m = s.model(name)?;
    m.check_version(version)?;
    Ok(axum::Json(json!({
        "name": m.name(),
        "versions": [MODEL_VERSION],
        "platform": super::PLATFORM,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, m.input_size() as i64]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, m.output_size() as i64]}],
    }))
    .into_response())
}

async fn model_metadata(AxState(s): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    metadata(&s, &name, "").into_response()
}

async fn model_metadata_v(
    AxState(s): AxState<Arc<State>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    metadata(&s, &name, &version).into_response()
}

fn readiness(s: &State, name: &str, version: &str) -> Result<StatusCode, ServeError> {
    let m = s.model(name)?;
    m.check_version(version)?;
    Ok(if s.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    })
}

async fn model_ready(AxState(s): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    readiness(&s, &name, "").into_response()
}

async fn model_ready_v(
    AxState(s): AxState<Arc<State>>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    readiness(&s, &name, &version).into_response()
}

async fn metrics(AxState(s): AxState<Arc<State>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn infer(
    AxState(s): AxState<Arc<State>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_any(s, name, String::new(), headers, body).await
}

async fn infer_v(
    AxState(s): AxState<Arc<State>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    infer_any(s, name, version, headers, body).await
}

async fn infer_any(
    s: Arc<State>,
    name: String,
    version: String,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let labels = s.metrics.arrived(s.model_label(&name), "http");
    let body = match axum::body::to_bytes(body, s.max_body).await {
        Ok(b) => b,
        Err(e) => {
            let err = ServeError::new(
                ErrorKind::TooLarge,
                format!(
                    "the request body is over this server's limit of {} bytes ({e})",
                    s.max_body
                ),
            );
            s.metrics.failed(&labels, &err);
            return err.into_response();
        }
    };
    let started = Instant::now();
    let result = run_infer(&s, &name, &version, &headers, &body).await;
    s.metrics.answered(&labels, started, &result);
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Vec<OutputTensor>,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct OutputTensor {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// Splits a body into its JSON header and binary part.
fn split_body<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), ServeError> {
    let Some(v) = headers.get(HEADER_LENGTH) else {
        return Ok((body, &[]));
    };
    let n: usize = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            ServeError::bad_request(format!("{HEADER_LENGTH} must be a byte count, got {v:?}"))
        })?;
    if n > body.len() {
        return Err(ServeError::bad_request(format!(
            "{HEADER_LENGTH} is {n} but the body has only {} bytes",
            body.len()
        )));
    }
    Ok(body.split_at(n))
}

fn flag(parameters: &Map<String, Value>, key: &str) -> Result<bool, ServeError> {
    match parameters.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ServeError::bad_request(format!(
            "parameter `{key}` must be true or false, got {other}"
        ))),
    }
}

async fn run_infer(
    s: &State,
    name: &str,
    version: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ServeError> {
    let model: &ServedModel = s.model(name)?;
    model.check_version(version)?;
    let (json_part, binary) = split_body(headers, body)?;
    let req: InferRequest = serde_json::from_slice(json_part)
        .map_err(|e| ServeError::bad_request(format!("malformed inference request JSON: {e}")))?;
    model.check_input_names(req.inputs.iter().map(|i| i.name.as_str()))?;
    model.check_outputs(req.outputs.iter().map(|o| o.name.as_str()))?;
    let input = &req.inputs[0];
    let dtype = DataType::parse(&input.datatype)?;
    let shape = model.check_shape(&input.shape)?;
    let count = shape.batch * model.input_size();
    let values = match (input.parameters.get("binary_data_size"), &input.data) {
        (Some(size), None) => {
            let size = size.as_u64().ok_or_else(|| {
                ServeError::bad_request(format!(
                    "binary_data_size must be a byte count, got {size}"
                ))
            })? as usize;
            if size != binary.len() {
                return Err(ServeError::bad_request(format!(
                    "input `{INPUT_NAME}` has binary_data_size {size}, but {} bytes follow the \
                     JSON header",
                    binary.len()
                )));
            }
            tensor::from_raw(dtype, binary, count)?
        }
        (None, Some(data)) if binary.is_empty() => tensor::from_json(dtype, data, count)?,
        (None, Some(_)) => {
            return Err(ServeError::bad_request(
                "binary data follows the JSON header but no input declares binary_data_size",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ServeError::bad_request(format!(
                "input `{INPUT_NAME}` has both `data` and binary_data_size"
            )))
        }
        (None, None) => {
            return Err(ServeError::bad_request(format!(
                "input `{INPUT_NAME}` has no `data` and no binary_data_size"
            )))
        }
    };
    let binary_out = match req.outputs.first() {
        Some(o) => flag(&o.parameters, "binary_data")?,
        None => flag(&req.parameters, "binary_data_output")?,
    };
    let out = model.infer(values, shape, &s.metrics).await?;
    let out_shape = shape.output(model.output_size());
    let mut output = json!({"name": OUTPUT_NAME, "datatype": "FP32", "shape": out_shape});
    if binary_out {
        output["parameters"] = json!({"binary_data_size": out.len() * 4});
    } else {
        if let Some(i) = out.iter().position(|v| !v.is_finite()) {
            return Err(ServeError::new(
                ErrorKind::Internal,
                format!(
                    "output {} at flat index {i} cannot be written as JSON; ask for binary \
                     output (binary_data) to receive non-finite values",
                    out[i]
                ),
            ));
        }
        output["data"] = json!(out);
    }
    let mut response = json!({
        "model_name": model.name(),
        "model_version": MODEL_VERSION,
        "outputs": [output],
    });
    if let Some(id) = req.id {
        response["id"] = json!(id);
    }
    let header_json = serde_json::to_vec(&response)
        .map_err(|e| ServeError::new(ErrorKind::Internal, e.to_string()))?;
    if !binary_out {
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            header_json,
        )
            .into_response());
    }
    let json_len = header_json.len();
    let mut bytes = header_json;
    bytes.extend_from_slice(&tensor::to_raw(&out));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(json_len),
            ),
        ],
        bytes,
    )
        .into_response())
}
