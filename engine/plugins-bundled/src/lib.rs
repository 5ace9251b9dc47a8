//! The plugins shipped with setpoint, built from source at build time
