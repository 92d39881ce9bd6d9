//! The PROXY protocol (HAProxy's `send-proxy` / `send-proxy-v2`, spec:
//! <https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt>): a load balancer that
//! relays TCP connections writes, before anything else, a header giving the client's address.
//! [`parse`] reads version 2 (binary) and version 1 (text) headers from the bytes received so
//! far; it never asks for more bytes than the header can still have, so the reader consumes
//! the header exactly and what follows (TLS, HTTP) stays on the socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes that open a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// What opens a version 1 header.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest version 1 line, CRLF included (spec 2.1).
const V1_MAX: usize = 107;
/// The shortest header of either version: `PROXY UNKNOWN\r\n`.
const MIN_HEADER: usize = 15;
/// The fixed part of a version 2 header: signature, version and command, family, length.
const V2_FIXED: usize = 16;
/// Longest version 2 address block (TLVs included) accepted. The length field allows 64 KiB;
/// HAProxy's addresses and TLVs (ALPN, authority, unique id, SSL details) take a few hundred
/// bytes, and a peer announcing more is refused rather than read.
pub const V2_MAX_BLOCK: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    pub version: Version,
    /// The original connection's source (the client) and destination, when the header gives
    /// them. None: a LOCAL command (the balancer's own health check), or a family the header
    /// does not describe (UNKNOWN, unspecified, UNIX): the connection stands for itself.
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
}

/// What the bytes received so far make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A header may still be complete: read at least this many more bytes (reading exactly
    /// this many never reads past the header's end).
    Incomplete(usize),
    /// A whole header, `length` bytes long.
    Complete { header: ProxyHeader, length: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not a PROXY protocol header (no v1 or v2 signature)")]
    Signature,
    #[error("PROXY protocol version {0} is not supported (only 2, or the v1 text form)")]
    Version(u8),
    #[error("unknown PROXY protocol v2 command {0:#x}")]
    Command(u8),
    #[error("unknown PROXY protocol v2 address family {0:#x}")]
    Family(u8),
    #[error("unknown PROXY protocol v2 transport protocol {0:#x}")]
    Transport(u8),
    #[error("PROXY protocol v2 address block of {0} bytes is over the {V2_MAX_BLOCK} accepted")]
    TooLong(usize),
    #[error("PROXY protocol v2 address block of {length} bytes is too short for its family ({needed} needed)")]
    AddressesTooShort { length: usize, needed: usize },
    #[error("PROXY protocol v1 line without CRLF in its first {V1_MAX} bytes")]
    V1TooLong,
    #[error("malformed PROXY protocol v1 line: {0}")]
    V1(&'static str),
}

/// Whether `bytes` starts like `signature`: Some(true) when it holds all of it, Some(false)
/// when it differs, None while it is a shorter prefix.
fn starts_with(bytes: &[u8], signature: &[u8]) -> Option<bool> {
    let n = bytes.len().min(signature.len());
    if bytes[..n] != signature[..n] {
        Some(false)
    } else if n == signature.len() {
        Some(true)
    } else {
        None
    }
}

/// The first bytes of a connection: a PROXY protocol header (of either version), something
/// else (TLS, HTTP), or too few bytes to tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    Header,
    NotHeader,
    Undecided,
}

/// Tells a PROXY protocol header from anything a client may send first, from its first bytes
/// (a TLS record starts 0x16, an HTTP request with its method: neither is a prefix of either
/// signature).
pub fn detect(bytes: &[u8]) -> Detection {
    match (
        starts_with(bytes, &V2_SIGNATURE),
        starts_with(bytes, b"PROXY"),
    ) {
        (Some(true), _) | (_, Some(true)) => Detection::Header,
        (Some(false), Some(false)) => Detection::NotHeader,
        _ => Detection::Undecided,
    }
}

/// Parses a header from the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Parsed, HeaderError> {
    if bytes.is_empty() {
        return Ok(Parsed::Incomplete(MIN_HEADER));
    }
    match (
        starts_with(bytes, &V2_SIGNATURE),
        starts_with(bytes, V1_PREFIX),
    ) {
        (Some(false), Some(false)) => Err(HeaderError::Signature),
        (Some(true), _) | (None, _) => parse_v2(bytes),
        (_, Some(true)) | (_, None) => parse_v1(bytes),
    }
}

fn parse_v2(bytes: &[u8]) -> Result<Parsed, HeaderError> {
    if bytes.len() < V2_FIXED {
        return Ok(Parsed::Incomplete(V2_FIXED - bytes.len()));
    }
    let version = bytes[12] >> 4;
    if version != 2 {
        return Err(HeaderError::Version(version));
    }
    let local = match bytes[12] & 0x0f {
        0 => true,
        1 => false,
        other => return Err(HeaderError::Command(other)),
    };
    let (family, transport) = (bytes[13] >> 4, bytes[13] & 0x0f);
    if family > 3 {
        return Err(HeaderError::Family(family));
    }
    if transport > 2 {
        return Err(HeaderError::Transport(transport));
    }
    let block = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if block > V2_MAX_BLOCK {
        return Err(HeaderError::TooLong(block));
    }
    let length = V2_FIXED + block;
    if bytes.len() < length {
        return Ok(Parsed::Incomplete(length - bytes.len()));
    }
    let block = &bytes[V2_FIXED..length];
    let addresses = |needed: usize| {
        if block.len() < needed {
            return Err(HeaderError::AddressesTooShort {
                length: block.len(),
                needed,
            });
        }
        let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
        let ip = |at: usize| -> IpAddr {
            if needed == 12 {
                Ipv4Addr::new(block[at], block[at + 1], block[at + 2], block[at + 3]).into()
            } else {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&block[at..at + 16]);
                Ipv6Addr::from(octets).into()
            }
        };
        let width = (needed - 4) / 2;
        Ok((
            Some(SocketAddr::new(ip(0), port(2 * width))),
            Some(SocketAddr::new(ip(width), port(2 * width + 2))),
        ))
    };
    // LOCAL: the receiver "must use the real connection endpoints" whatever the block says.
    // TLVs after the addresses are skipped: nothing in them is needed.
    let (source, destination) = match (local, family, transport) {
        (true, _, _) | (false, 0 | 3, _) | (false, _, 0) => (None, None),
        (false, 1, _) => addresses(12)?,
        (false, _, _) => addresses(36)?,
    };
    Ok(Parsed::Complete {
        header: ProxyHeader {
            version: Version::V2,
            source,
            destination,
        },
        length,
    })
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, HeaderError> {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if window.contains(&b'\n') {
            // A lone LF must not end the line.
            return Err(HeaderError::V1("line ends without CRLF"));
        }
        if bytes.len() >= V1_MAX {
            return Err(HeaderError::V1TooLong);
        }
        // The line ends with CRLF: two more bytes at least, one if the CR is here.
        let more = if bytes.ends_with(b"\r") { 1 } else { 2 };
        return Ok(Parsed::Incomplete(
            more.max(MIN_HEADER.saturating_sub(bytes.len())),
        ));
    };
    let line = std::str::from_utf8(&bytes[..end]).map_err(|_| HeaderError::V1("not ASCII"))?;
    let mut fields = line.split(' ');
    if fields.next() != Some("PROXY") {
        return Err(HeaderError::V1("no PROXY keyword"));
    }
    let header = |source, destination| ProxyHeader {
        version: Version::V1,
        source,
        destination,
    };
    let length = end + 2;
    let v6 = match fields.next() {
        // The rest of the line is to be ignored.
        Some("UNKNOWN") => {
            return Ok(Parsed::Complete {
                header: header(None, None),
                length,
            })
        }
        Some("TCP4") => false,
        Some("TCP6") => true,
        _ => return Err(HeaderError::V1("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let rest: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = rest[..] else {
        return Err(HeaderError::V1("not four fields after the protocol"));
    };
    let ip = |text: &str| -> Result<IpAddr, HeaderError> {
        let parsed = if v6 {
            text.parse::<Ipv6Addr>().map(IpAddr::from)
        } else {
            text.parse::<Ipv4Addr>().map(IpAddr::from)
        };
        parsed.map_err(|_| HeaderError::V1("address not of the announced family"))
    };
    let port = |text: &str| -> Result<u16, HeaderError> {
        let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        if !digits || (text.len() > 1 && text.starts_with('0')) {
            return Err(HeaderError::V1(
                "port not a decimal number without leading zeroes",
            ));
        }
        text.parse().map_err(|_| HeaderError::V1("port over 65535"))
    };
    Ok(Parsed::Complete {
        header: header(
            Some(SocketAddr::new(ip(src)?, port(sport)?)),
            Some(SocketAddr::new(ip(dst)?, port(dport)?)),
        ),
        length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(ver_cmd: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut bytes = V2_SIGNATURE.to_vec();
        bytes.push(ver_cmd);
        bytes.push(family);
        bytes.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(block);
        bytes
    }

    fn ipv4_block() -> Vec<u8> {
        let mut block = vec![192, 0, 2, 7, 10, 0, 0, 5];
        block.extend_from_slice(&51234u16.to_be_bytes());
        block.extend_from_slice(&8288u16.to_be_bytes());
        block
    }

    fn complete(bytes: &[u8]) -> (ProxyHeader, usize) {
        match parse(bytes) {
            Ok(Parsed::Complete { header, length }) => (header, length),
            other => panic!("{other:?}"),
        }
    }

    fn addr(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    /// Reads `bytes` as the listener does: as many bytes as `parse` asks for, each time.
    /// Returns the header and how many bytes were consumed.
    fn read_exactly(bytes: &[u8]) -> Result<(ProxyHeader, usize), HeaderError> {
        let mut have = 0;
        loop {
            match parse(&bytes[..have])? {
                Parsed::Complete { header, length } => {
                    assert_eq!(length, have, "read past the header");
                    return Ok((header, have));
                }
                Parsed::Incomplete(n) => {
                    assert!(n > 0);
                    assert!(have + n <= bytes.len(), "asked past the input");
                    have += n;
                }
            }
        }
    }

    #[test]
    fn v2_ipv4() {
        let mut bytes = v2(0x21, 0x11, &ipv4_block());
        let header_len = bytes.len();
        assert_eq!(header_len, 28);
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (header, length) = complete(&bytes);
        assert_eq!(length, 28);
        assert_eq!(header.version, Version::V2);
        assert_eq!(header.source, addr("192.0.2.7:51234"));
        assert_eq!(header.destination, addr("10.0.0.5:8288"));
        assert_eq!(read_exactly(&bytes).unwrap(), (header, 28));
        // UDP over IPv4 carries the same addresses.
        let (udp, _) = complete(&v2(0x21, 0x12, &ipv4_block()));
        assert_eq!(udp.source, addr("192.0.2.7:51234"));
    }

    #[test]
    fn v2_ipv6() {
        let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let dst: Ipv6Addr = "fd00::5".parse().unwrap();
        let mut block = src.octets().to_vec();
        block.extend_from_slice(&dst.octets());
        block.extend_from_slice(&443u16.to_be_bytes());
        block.extend_from_slice(&8288u16.to_be_bytes());
        let bytes = v2(0x21, 0x21, &block);
        let (header, length) = read_exactly(&bytes).unwrap();
        assert_eq!(length, 52);
        assert_eq!(header.source, addr("[2001:db8::7]:443"));
        assert_eq!(header.destination, addr("[fd00::5]:8288"));
    }

    #[test]
    fn v2_local_command_and_unspecified_families_carry_no_address() {
        // HAProxy's health checks: LOCAL, family UNSPEC, no block.
        let (header, length) = read_exactly(&v2(0x20, 0x00, &[])).unwrap();
        assert_eq!(
            (header.source, header.destination, length),
            (None, None, 16)
        );
        // LOCAL with a block: the block is skipped, its addresses ignored.
        let (header, length) = read_exactly(&v2(0x20, 0x11, &ipv4_block())).unwrap();
        assert_eq!((header.source, length), (None, 28));
        // PROXY with UNSPEC or UNIX: the connection's own addresses.
        assert_eq!(complete(&v2(0x21, 0x00, &[])).0.source, None);
        assert_eq!(complete(&v2(0x21, 0x31, &[0; 216])).0.source, None);
        assert_eq!(complete(&v2(0x21, 0x10, &ipv4_block())).0.source, None);
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let mut block = ipv4_block();
        // PP2_TYPE_ALPN "http/1.1", PP2_TYPE_UNIQUE_ID, a NOOP.
        block.extend_from_slice(&[0x01, 0x00, 0x08]);
        block.extend_from_slice(b"http/1.1");
        block.extend_from_slice(&[0x05, 0x00, 0x03, b'a', b'b', b'c', 0x04, 0x00, 0x00]);
        let mut bytes = v2(0x21, 0x11, &block);
        let total = bytes.len();
        bytes.extend_from_slice(&[0x16, 0x03, 0x01]);
        let (header, length) = complete(&bytes);
        assert_eq!(length, total);
        assert_eq!(header.source, addr("192.0.2.7:51234"));
        assert_eq!(read_exactly(&bytes[..total]).unwrap().1, total);
    }

    #[test]
    fn truncated_headers_ask_for_what_is_missing() {
        let bytes = v2(0x21, 0x11, &ipv4_block());
        assert_eq!(parse(&[]), Ok(Parsed::Incomplete(15)));
        assert_eq!(parse(&bytes[..1]), Ok(Parsed::Incomplete(15)));
        assert_eq!(parse(&bytes[..12]), Ok(Parsed::Incomplete(4)));
        assert_eq!(parse(&bytes[..16]), Ok(Parsed::Incomplete(12)));
        assert_eq!(parse(&bytes[..27]), Ok(Parsed::Incomplete(1)));
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.5 51234 8288\r\n";
        assert_eq!(parse(&v1[..5]), Ok(Parsed::Incomplete(10)));
        assert_eq!(parse(&v1[..20]), Ok(Parsed::Incomplete(2)));
        assert_eq!(parse(&v1[..v1.len() - 1]), Ok(Parsed::Incomplete(1)));
        // Every prefix of a header is incomplete, never an error.
        for n in 0..bytes.len() {
            assert!(
                matches!(parse(&bytes[..n]), Ok(Parsed::Incomplete(_))),
                "{n}"
            );
        }
        for n in 0..v1.len() {
            assert!(matches!(parse(&v1[..n]), Ok(Parsed::Incomplete(_))), "{n}");
        }
    }

    #[test]
    fn bad_signature_version_command_family() {
        for not_a_header in [
            &b"GET / HTTP/1.1\r\n"[..],
            &[0x16, 0x03, 0x01, 0x02, 0x00],
            b"PROXX TCP4",
            b"proxy TCP4 1.2.3.4 1.2.3.4 1 1\r\n",
            b"\r\n\r\n\0\r\nQUIT!",
            b"\r\nGET",
        ] {
            assert_eq!(
                parse(not_a_header),
                Err(HeaderError::Signature),
                "{not_a_header:?}"
            );
        }
        assert_eq!(
            parse(&v2(0x11, 0x11, &ipv4_block())),
            Err(HeaderError::Version(1))
        );
        assert_eq!(
            parse(&v2(0x31, 0x11, &ipv4_block())),
            Err(HeaderError::Version(3))
        );
        assert_eq!(
            parse(&v2(0x22, 0x11, &ipv4_block())),
            Err(HeaderError::Command(2))
        );
        assert_eq!(
            parse(&v2(0x21, 0x41, &ipv4_block())),
            Err(HeaderError::Family(4))
        );
        assert_eq!(
            parse(&v2(0x21, 0x13, &ipv4_block())),
            Err(HeaderError::Transport(3))
        );
        // Refused from the fixed part, before the block is read.
        assert_eq!(
            parse(&v2(0x11, 0x11, &ipv4_block())[..16]),
            Err(HeaderError::Version(1))
        );
    }

    #[test]
    fn huge_or_short_address_blocks() {
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&huge), Err(HeaderError::TooLong(65535)));
        let mut over = V2_SIGNATURE.to_vec();
        over.extend_from_slice(&[0x21, 0x11]);
        over.extend_from_slice(&u16::try_from(V2_MAX_BLOCK + 1).unwrap().to_be_bytes());
        assert_eq!(parse(&over), Err(HeaderError::TooLong(V2_MAX_BLOCK + 1)));
        assert_eq!(
            parse(&v2(0x21, 0x11, &[1, 2, 3, 4])),
            Err(HeaderError::AddressesTooShort {
                length: 4,
                needed: 12
            })
        );
        assert_eq!(
            parse(&v2(0x21, 0x21, &ipv4_block())),
            Err(HeaderError::AddressesTooShort {
                length: 12,
                needed: 36
            })
        );
    }

    #[test]
    fn v1_forms() {
        let line = b"PROXY TCP4 192.0.2.7 10.0.0.5 51234 8288\r\n";
        let (header, length) = read_exactly(line).unwrap();
        assert_eq!(length, line.len());
        assert_eq!(header.version, Version::V1);
        assert_eq!(header.source, addr("192.0.2.7:51234"));
        assert_eq!(header.destination, addr("10.0.0.5:8288"));
        let mut with_request = line.to_vec();
        with_request.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(complete(&with_request).1, line.len());

        let line = b"PROXY TCP6 2001:db8::7 ::1 1 65535\r\n";
        let (header, _) = read_exactly(line).unwrap();
        assert_eq!(header.source, addr("[2001:db8::7]:1"));
        assert_eq!(header.destination, addr("[::1]:65535"));

        let (header, length) = read_exactly(b"PROXY UNKNOWN\r\n").unwrap();
        assert_eq!((header.source, length), (None, 15));
        let line = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(line.len(), 107);
        assert_eq!(read_exactly(line).unwrap().0.source, None);
    }

    #[test]
    fn v1_malformed() {
        for (line, why) in [
            (&b"PROXY TCP4 192.0.2.7 10.0.0.5 51234\r\n"[..], "fields"),
            (
                b"PROXY TCP4 192.0.2.7  10.0.0.5 51234 8288\r\n",
                "double space",
            ),
            (b"PROXY TCP4 2001:db8::7 10.0.0.5 1 2\r\n", "family"),
            (b"PROXY TCP6 192.0.2.7 ::1 1 2\r\n", "family"),
            (b"PROXY TCP4 192.0.2.07 10.0.0.5 1 2\r\n", "leading zero"),
            (b"PROXY TCP4 192.0.2.7 10.0.0.5 01 2\r\n", "port zero"),
            (b"PROXY TCP4 192.0.2.7 10.0.0.5 65536 2\r\n", "port range"),
            (b"PROXY TCP4 192.0.2.7 10.0.0.5 +1 2\r\n", "sign"),
            (b"PROXY UDP4 192.0.2.7 10.0.0.5 1 2\r\n", "protocol"),
            (b"PROXY TCP4 192.0.2.7 10.0.0.5 1 2\n", "LF alone"),
            (b"PROXY TCP4 192.0.2.7 10.0.0.5 1 2 \r\n", "trailing space"),
            (b"PROXY TCP4 \xff.0.2.7 10.0.0.5 1 2\r\n", "not ASCII"),
            (b"PROXY X\r\nGET / HTTP/1.1\r\n", "short"),
        ] {
            assert!(
                matches!(parse(line), Err(HeaderError::V1(_))),
                "{why}: {:?}",
                parse(line)
            );
        }
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 100]].concat();
        assert_eq!(parse(&long), Err(HeaderError::V1TooLong));
    }

    #[test]
    fn detection_of_a_header_among_first_bytes() {
        assert_eq!(detect(b""), Detection::Undecided);
        assert_eq!(detect(b"P"), Detection::Undecided);
        assert_eq!(detect(b"PRO"), Detection::Undecided);
        assert_eq!(detect(b"PROXY"), Detection::Header);
        assert_eq!(detect(b"\r\n\r\n"), Detection::Undecided);
        assert_eq!(detect(&V2_SIGNATURE), Detection::Header);
        assert_eq!(detect(b"POST / HTTP/1.1"), Detection::NotHeader);
        assert_eq!(detect(b"PUT"), Detection::NotHeader);
        assert_eq!(detect(b"GET / HTTP/1.1"), Detection::NotHeader);
        assert_eq!(detect(&[0x16, 0x03, 0x01]), Detection::NotHeader);
        assert_eq!(detect(b"\r\n\r\n\0\r\nX"), Detection::NotHeader);
    }

    /// Random bytes behind each signature: never a panic, and the reader's invariants hold
    /// (a complete header fits in what was given, more is asked only up to the header's end).
    #[test]
    fn random_input_is_answered_without_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let v1 = b"PROXY TCP4 ".to_vec();
        for i in 0..20_000 {
            let mut bytes = match i % 3 {
                0 => V2_SIGNATURE.to_vec(),
                1 => v1.clone(),
                _ => Vec::new(),
            };
            let len = rng.gen_range(0..64);
            bytes.extend((0..len).map(|_| match rng.gen_range(0..4) {
                0 => b"0123456789. :\r\n"[rng.gen_range(0..15)],
                1 => rng.gen_range(0..4),
                _ => rng.gen(),
            }));
            match parse(&bytes) {
                Ok(Parsed::Complete { length, .. }) => assert!(length <= bytes.len()),
                Ok(Parsed::Incomplete(n)) => assert!(n > 0),
                Err(_) => {}
            }
            // Read as the listener does: a header ends exactly where the reading stopped.
            let mut have = 0;
            while let Ok(parsed) = parse(&bytes[..have]) {
                match parsed {
                    Parsed::Complete { length, .. } => {
                        assert_eq!(length, have, "{bytes:?}");
                        break;
                    }
                    Parsed::Incomplete(n) if have + n <= bytes.len() => have += n,
                    Parsed::Incomplete(_) => break,
                }
            }
        }
    }
}
