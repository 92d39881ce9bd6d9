//! Wall-clock time as the Janus world writes it: Unix seconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time now, in seconds (0 if the clock is before 1970).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Unix time now, in whole seconds.
pub fn unix_now_secs() -> i64 {
    unix_now() as i64
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_2020() {
        assert!(super::unix_now() > 1_577_836_800.0);
        assert!(super::unix_now_secs() > 1_577_836_800);
    }
}
