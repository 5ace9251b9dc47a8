//! Decide stage: Rego policies evaluated in-process
