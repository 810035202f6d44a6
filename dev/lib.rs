//! Empty: see `Cargo.toml`. This package exists to turn on `eie/cli` for builds at the
//! repository root.
