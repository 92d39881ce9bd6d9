//! Any bytes a client may send as a Janus API frame: parsing and every check Janus applies
//! must answer with a value or an `ApiError`, never panic.
#![no_main]

use janus_protocol::Incoming;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(incoming) = Incoming::parse(text) {
        let _ = incoming.target();
        // `verb` takes the body out of the request: each call on its own copy.
        let _ = incoming.clone().verb(false);
        let _ = incoming.clone().verb(true);
        let _ = incoming.error(janus_protocol::ApiError::no_such_session(incoming.session_id));
    }
});
