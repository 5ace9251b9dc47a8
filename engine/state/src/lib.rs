//! Embedded state store: target history and the decision journal
