//! Any body posted to the admin API's `POST /backend_servers`: as JSON and as a form, the
//! report check must accept or refuse with a field name, never panic; an accepted report
//! must survive its own form encoding.
#![no_main]

use janus_protocol::frames::JsonMap;
use janus_protocol::ServerReport;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(data) {
        check(&map);
    }
    if let Ok(fields) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) {
        let map: JsonMap = fields
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        check(&map);
    }
});

fn check(map: &JsonMap) {
    match ServerReport::from_params(map) {
        Ok(report) => {
            let again: JsonMap = report
                .to_form_fields()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v)))
                .collect();
            assert!(ServerReport::from_params(&again).is_ok(), "{report:?}");
        }
        Err(e) => assert!(!e.field.is_empty()),
    }
}
