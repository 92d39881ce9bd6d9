//! Who the proxy says it is (in `info`, the admin API, the p2pcall descriptor).

pub const NAME: &str = "Janus-Cloud Proxy (Rust)";
pub const AUTHOR: &str = "janus-cloud-rs";
pub const VERSION_STRING: &str = env!("CARGO_PKG_VERSION");

/// Janus's numeric version: 1.1.2 → 1102.
pub fn numeric_version() -> u64 {
    let mut parts = VERSION_STRING
        .split('.')
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    major * 1000 + minor * 100 + patch
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_number_like_janus() {
        assert_eq!(super::numeric_version(), 100);
    }
}
