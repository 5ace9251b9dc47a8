//! Builds WASM plugin components from source, for build scripts
