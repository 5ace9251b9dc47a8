//! Formatting of sizes the way operators write them (`4 vCPU`, `16 GiB`).

/// Bytes in one GiB.
pub const GIB: u64 = 1024 * 1024 * 1024;
/// Bytes in one MiB.
pub const MIB: u64 = 1024 * 1024;

/// Formats millicores as vCPUs: `8 vCPU`, `2.5 vCPU`.
pub fn format_cpu(millicores: u64) -> String {
    if millicores.is_multiple_of(1000) {
        format!("{} vCPU", millicores / 1000)
    } else {
        let text = format!("{:.2}", millicores as f64 / 1000.0);
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text} vCPU")
    }
}

/// Formats bytes in binary units: `32 GiB`, `512 MiB`, `1.5 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    if bytes >= GIB {
        if bytes.is_multiple_of(GIB) {
            format!("{} GiB", bytes / GIB)
        } else {
            let text = format!("{:.2}", bytes as f64 / GIB as f64);
            let text = text.trim_end_matches('0').trim_end_matches('.');
            format!("{text} GiB")
        }
    } else if bytes >= MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_whole_and_fractional_sizes() {
        assert_eq!(format_cpu(8000), "8 vCPU");
        assert_eq!(format_cpu(2500), "2.5 vCPU");
        assert_eq!(format_bytes(32 * GIB), "32 GiB");
        assert_eq!(format_bytes(GIB + GIB / 2), "1.5 GiB");
        assert_eq!(format_bytes(512 * MIB), "512 MiB");
    }
}
