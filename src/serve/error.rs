//! One error for every transport: a kind that maps onto an HTTP status and a gRPC code, and a
//! one-line message.

/// What kind of failure a request met.
///
/// The kind of a [`ServeError`]; each maps to an HTTP status ([`ServeError::status`]) and a
/// gRPC code ([`ServeError::to_status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or does not fit the model (HTTP 400, gRPC `INVALID_ARGUMENT`).
    BadRequest,
    /// No such model or version (HTTP 404, gRPC `NOT_FOUND`).
    NotFound,
    /// The request body is over the server's limit (HTTP 413, gRPC `RESOURCE_EXHAUSTED`).
    TooLarge,
    /// The queue is full or the server is stopping (HTTP 503, gRPC `UNAVAILABLE`).
    Unavailable,
    /// The engine failed (HTTP 500, gRPC `INTERNAL`).
    Internal,
}

/// A request's failure: its kind and a one-line message for the client.
///
/// Its [`ErrorKind`] decides the status the client sees; the [module docs](super) list the
/// codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeError {
    kind: ErrorKind,
    message: String,
}

impl ServeError {
    /// A failure of `kind`.
    ///
    /// See [`ErrorKind`].
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ServeError {
            kind,
            message: message.into(),
        }
    }

    /// A malformed request.
    ///
    /// An [`ErrorKind::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// An unknown model or version.
    ///
    /// An [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// The kind.
    ///
    /// See [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message.
    ///
    /// See [`ServeError::kind`].
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status code.
    ///
    /// See [`ErrorKind`].
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::BadRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::TooLarge => 413,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// The gRPC status.
    ///
    /// See [`ErrorKind`].
    pub fn to_status(&self) -> tonic::Status {
        let code = match self.kind {
            ErrorKind::BadRequest => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::TooLarge => tonic::Code::ResourceExhausted,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Internal => tonic::Code::Internal,
        };
        tonic::Status::new(code, self.message.clone())
    }

    /// The label `/metrics` counts failures under.
    ///
    /// See [`ErrorKind`] and the [module docs](super) on metrics.
    pub fn label(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServeError {}

impl From<crate::Error> for ServeError {
    /// An engine or batcher error: a full queue or a stopping server is `Unavailable`, a shape
    /// or value the engine refused is `BadRequest`, anything else `Internal`.
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        let kind = match &e {
            E::QueueFull(_) | E::ShutDown(_) => ErrorKind::Unavailable,
            E::Shape(_) | E::NonFinite { .. } => ErrorKind::BadRequest,
            _ => ErrorKind::Internal,
        };
        ServeError::new(kind, e.to_string())
    }
}
