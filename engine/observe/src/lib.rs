//! Observe stage: metric sources, including the embedded simulated fleet
