//! Integration and end-to-end tests across the setpoint crates live in `it/`; this library is empty.
