//! The WebSocket handshake, answered from actix-http's upgrade hook: the request's checks (the
//! subprotocol, `limits.connections_per_ip`, the handshake itself, in that order), the 101 or
//! the refusal written on the connection, then the connection handed to a `ClientConnection`
//! actor with the bare stream (see `wsio` for why no HTTP dispatcher stays under it).

use std::sync::Arc;

use actix::Actor;
use actix_codec::Framed;
use actix_http::body::BodySize;
use actix_http::h1;
use actix_http::header::{self, HeaderValue};
use actix_http::ws::{hash_key, HandshakeError};
use actix_http::{Method, Request, RequestHead, Response, ResponseBuilder, StatusCode};
use bytes::Bytes;
use futures_util::SinkExt;
use janus_protocol::JANUS_PROTOCOL;

use super::env::TransportEnv;
use super::stream::ClientStream;
use super::wsio::WsIo;
use super::ClientConnection;
use crate::metrics::Refusal;

/// Why a handshake is refused, answered as the endpoint always answered it.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeRefusal {
    /// The request does not offer `janus-protocol` (Janus refuses it too).
    NoJanusProtocol,
    /// `limits.connections_per_ip` connections from this address are open.
    TooManyFromIp(std::net::IpAddr, usize),
    /// Not a valid WebSocket handshake.
    Handshake(HandshakeError),
}

impl HandshakeRefusal {
    /// The HTTP response, and its body.
    pub fn response(&self) -> (Response<()>, Bytes) {
        let text = |status: StatusCode, body: String| {
            let res = ResponseBuilder::new(status)
                .content_type("text/plain")
                .finish()
                .drop_body();
            (res, Bytes::from(body))
        };
        match self {
            HandshakeRefusal::NoJanusProtocol => text(
                StatusCode::BAD_REQUEST,
                format!("WebSocket subprotocol '{JANUS_PROTOCOL}' required\n"),
            ),
            HandshakeRefusal::TooManyFromIp(ip, limit) => text(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many connections from {ip} (limit {limit})\n"),
            ),
            HandshakeRefusal::Handshake(e) => (Response::from(*e).drop_body(), Bytes::new()),
        }
    }
}

/// Does the handshake offer `janus-protocol`?
pub fn offers_janus_protocol(head: &RequestHead) -> bool {
    head.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == JANUS_PROTOCOL)
}

/// The handshake's checks, exactly as actix-web-actors made them before (versions 13, 8 and 7,
/// any key): the 101's `Sec-WebSocket-Accept` value, or why not.
pub fn check_handshake(head: &RequestHead) -> Result<HeaderValue, HandshakeError> {
    if head.method != Method::GET {
        return Err(HandshakeError::GetMethodRequired);
    }
    let upgrade_to_websocket = head
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("websocket"));
    if !upgrade_to_websocket {
        return Err(HandshakeError::NoWebsocketUpgrade);
    }
    if !head.upgrade() {
        return Err(HandshakeError::NoConnectionUpgrade);
    }
    let version = head
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .ok_or(HandshakeError::NoVersionHeader)?;
    if !(version == "13" || version == "8" || version == "7") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = head
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(HandshakeError::BadWebsocketKey)?;
    // A base64 digest: always a valid header value.
    HeaderValue::from_bytes(&hash_key(key.as_bytes())).map_err(|_| HandshakeError::BadWebsocketKey)
}

/// The 101 answer: the accept key and the subprotocol.
pub fn switching_protocols(accept: HeaderValue) -> Response<()> {
    ResponseBuilder::new(StatusCode::SWITCHING_PROTOCOLS)
        .upgrade("websocket")
        .insert_header((header::SEC_WEBSOCKET_ACCEPT, accept))
        .insert_header((header::SEC_WEBSOCKET_PROTOCOL, JANUS_PROTOCOL))
        .finish()
        .drop_body()
}

/// The checks in the endpoint's order; the client's address is counted (released by the
/// caller if the connection does not start).
pub fn admit(
    head: &RequestHead,
    state: &TransportEnv,
    client: Option<std::net::IpAddr>,
) -> Result<HeaderValue, HandshakeRefusal> {
    if !offers_janus_protocol(head) {
        return Err(HandshakeRefusal::NoJanusProtocol);
    }
    if let Some(ip) = client {
        let limit = state.limits.connections_per_ip;
        if !state.connections.try_open(ip, limit) {
            log::info!("client connection from {ip} refused: {limit} connections from it already");
            state.session.metrics.refused(Refusal::ConnectionsPerIp);
            return Err(HandshakeRefusal::TooManyFromIp(ip, limit));
        }
    }
    check_handshake(head).map_err(|e| {
        if let Some(ip) = client {
            state.connections.close(ip);
        }
        HandshakeRefusal::Handshake(e)
    })
}

/// Answers an upgrade request on its connection and, if admitted, starts the connection's
/// actor. Errors are I/O errors while writing the answer (the client went away).
pub async fn serve(
    req: Request,
    mut framed: Framed<ClientStream, h1::Codec>,
    state: Arc<TransportEnv>,
) -> Result<(), std::io::Error> {
    let client = super::client_ip(req.head(), req.peer_addr(), &state);
    match admit(req.head(), &state, client) {
        Err(refusal) => {
            let (mut res, body) = refusal.response();
            // The connection ends after the refusal (`connection: close`, as actix-http
            // answered a refused upgrade before; the codec would echo the request's upgrade).
            res.head_mut()
                .set_connection_type(actix_http::ConnectionType::Close);
            let size = BodySize::Sized(body.len() as u64);
            framed.feed(h1::Message::Item((res, size))).await?;
            if !body.is_empty() {
                framed.feed(h1::Message::Chunk(Some(body))).await?;
            }
            framed.send(h1::Message::Chunk(None)).await?;
            // The connection ends here, as it did when the refusal came from the endpoint of
            // an upgrade request (its payload, the WebSocket, was never read).
            Ok(())
        }
        Ok(accept) => {
            let res = switching_protocols(accept);
            let sent = framed
                .send(h1::Message::Item((res, BodySize::Stream)))
                .await;
            if let Err(e) = sent {
                if let Some(ip) = client {
                    state.connections.close(ip);
                }
                return Err(e);
            }
            let parts = framed.into_parts();
            let max = state.ws.max_message_size;
            let io = WsIo::new(parts.io, parts.read_buf, max);
            drop(parts.write_buf);
            ClientConnection::new(state, client, io).start();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_http::test::TestRequest;

    fn head(headers: &[(&str, &str)]) -> Request {
        let mut req = TestRequest::default();
        for (k, v) in headers {
            req.insert_header((*k, *v));
        }
        req.finish()
    }

    const GOOD: &[(&str, &str)] = &[
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "janus-protocol"),
    ];

    #[test]
    fn a_good_handshake_gets_the_rfc_accept_key() {
        let accept = check_handshake(head(GOOD).head()).unwrap();
        // RFC 6455 section 1.3's example.
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(offers_janus_protocol(head(GOOD).head()));
    }

    #[test]
    fn each_missing_part_has_its_refusal() {
        let without = |name: &str| {
            let kept: Vec<_> = GOOD.iter().copied().filter(|(k, _)| *k != name).collect();
            check_handshake(head(&kept).head()).unwrap_err()
        };
        assert_eq!(without("upgrade"), HandshakeError::NoWebsocketUpgrade);
        assert_eq!(without("connection"), HandshakeError::NoConnectionUpgrade);
        assert_eq!(
            without("sec-websocket-version"),
            HandshakeError::NoVersionHeader
        );
        assert_eq!(
            without("sec-websocket-key"),
            HandshakeError::BadWebsocketKey
        );
        let mut old = GOOD.to_vec();
        old[2] = ("sec-websocket-version", "12");
        assert_eq!(
            check_handshake(head(&old).head()).unwrap_err(),
            HandshakeError::UnsupportedVersion
        );
        let mut post = head(GOOD);
        post.head_mut().method = Method::POST;
        assert_eq!(
            check_handshake(post.head()).unwrap_err(),
            HandshakeError::GetMethodRequired
        );
    }

    #[test]
    fn the_subprotocol_is_found_in_a_list() {
        let mut list = GOOD.to_vec();
        list[4] = ("sec-websocket-protocol", "foo, janus-protocol");
        assert!(offers_janus_protocol(head(&list).head()));
        list[4] = ("sec-websocket-protocol", "janus-protocol-x");
        assert!(!offers_janus_protocol(head(&list).head()));
    }

    #[test]
    fn refusals_answer_as_the_endpoint_did() {
        let (res, body) = HandshakeRefusal::NoJanusProtocol.response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            &body[..],
            b"WebSocket subprotocol 'janus-protocol' required\n"
        );
        let ip = "10.0.0.1".parse().unwrap();
        let (res, body) = HandshakeRefusal::TooManyFromIp(ip, 3).response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(&body[..], b"Too many connections from 10.0.0.1 (limit 3)\n");
        let (res, _) = HandshakeRefusal::Handshake(HandshakeError::GetMethodRequired).response();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
