//! The plugins shipped inside setpoint, as WASM component bytes.
//!
//! The build script compiles each plugin crate from source for `wasm32-unknown-unknown` and
//! componentizes it; the bytes are embedded here so the quickstart needs no files. The runtime
//! refers to them as `builtin:<name>`.

/// The PostgreSQL adapter component.
pub fn postgres() -> &'static [u8] {
    include_bytes!(env!("SETPOINT_PLUGIN_POSTGRES"))
}

/// The Redis adapter component.
pub fn redis() -> &'static [u8] {
    include_bytes!(env!("SETPOINT_PLUGIN_REDIS"))
}

/// The Kafka adapter component.
pub fn kafka() -> &'static [u8] {
    include_bytes!(env!("SETPOINT_PLUGIN_KAFKA"))
}

/// The Elasticsearch adapter component.
pub fn elasticsearch() -> &'static [u8] {
    include_bytes!(env!("SETPOINT_PLUGIN_ELASTICSEARCH"))
}

/// Every bundled plugin, by name; the quickstart runs one loop per entry, in this order.
pub fn all() -> &'static [(&'static str, &'static [u8])] {
    static ALL: std::sync::OnceLock<Vec<(&'static str, &'static [u8])>> =
        std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        vec![
            ("postgres", postgres()),
            ("redis", redis()),
            ("kafka", kafka()),
            ("elasticsearch", elasticsearch()),
        ]
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn bundled_plugins_are_components() {
        for (name, bytes) in super::all() {
            // A component's preamble: magic, then layer 1 (component) in the version field.
            assert_eq!(&bytes[..4], b"\0asm", "{name}");
            assert_eq!(
                &bytes[6..8],
                &[1, 0],
                "{name} is a core module, not a component"
            );
        }
    }
}
