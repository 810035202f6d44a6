//! The protocol's tensors, independent of the transport: data types, shapes, and turning a
//! request's input (JSON numbers, Triton's binary tensor data, or gRPC contents) into the rows
//! of `f32` an [`crate::Engine`] runs.
//!
//! Conversions follow `eie run`'s `.npy` reader: FP16 values are widened to `f32` exactly,
//! UINT8 values are taken as the numbers they are (0..=255, not scaled), FP32 as it is. Every
//! value must be finite.

use super::error::ServeError;
use half::f16;

/// The name of every model's one input tensor.
///
/// See [`super::proto::InferInputTensor::name`].
pub const INPUT_NAME: &str = "input";
/// The name of every model's one output tensor.
///
/// See [`super::proto::InferOutputTensor::name`].
pub const OUTPUT_NAME: &str = "output";

/// An input data type the server accepts.
///
/// The `datatype` of an input ([`super::proto::InferInputTensor::datatype`]); see
/// [`DataType::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    /// 32-bit IEEE float, taken as it is.
    Fp32,
    /// 16-bit IEEE float, widened exactly.
    Fp16,
    /// 8-bit unsigned integer, taken as its value.
    Uint8,
}

impl DataType {
    /// Parses the protocol's name (`FP32`, `FP16`, `UINT8`).
    ///
    /// An unknown name is a [`ServeError`] of kind [`super::ErrorKind::BadRequest`].
    pub fn parse(name: &str) -> Result<DataType, ServeError> {
        match name {
            "FP32" => Ok(DataType::Fp32),
            "FP16" => Ok(DataType::Fp16),
            "UINT8" => Ok(DataType::Uint8),
            other => Err(ServeError::bad_request(format!(
                "input `{INPUT_NAME}` has datatype `{other}`; this server takes FP32, FP16 or UINT8"
            ))),
        }
    }

    /// Bytes per element in raw (binary) form.
    ///
    /// See [`DataType`].
    pub fn element_bytes(self) -> usize {
        match self {
            DataType::Fp32 => 4,
            DataType::Fp16 => 2,
            DataType::Uint8 => 1,
        }
    }
}

/// An input's shape checked against the model: `[batch, width]` or `[width]` (one input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputShape {
    /// Input vectors.
    pub batch: usize,
    /// Whether the request gave one input as `[width]` (its output is then `[out]`).
    pub flat: bool,
}

impl InputShape {
    /// Checks `shape` for a model taking `width` values per input and at most `max_batch`
    /// inputs per request.
    pub fn check(shape: &[i64], width: usize, max_batch: usize) -> Result<InputShape, ServeError> {
        let wrong = || {
            ServeError::bad_request(format!(
                "input `{INPUT_NAME}` has shape {shape:?}; this model takes [batch, {width}] \
                 or [{width}]"
            ))
        };
        let (batch, flat) = match *shape {
            [w] if w == width as i64 => (1, true),
            [n, w] if w == width as i64 && n >= 1 => (n as u64, false),
            _ => return Err(wrong()),
        };
        if batch > max_batch as u64 {
            return Err(ServeError::bad_request(format!(
                "input `{INPUT_NAME}` holds a batch of {batch}; this server takes at most \
                 {max_batch} inputs per request"
            )));
        }
        Ok(InputShape {
            batch: batch as usize,
            flat,
        })
    }

    /// The output tensor's shape for a model with `out` values per output.
    pub fn output(&self, out: usize) -> Vec<i64> {
        if self.flat {
            vec![out as i64]
        } else {
            vec![self.batch as i64, out as i64]
        }
    }
}

/// Decodes `count` little-endian elements of `dtype` from raw bytes (Triton's binary tensor
/// data, gRPC's `raw_input_contents`).
pub fn from_raw(dtype: DataType, bytes: &[u8], count: usize) -> Result<Vec<f32>, ServeError> {
    let want = count * dtype.element_bytes();
    if bytes.len() != want {
        return Err(ServeError::bad_request(format!(
            "input `{INPUT_NAME}` has {} bytes of data; its shape and datatype need {want}",
            bytes.len()
        )));
    }
    let values: Vec<f32> = match dtype {
        DataType::Fp32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DataType::Fp16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DataType::Uint8 => bytes.iter().map(|&b| b as f32).collect(),
    };
    finite(values)
}

/// Decodes the JSON `data` of an input: numbers, flat or nested row-major arrays.
pub fn from_json(
    dtype: DataType,
    data: &serde_json::Value,
    count: usize,
) -> Result<Vec<f32>, ServeError> {
    let mut values = Vec::with_capacity(count);
    flatten(dtype, data, &mut values, count, 0)?;
    if values.len() != count {
        return Err(ServeError::bad_request(format!(
            "input `{INPUT_NAME}` has {} values; its shape needs {count}",
            values.len()
        )));
    }
    finite(values)
}

/// Nested arrays deeper than this are refused (the shape has at most two dimensions).
const MAX_DEPTH: usize = 4;

fn flatten(
    dtype: DataType,
    v: &serde_json::Value,
    out: &mut Vec<f32>,
    count: usize,
    depth: usize,
) -> Result<(), ServeError> {
    match v {
        serde_json::Value::Array(items) if depth < MAX_DEPTH => {
            for item in items {
                flatten(dtype, item, out, count, depth + 1)?;
            }
            Ok(())
        }
        serde_json::Value::Number(n) => {
            if out.len() >= count {
                return Err(ServeError::bad_request(format!(
                    "input `{INPUT_NAME}` has more values than its shape's {count}"
                )));
            }
            out.push(json_number(dtype, n)?);
            Ok(())
        }
        other => Err(ServeError::bad_request(format!(
            "input `{INPUT_NAME}`: `data` must be numbers in (at most {MAX_DEPTH} nested) \
             arrays, found {}",
            kind(other)
        ))),
    }
}

fn json_number(dtype: DataType, n: &serde_json::Number) -> Result<f32, ServeError> {
    match dtype {
        DataType::Fp32 => n.as_f64().map(|x| x as f32),
        DataType::Fp16 => n.as_f64().map(|x| f16::from_f64(x).to_f32()),
        DataType::Uint8 => n.as_u64().filter(|&x| x <= 255).map(|x| x as f32),
    }
    .ok_or_else(|| {
        ServeError::bad_request(format!(
            "input `{INPUT_NAME}`: {n} is not a {}",
            match dtype {
                DataType::Fp32 => "FP32 number",
                DataType::Fp16 => "FP16 number",
                DataType::Uint8 => "UINT8 value (an integer in 0..=255)",
            }
        ))
    })
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "arrays nested too deep",
        serde_json::Value::Object(_) => "an object",
        serde_json::Value::Number(_) => "a number",
    }
}

/// Refuses NaN and infinite values, naming the first.
pub fn finite(values: Vec<f32>) -> Result<Vec<f32>, ServeError> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(values),
        Some(i) => Err(ServeError::bad_request(format!(
            "input `{INPUT_NAME}` holds {} at flat index {i}; inputs must be finite",
            values[i]
        ))),
    }
}

/// Little-endian bytes of `values` (the output's raw form).
pub fn to_raw(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes() {
        assert_eq!(
            InputShape::check(&[3, 4], 4, 8).unwrap(),
            InputShape {
                batch: 3,
                flat: false
            }
        );
        assert!(InputShape::check(&[4], 4, 8).unwrap().flat);
        for bad in [&[3, 5][..], &[0, 4], &[-1, 4], &[1, 1, 4], &[]] {
            assert_eq!(InputShape::check(bad, 4, 8).unwrap_err().status(), 400);
        }
        let e = InputShape::check(&[9, 4], 4, 8).unwrap_err();
        assert!(e.message().contains("at most 8"), "{}", e.message());
    }

    #[test]
    fn raw_and_json_agree() {
        let x = [0.5f32, -1.25, 3.0, 1e-3];
        let raw = to_raw(&x);
        assert_eq!(from_raw(DataType::Fp32, &raw, 4).unwrap(), x);
        assert_eq!(
            from_json(DataType::Fp32, &json!([[0.5, -1.25], [3.0, 0.001]]), 4).unwrap(),
            x
        );
        let h: Vec<u8> = x
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        let widened: Vec<f32> = x.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
        assert_eq!(from_raw(DataType::Fp16, &h, 4).unwrap(), widened);
        assert_eq!(from_json(DataType::Fp16, &json!(x), 4).unwrap(), widened);
        assert_eq!(
            from_raw(DataType::Uint8, &[0, 7, 255], 3).unwrap(),
            [0.0, 7.0, 255.0]
        );
        assert_eq!(
            from_json(DataType::Uint8, &json!([0, 7, 255]), 3).unwrap(),
            [0.0, 7.0, 255.0]
        );
    }

    #[test]
    fn bad_data() {
        for (dt, v, n) in [
            (DataType::Uint8, json!([256]), 1),
            (DataType::Uint8, json!([1.5]), 1),
            (DataType::Fp32, json!([1, 2]), 3),
            (DataType::Fp32, json!([1, 2, 3, 4]), 3),
            (DataType::Fp32, json!(["1"]), 1),
            (DataType::Fp32, json!([[[[[1]]]]]), 1),
            (DataType::Fp32, json!([1e39]), 1),
        ] {
            let e = from_json(dt, &v, n).unwrap_err();
            assert_eq!(e.status(), 400, "{v}: {}", e.message());
        }
        let nan = to_raw(&[1.0, f32::NAN]);
        assert!(from_raw(DataType::Fp32, &nan, 2)
            .unwrap_err()
            .message()
            .contains("flat index 1"));
        assert!(from_raw(DataType::Fp32, &nan, 3).is_err());
        assert!(DataType::parse("INT64").is_err());
    }
}
