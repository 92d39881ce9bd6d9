//! A client WebSocket's bytes after the handshake: frames read from the stream and written to
//! it, with buffers that exist only while there is something in them.
//!
//! Why not actix-web-actors' `WebsocketContext` (or actix-ws): both run the WebSocket as the
//! streaming body of an HTTP/1 response, so actix-http's dispatcher stays alive under it for
//! the connection's life, with its read and write buffers (8 KiB each, never shrunk), its
//! payload channel, timers and request state — about 13 KiB of the 17.6 KiB a browser-like
//! idle client cost (docs/performance.md). Here the handshake is taken from actix-http's
//! upgrade hook (`transport::upgrade`), the dispatcher is gone once it answered, and the
//! connection keeps only the stream, the codec and these two buffers, each released as soon as
//! it is empty: an idle connection holds no buffer at all.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{Codec, Frame, Message, ProtocolError};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at a time: on the stack of the poll, so it costs nothing between
/// reads. A frame larger than this is gathered in the read buffer.
const READ_CHUNK: usize = 8 * 1024;
/// Reads per poll before the connection lets others run (it is polled again at once).
const READS_PER_POLL: usize = 16;

/// The WebSocket side of one client connection.
pub struct WsIo<T> {
    stream: T,
    codec: Codec,
    /// Bytes read but not yet a whole frame. Empty, with no allocation, between frames.
    read: BytesMut,
    /// Encoded frames not yet written. Empty, with no allocation, once written.
    write: BytesMut,
    reads_this_poll: usize,
    eof: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin> WsIo<T> {
    /// `leftover`: bytes that came after the handshake request in the same read (a client may
    /// send its first frames without waiting for the 101). `max_frame`: `ws.max_message_size`.
    pub fn new(stream: T, leftover: BytesMut, max_frame: usize) -> Self {
        WsIo {
            stream,
            codec: Codec::new().max_size(max_frame),
            read: if leftover.is_empty() {
                BytesMut::new()
            } else {
                leftover
            },
            write: BytesMut::new(),
            reads_this_poll: 0,
            eof: false,
        }
    }

    /// Queues a frame; `poll_flush` writes it.
    pub fn send(&mut self, msg: Message) {
        // The server codec's encoder fails on nothing it is given here (no frame-size limit
        // on the way out); a failure would only mean the frame is not sent.
        if let Err(e) = self.codec.encode(msg, &mut self.write) {
            log::debug!("client frame not encoded: {e}");
        }
    }

    /// Whether anything waits to be written.
    pub fn has_pending_writes(&self) -> bool {
        !self.write.is_empty()
    }

    /// Writes what is queued. Ready(Ok) once everything is written (the buffer is then released).
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.write.is_empty() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.write) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the client connection takes no more bytes",
                    )))
                }
                Poll::Ready(Ok(n)) => {
                    let _ = self.write.split_to(n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Everything written: the room goes back (a busy connection allocates it again for
        // its next burst, a cheap allocation next to the frame's own). Unconditionally: a
        // buffer written to its last byte has no capacity left but still holds its
        // allocation (shared with the parts split off).
        self.write = BytesMut::new();
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    /// Ends the stream's write side (TLS: its close_notify) once everything is written.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_flush(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    /// The next frame: decoded from what was read, or read for. Ready(None) at the end of the
    /// stream (a frame cut short by it is dropped, as actix-web-actors' stream dropped it).
    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame, ProtocolError>>> {
        loop {
            if !self.read.is_empty() {
                match self.codec.decode(&mut self.read) {
                    Ok(Some(frame)) => {
                        self.release_read();
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.read = BytesMut::new();
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            if self.eof {
                return Poll::Ready(None);
            }
            if self.reads_this_poll >= READS_PER_POLL {
                self.reads_this_poll = 0;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Uninitialised: zeroing 8 KiB on every read (most of which find nothing, or a
            // few hundred bytes) cost more than the rest of a relayed request.
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut buf = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    self.reads_this_poll += 1;
                    let filled = buf.filled();
                    if filled.is_empty() {
                        self.eof = true;
                        self.read = BytesMut::new();
                        return Poll::Ready(None);
                    } else {
                        self.read.extend_from_slice(filled);
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.eof = true;
                    self.read = BytesMut::new();
                    return Poll::Ready(Some(Err(ProtocolError::Io(e))));
                }
                Poll::Pending => {
                    self.reads_this_poll = 0;
                    return Poll::Pending;
                }
            }
        }
    }

    /// Between frames the read buffer holds nothing: give its room back.
    fn release_read(&mut self) {
        // Even with no capacity left it may hold the allocation the frames were split from.
        if self.read.is_empty() {
            self.read = BytesMut::new();
        }
    }

    /// Bytes held in buffers now (for tests): both buffers' room, or 1 for a buffer that holds
    /// an allocation with no room left.
    pub fn buffered_capacity(&self) -> usize {
        let held = |b: &BytesMut| {
            // `BytesMut::new()` points at no allocation: a dangling, never-null pointer with
            // capacity 0; anything split from a real buffer points inside it.
            if b.capacity() == 0 && b.as_ptr() != BytesMut::new().as_ptr() {
                1
            } else {
                b.capacity()
            }
        };
        held(&self.read) + held(&self.write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_http::ws::{CloseCode, CloseReason};
    use std::future::poll_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client's frame: masked, as a browser sends it.
    fn client_frame(msg: Message) -> BytesMut {
        let mut out = BytesMut::new();
        Codec::new().client_mode().encode(msg, &mut out).unwrap();
        out
    }

    fn text(s: &str) -> Message {
        Message::Text(s.to_owned().into())
    }

    async fn next(io: &mut WsIo<tokio::io::DuplexStream>) -> Option<Result<Frame, ProtocolError>> {
        poll_fn(|cx| io.poll_frame(cx)).await
    }

    #[tokio::test]
    async fn frames_are_read_and_no_buffer_is_kept_between_them() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut io = WsIo::new(server, BytesMut::new(), 1024);
        assert_eq!(io.buffered_capacity(), 0);
        let mut both = client_frame(text("{\"janus\":\"ping\"}"));
        both.extend_from_slice(&client_frame(text("second")));
        client.write_all(&both).await.unwrap();
        match next(&mut io).await {
            Some(Ok(Frame::Text(b))) => assert_eq!(&b[..], b"{\"janus\":\"ping\"}"),
            other => panic!("{other:?}"),
        }
        match next(&mut io).await {
            Some(Ok(Frame::Text(b))) => assert_eq!(&b[..], b"second"),
            other => panic!("{other:?}"),
        }
        assert_eq!(io.buffered_capacity(), 0, "idle: no read buffer");
    }

    #[tokio::test]
    async fn a_frame_split_over_reads_is_gathered() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut io = WsIo::new(server, BytesMut::new(), 64 * 1024);
        let big = "x".repeat(20_000);
        let frame = client_frame(text(&big));
        let (a, b) = frame.split_at(7);
        client.write_all(a).await.unwrap();
        let pending = poll_fn(|cx| Poll::Ready(io.poll_frame(cx))).await;
        assert!(pending.is_pending());
        client.write_all(b).await.unwrap();
        match next(&mut io).await {
            Some(Ok(Frame::Text(t))) => assert_eq!(t.len(), 20_000),
            other => panic!("{other:?}"),
        }
        assert_eq!(io.buffered_capacity(), 0);
    }

    #[tokio::test]
    async fn bytes_after_the_handshake_are_read_first() {
        let (_client, server) = tokio::io::duplex(1024);
        let leftover = client_frame(text("early"));
        let mut io = WsIo::new(server, leftover, 1024);
        match next(&mut io).await {
            Some(Ok(Frame::Text(b))) => assert_eq!(&b[..], b"early"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_oversized_frame_is_an_overflow_and_the_end_is_none() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut io = WsIo::new(server, BytesMut::new(), 100);
        client
            .write_all(&client_frame(text(&"y".repeat(101))))
            .await
            .unwrap();
        assert!(matches!(
            next(&mut io).await,
            Some(Err(ProtocolError::Overflow))
        ));
        drop(client);
        assert!(next(&mut io).await.is_none());
    }

    #[tokio::test]
    async fn an_end_inside_a_frame_ends_the_stream() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut io = WsIo::new(server, BytesMut::new(), 1024);
        let frame = client_frame(text("cut short"));
        client.write_all(&frame[..5]).await.unwrap();
        drop(client);
        assert!(next(&mut io).await.is_none());
        assert_eq!(io.buffered_capacity(), 0);
    }

    #[tokio::test]
    async fn written_frames_arrive_and_the_write_buffer_is_released() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut io = WsIo::new(server, BytesMut::new(), 1024);
        io.send(text("{\"janus\":\"pong\"}"));
        io.send(Message::Close(Some(CloseReason {
            code: CloseCode::Size,
            description: Some("too big".into()),
        })));
        assert!(io.has_pending_writes());
        poll_fn(|cx| io.poll_shutdown(cx)).await.unwrap();
        assert_eq!(io.buffered_capacity(), 0);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        let mut got = BytesMut::from(&got[..]);
        let mut codec = Codec::new().client_mode();
        match codec.decode(&mut got).unwrap() {
            Some(Frame::Text(t)) => assert_eq!(&t[..], b"{\"janus\":\"pong\"}"),
            other => panic!("{other:?}"),
        }
        match codec.decode(&mut got).unwrap() {
            Some(Frame::Close(Some(r))) => assert_eq!(r.code, CloseCode::Size),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_reader_keeps_the_rest_queued() {
        let (mut client, server) = tokio::io::duplex(16);
        let mut io = WsIo::new(server, BytesMut::new(), 1024);
        io.send(text(&"z".repeat(100)));
        let first = poll_fn(|cx| Poll::Ready(io.poll_flush(cx))).await;
        assert!(first.is_pending(), "16 bytes of room for a 102-byte frame");
        assert!(io.has_pending_writes());
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 102];
            client.read_exact(&mut got).await.unwrap();
            got
        });
        poll_fn(|cx| io.poll_flush(cx)).await.unwrap();
        assert_eq!(reader.await.unwrap().len(), 102);
        assert_eq!(io.buffered_capacity(), 0);
    }
}
