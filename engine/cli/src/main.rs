//! The setpoint command-line tool
fn main() {}
