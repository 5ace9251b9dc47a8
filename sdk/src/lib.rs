//! SDK for setpoint adapter plugins (WASM components)
