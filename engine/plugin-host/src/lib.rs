//! Sandboxed WASM plugin host (wasmtime component model)
