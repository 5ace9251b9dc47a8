//! Classify stage: bootstrap heuristics and learned classifiers
