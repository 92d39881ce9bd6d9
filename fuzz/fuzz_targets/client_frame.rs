//! Any bytes a client may send as a Janus API message (text or binary): parsing, jansson's
//! error text and every check Janus applies must answer with a value or an `ApiError`, never
//! panic.
#![no_main]

use janus_protocol::Incoming;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for incoming in Incoming::parse_frame(data).into_iter().flatten() {
        let _ = incoming.target();
        // `verb` takes the body out of the request: each call on its own copy.
        let _ = incoming.clone().verb(false);
        let _ = incoming.clone().verb(true);
        let _ = incoming.error(janus_protocol::ApiError::no_such_session(incoming.session_id));
    }
});
