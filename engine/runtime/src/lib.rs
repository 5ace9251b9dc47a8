//! Wires the stages into loops and cycles
