//! The actuators a loop's configuration can name, registered in one list.
//!
//! An actuator is one module: its configuration type (serde, beside the actuator) implements
//! [`ActuatorSpec`], and one line in the [`actuators!`](crate::actuators) list in `lib.rs`
//! makes it a key under a loop's `actuators:` — parsed, printed back, its files resolved
//! against the config file's directory, and built.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ActError, Actuator};

/// What the engine needs of an actuator's configuration.
pub trait ActuatorSpec:
    Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The key under `actuators:`, and the actuator's name in results and errors.
    const NAME: &'static str;

    /// The files this configuration names, to be made relative to the config file's
    /// directory.
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        Vec::new()
    }

    /// Builds the actuator (checks what can be checked before any cycle: URLs, files, keys).
    fn build(&self) -> Result<Arc<dyn Actuator>, ActError>;
}

/// Makes each relative path in `paths` relative to `base` instead.
pub(crate) fn resolve_against(paths: Vec<&mut PathBuf>, base: &Path) {
    for path in paths {
        if path.is_relative() {
            *path = base.join(&*path);
        }
    }
}

/// Registers the actuators: each `Variant(module::Config)` line adds the key `module` under a
/// loop's `actuators:`. Generates [`ActuatorConfig`](crate::ActuatorConfig): one actuator of a
/// loop, written as a map with exactly one key (`- patroni: {…}`).
#[macro_export]
#[doc(hidden)]
macro_rules! actuators {
    ($($(#[$doc:meta])* $variant:ident($module:ident::$config:ident)),+ $(,)?) => {
        /// One actuator of a loop, written as a one-key map naming its kind.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "ActuatorEntry", into = "ActuatorEntry")]
        pub enum ActuatorConfig {
            $($(#[$doc])* $variant($module::$config),)+
        }

        /// How an actuator is written: a map with exactly one of these keys.
        #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[doc(hidden)]
        pub struct ActuatorEntry {
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                $module: Option<$module::$config>,
            )+
        }

        impl TryFrom<ActuatorEntry> for ActuatorConfig {
            type Error = String;

            fn try_from(entry: ActuatorEntry) -> Result<Self, String> {
                let mut found = Vec::new();
                $(
                    if let Some(config) = entry.$module {
                        found.push(ActuatorConfig::$variant(config));
                    }
                )+
                match found.len() {
                    1 => Ok(found.remove(0)),
                    _ => Err(format!(
                        "an actuator is a map with exactly one key: {}",
                        ActuatorConfig::KINDS.join(", ")
                    )),
                }
            }
        }

        impl From<ActuatorConfig> for ActuatorEntry {
            fn from(config: ActuatorConfig) -> Self {
                let mut entry = ActuatorEntry::default();
                match config {
                    $(ActuatorConfig::$variant(c) => entry.$module = Some(c),)+
                }
                entry
            }
        }

        impl ActuatorConfig {
            /// Every kind of actuator, as written under `actuators:`.
            pub const KINDS: &'static [&'static str] =
                &[$(<$module::$config as $crate::registry::ActuatorSpec>::NAME),+];

            /// The actuator's name, as in results and errors.
            pub fn name(&self) -> &'static str {
                match self {
                    $(ActuatorConfig::$variant(_) => {
                        <$module::$config as $crate::registry::ActuatorSpec>::NAME
                    })+
                }
            }

            /// Makes the files it names relative to `base` (the config file's directory).
            pub fn resolve_paths(&mut self, base: &std::path::Path) {
                use $crate::registry::ActuatorSpec as _;
                match self {
                    $(ActuatorConfig::$variant(c) => {
                        $crate::registry::resolve_against(c.paths_mut(), base)
                    })+
                }
            }

            /// Builds the actuator.
            pub fn build(&self) -> Result<std::sync::Arc<dyn $crate::Actuator>, $crate::ActError> {
                use $crate::registry::ActuatorSpec as _;
                match self {
                    $(ActuatorConfig::$variant(c) => c.build(),)+
                }
            }
        }
    };
}
