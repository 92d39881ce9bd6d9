//! Reassembly of WebSocket messages split over continuation frames. Janus splits messages
//! larger than about 2800 bytes; browsers may split large ones too.

use actix_http::ws::Item;
use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssemblyError {
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    #[error("continuation frame without a first frame")]
    NoFirstFrame,
    #[error("new message started before the previous one ended")]
    Interleaved,
}

#[derive(Debug)]
pub struct MessageAssembler {
    buffer: BytesMut,
    in_progress: bool,
    max_size: usize,
}

impl MessageAssembler {
    pub fn new(max_size: usize) -> Self {
        MessageAssembler {
            buffer: BytesMut::new(),
            in_progress: false,
            max_size,
        }
    }

    /// Feeds one continuation item; returns the whole message when its last frame arrives.
    /// Text and binary are treated alike (Janus parses both as JSON text).
    pub fn push(&mut self, item: Item) -> Result<Option<Bytes>, AssemblyError> {
        let (first, last, data) = match item {
            Item::FirstText(d) | Item::FirstBinary(d) => (true, false, d),
            Item::Continue(d) => (false, false, d),
            Item::Last(d) => (false, true, d),
        };
        if first {
            if self.in_progress {
                self.reset();
                return Err(AssemblyError::Interleaved);
            }
            self.in_progress = true;
        } else if !self.in_progress {
            return Err(AssemblyError::NoFirstFrame);
        }
        if self.buffer.len() + data.len() > self.max_size {
            self.reset();
            return Err(AssemblyError::TooLarge(self.max_size));
        }
        self.buffer.extend_from_slice(&data);
        if last {
            self.in_progress = false;
            return Ok(Some(self.buffer.split().freeze()));
        }
        Ok(None)
    }

    /// Checks a whole (unfragmented) message against the size limit.
    pub fn check_whole(&self, len: usize) -> Result<(), AssemblyError> {
        if self.in_progress {
            return Err(AssemblyError::Interleaved);
        }
        if len > self.max_size {
            return Err(AssemblyError::TooLarge(self.max_size));
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.buffer.clear();
        self.in_progress = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn reassembles_split_messages() {
        let mut a = MessageAssembler::new(100);
        assert_eq!(a.push(Item::FirstText(b("{\"a\""))), Ok(None));
        assert_eq!(a.push(Item::Continue(b(":"))), Ok(None));
        assert_eq!(a.push(Item::Last(b("1}"))), Ok(Some(b("{\"a\":1}"))));
        // and again, cleanly
        assert_eq!(a.push(Item::FirstBinary(b("x"))), Ok(None));
        assert_eq!(a.push(Item::Last(b("y"))), Ok(Some(b("xy"))));
    }

    #[test]
    fn refuses_bad_sequences_and_huge_messages() {
        let mut a = MessageAssembler::new(4);
        assert_eq!(
            a.push(Item::Continue(b("x"))),
            Err(AssemblyError::NoFirstFrame)
        );
        assert_eq!(a.push(Item::Last(b("x"))), Err(AssemblyError::NoFirstFrame));
        assert_eq!(a.push(Item::FirstText(b("abc"))), Ok(None));
        assert_eq!(
            a.push(Item::Continue(b("de"))),
            Err(AssemblyError::TooLarge(4))
        );
        assert_eq!(a.push(Item::FirstText(b("a"))), Ok(None));
        assert_eq!(
            a.push(Item::FirstText(b("a"))),
            Err(AssemblyError::Interleaved)
        );
        assert_eq!(a.push(Item::FirstText(b("ab"))), Ok(None));
        assert_eq!(a.push(Item::Last(b("cd"))), Ok(Some(b("abcd"))));
        assert!(a.check_whole(5).is_err());
        assert!(a.check_whole(4).is_ok());
    }
}
