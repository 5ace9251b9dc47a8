//! Act stage: actuators and dry-run
