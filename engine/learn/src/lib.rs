//! The learning core: phase 2 of the classify stage.
//!
//! The bootstrap heuristics only memorise human thresholds; a transactional database whose four
//! dimensions climb together crosses none of them and still saturates. This crate learns the
//! boundaries from what actually followed each four-week window:
//!
//! 1. [`history::simulate`] plays long weekly histories of a technology's simulator scenarios
//!    and derives ground-truth degradations (latency spikes, connection timeouts, OOM kills)
//!    from a documented outcome model; real incidents come from [`dataset::load_incidents`];
//! 2. [`dataset::build`] cuts rolling windows into labelled rows over a named, versioned,
//!    hashed feature [`Schema`] (the plugins' fingerprint plus each metric's trend and level);
//! 3. [`train`] fits three one-vs-rest gradient-boosted ensembles (`forust-ml`) whose margins a
//!    softmax turns into class probabilities, cross-validates them, calibrates the probabilities
//!    on predictions for rows the boosters did not see ([`calibrate`]: a confidence of 0.8 is
//!    then right about 80 % of the time), and fits a small decision tree (`linfa-trees`) to the
//!    model's predictions so operators can read the boundary as rules;
//! 4. [`TrainedModel`] is one JSON artifact (schema, parameters, boosters, class order, metrics,
//!    rules) whose SHA-256 is its version, and [`TrainedModel::classifier`] plugs it into the
//!    engine as a [`setpoint_classify::Classifier`] that says how sure it is and why;
//! 5. [`evaluate()`] replays a held-out history and compares the model with the bootstrap rules
//!    on what operators care about: degradations flagged ahead, capacity reclaimed, scale-downs
//!    regretted.
//!
//! Everything is deterministic: a seed and a dataset name a model, byte for byte. The heavy
//! learning dependencies live here and nowhere else, so no other stage rebuilds with them.

use std::path::PathBuf;

use setpoint_core::Class;

pub mod calibrate;
pub mod dataset;
pub mod evaluate;
pub mod history;
mod model;
pub mod observed;
pub mod peaks;
pub mod surrogate;
#[cfg(test)]
mod testkit;

pub use calibrate::{Calibration, ClassCalibration, ClassMap};
pub use dataset::{Dataset, DatasetConfig, Labels, Schema, build, load_incidents};
pub use evaluate::{
    AtThreshold, CONFIDENCE_THRESHOLD, ClassMetrics, CrossValidation, FeatureImportance, HeldOut,
    OutcomeReport, ProbabilityQuality, Reliability, ReliabilityBin, evaluate, evaluate_dataset,
};
pub use history::{Event, EventKind, History, HistoryConfig, simulate};
pub use model::{
    BoosterParams, MODEL_FORMAT, MODEL_NAME, ModelClassifier, Stage, TrainConfig, TrainedModel,
    TrainingInfo, train,
};
pub use surrogate::{Rule, Surrogate, TreeParams};

/// Errors of the learning core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of an incident file is malformed.
    #[error("{}:{line}: {message}", path.display())]
    Incident {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A dataset cannot be built or trained on.
    #[error("dataset: {0}")]
    Dataset(String),
    /// The boosting library refused the data or the parameters.
    #[error("training failed: {0}")]
    Training(String),
    /// The surrogate tree could not be fitted.
    #[error("surrogate tree: {0}")]
    Surrogate(String),
    /// A model artifact is malformed or from another format.
    #[error("model artifact: {0}")]
    Model(String),
    /// A model artifact is not valid JSON of the expected shape.
    #[error("model artifact JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The class order of every probability vector, confusion matrix and booster list.
pub const CLASSES: [Class; 3] = [Class::ScaleDown, Class::Remain, Class::ScaleUp];

/// Position of a class in [`CLASSES`].
pub fn class_index(class: Class) -> usize {
    match class {
        Class::ScaleDown => 0,
        Class::Remain => 1,
        Class::ScaleUp => 2,
    }
}
