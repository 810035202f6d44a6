//! The crate's typed errors. Every fallible public function returns [`Result`].
//!
//! [`Error`] lists what can go wrong; the [crate-level guide](crate#load-a-model) shows where the
//! first errors come from.

use std::path::PathBuf;

/// Everything that can go wrong in `eie`, from a missing file to a lost GPU device.
///
/// Returned through [`Result`] by every fallible function of the crate, from
/// [`Model::load`](crate::Model::load) (a hostile file is [`Error::CorruptModel`] or
/// [`Error::LimitExceeded`], never a panic) to
/// [`Engine::run`](crate::Engine::run).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A parameter is outside its valid range (density, bits, PE count, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Tensor or vector shapes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A NaN or infinite value where only finite values are allowed.
    #[error("non-finite value ({value}) in {what} at flat index {index}")]
    NonFinite {
        /// Which tensor or vector.
        what: String,
        /// Flat index of the first offending element.
        index: usize,
        /// The value found.
        value: f64,
    },
    /// A tensor has an element type this crate does not read.
    #[error("{what}: unsupported dtype {dtype} (supported: f16, bf16, f32, f64; .npy also 8- to 64-bit integers)")]
    UnsupportedDtype {
        /// Which tensor or file.
        what: String,
        /// The dtype found.
        dtype: String,
    },
    /// A named tensor is not in the file.
    #[error("tensor `{name}` not found in {}; available: {available}", path.display())]
    TensorNotFound {
        /// Requested name.
        name: String,
        /// The file searched.
        path: PathBuf,
        /// Comma-separated names that are there.
        available: String,
    },
    /// A `.npy` or `.safetensors` input could not be parsed.
    #[error("{}: cannot parse: {reason}", path.display())]
    Parse {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A compressed model failed validation (on load or on construction).
    #[error("corrupt model: {0}")]
    CorruptModel(String),
    /// A model file written by an incompatible version of the format.
    #[error(
        "unsupported model format version {found} (this build reads versions 1 to {supported})"
    )]
    UnsupportedVersion {
        /// Version recorded in the file.
        found: String,
        /// Version this build understands.
        supported: u32,
    },
    /// Accuracy-aware compression found no setting that keeps the quality budget.
    #[error("no compression setting meets the budget: {0}")]
    BudgetUnreachable(String),
    /// No GPU adapter matches the request (backend, adapter name).
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    /// The adapter lacks a feature the requested kernel needs.
    #[error("GPU adapter `{adapter}` lacks the feature {feature}")]
    MissingFeature {
        /// The feature, e.g. `SHADER_F16`.
        feature: String,
        /// The adapter's name.
        adapter: String,
    },
    /// The GPU device was lost (driver reset, removal) or could not be created.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// The GPU ran out of memory.
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),
    /// The GPU did not finish in time.
    #[error("GPU did not finish within {0:?}")]
    PollTimeout(std::time::Duration),
    /// The GPU API rejected an operation (validation or internal error).
    #[error("GPU error: {0}")]
    Gpu(String),

    /// A request queue is full (backpressure): retry later or wait for a slot.
    #[error("request queue full ({0} requests waiting)")]
    QueueFull(usize),

    /// The engine or front end was shut down before the request could be served.
    #[error("shut down: {0}")]
    ShutDown(String),

    /// A batch this request was part of failed (the message is the batch's error).
    #[error("batched run failed: {0}")]
    BatchFailed(String),

    /// A size stated by a file or an argument is above a configured limit (see
    /// [`crate::format::LoadLimits`]); raising the limit lets such a file load.
    #[error("{what} is {value}, above the limit of {limit}")]
    LimitExceeded {
        /// The size concerned, e.g. `layer 0 rows`.
        what: String,
        /// The size found.
        value: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    /// A backend was asked for a precision it does not run: f16 on the simulator or the GPU
    /// sequence engine, anything but f32 on a baseline kernel, saturation counts outside
    /// fixed16.
    #[error("{backend} does not run {precision}; it runs {supported}")]
    UnsupportedPrecision {
        /// What was asked, e.g. `the simulator`.
        backend: String,
        /// The precision asked for, by its name (`f16`).
        precision: String,
        /// What the backend runs instead, e.g. `f32 or fixed16`.
        supported: String,
    },
    /// Host memory for a buffer could not be allocated.
    #[error("cannot allocate {bytes} bytes for {what}")]
    Allocation {
        /// What the buffer was for.
        what: String,
        /// The size requested (saturated at `u64::MAX` when it overflows).
        bytes: u64,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    ///
    /// Makes an [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Bytes that `n` values of `T` take, saturated at `u64::MAX`.
fn bytes_of<T>(n: usize) -> u64 {
    (n as u64).saturating_mul(std::mem::size_of::<T>() as u64)
}

/// An empty vector with room for `n` values, or [`Error::Allocation`] when the memory is not
/// available (instead of aborting the process).
pub(crate) fn try_with_capacity<T>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::Allocation {
        what: what.to_string(),
        bytes: bytes_of::<T>(n),
    })?;
    Ok(v)
}

/// `n` copies of `value`, or [`Error::Allocation`] when the memory is not available.
pub(crate) fn try_filled<T: Clone>(n: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = try_with_capacity(n, what)?;
    v.resize(n, value);
    Ok(v)
}

/// Shorthand for `std::result::Result<T, eie::Error>`.
///
/// See [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Returns an error naming the first non-finite element of `values`.
///
/// That error is [`Error::NonFinite`]; [`Engine::run`](crate::Engine::run)
/// applies this check to its inputs.
pub fn check_finite(what: &str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite {
            what: what.to_string(),
            index,
            value: values[index] as f64,
        }),
    }
}
