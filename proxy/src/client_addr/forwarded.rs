//! `X-Forwarded-For` and `Forwarded` (RFC 7239, its `for=` parameter): the chain of addresses
//! HTTP proxies append to, one per hop, the rightmost written by the proxy nearest to us. The
//! client is the rightmost address of the chain that is not itself a trusted proxy: everything
//! left of it was written by a party we do not trust, so could be forged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::TrustedProxies;

/// Which request header the trusted HTTP proxies append the client's address to. Only one is
/// read: a client could add the other itself, and a proxy that appends to one does not touch
/// the other, so reading both would let a client choose its address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (HAProxy `option forwardfor`, nginx, most).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239; HAProxy `option forwarded`).
    Forwarded,
    /// Neither: only the PROXY protocol (or the TCP peer) gives the address.
    None,
}

impl ForwardedHeader {
    pub fn header_name(self) -> Option<&'static str> {
        match self {
            ForwardedHeader::XForwardedFor => Some("x-forwarded-for"),
            ForwardedHeader::Forwarded => Some("forwarded"),
            ForwardedHeader::None => None,
        }
    }
}

/// One hop of the chain: an address, or a node that hides it (`unknown`, an obfuscated
/// `_name`, a `Forwarded` element without `for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    Ip(IpAddr),
    Hidden,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedError {
    #[error("not visible ASCII text")]
    NotText,
    #[error("{0:?} is not an IP address (with an optional port)")]
    Address(String),
    #[error("{0}")]
    Syntax(&'static str),
}

fn check_port(port: &str) -> bool {
    let obfuscated = port.starts_with('_') && port.len() > 1;
    let digits = (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit());
    obfuscated || (digits && port.parse::<u16>().is_ok())
}

/// A node: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`,
/// `unknown`, `_hidden` (ports may be obfuscated too: `_p`).
fn parse_node(text: &str) -> Result<Hop, ForwardedError> {
    let bad = || ForwardedError::Address(text.to_owned());
    let hidden = |name: &str| name.eq_ignore_ascii_case("unknown") || name.starts_with('_');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Hop::Ip(ip));
    }
    let (name, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
            let ip = v6.parse::<Ipv6Addr>().map_err(|_| bad())?;
            match after {
                "" => return Ok(Hop::Ip(ip.into())),
                _ => {
                    let port = after.strip_prefix(':').ok_or_else(bad)?;
                    return if check_port(port) {
                        Ok(Hop::Ip(ip.into()))
                    } else {
                        Err(bad())
                    };
                }
            }
        }
        None => match text.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (text, None),
        },
    };
    if port.is_some_and(|p| !check_port(p)) {
        return Err(bad());
    }
    if hidden(name) && name.len() > 1 {
        return Ok(Hop::Hidden);
    }
    name.parse::<Ipv4Addr>()
        .map(|ip| Hop::Ip(ip.into()))
        .map_err(|_| bad())
}

/// Splits at `separator` outside quoted strings (where `\` escapes the next character).
fn split_outside_quotes(text: &str, separator: char) -> Result<Vec<&str>, ForwardedError> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(ForwardedError::Syntax("unterminated quoted string"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn unquote(value: &str) -> Result<String, ForwardedError> {
    let Some(inner) = value.strip_prefix('"') else {
        return Ok(value.to_owned());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or(ForwardedError::Syntax("text after a quoted string"))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '"' => return Err(ForwardedError::Syntax("text after a quoted string")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The chain of `X-Forwarded-For` values (several header lines form one list, in order).
/// Empty list elements are ignored, as HTTP lists allow.
pub fn parse_x_forwarded_for(values: &[&str]) -> Result<Vec<Hop>, ForwardedError> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(parse_node)
        .collect()
}

/// The chain of `Forwarded` values: one hop per element, its `for` node (an element without
/// `for` hides its client).
pub fn parse_forwarded(values: &[&str]) -> Result<Vec<Hop>, ForwardedError> {
    let mut hops = Vec::new();
    for value in values {
        for element in split_outside_quotes(value, ',')? {
            if element.trim().is_empty() {
                continue;
            }
            let mut node = None;
            for pair in split_outside_quotes(element, ';')? {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let (name, value) = pair
                    .split_once('=')
                    .ok_or(ForwardedError::Syntax("a parameter without '='"))?;
                if !name.trim().eq_ignore_ascii_case("for") {
                    continue;
                }
                if node.is_some() {
                    return Err(ForwardedError::Syntax("`for` twice in one element"));
                }
                node = Some(parse_node(&unquote(value.trim())?)?);
            }
            hops.push(node.unwrap_or(Hop::Hidden));
        }
    }
    Ok(hops)
}

/// The client behind `peer` (the address the connection stands for, after the PROXY
/// protocol): `peer` itself unless it is a trusted proxy; else, from the right end of the
/// chain, the first address that is not a trusted proxy. A hidden hop ends the walk at the
/// last trusted address (the proxy that could not tell); a chain of trusted proxies only gives
/// its leftmost.
pub fn client_ip(peer: IpAddr, hops: &[Hop], trusted: &TrustedProxies) -> IpAddr {
    let mut client = peer.to_canonical();
    if !trusted.contains(client) {
        return client;
    }
    for hop in hops.iter().rev() {
        match hop {
            Hop::Ip(ip) => {
                client = ip.to_canonical();
                if !trusted.contains(client) {
                    break;
                }
            }
            Hop::Hidden => break,
        }
    }
    client
}

/// The client's address for a request from `peer` whose `header` lines are `values`.
/// The header is read only when `peer` is trusted; if it is malformed the answer is `peer`,
/// with the error to log.
pub fn resolve(
    peer: IpAddr,
    header: ForwardedHeader,
    values: &[&[u8]],
    trusted: &TrustedProxies,
) -> (IpAddr, Option<ForwardedError>) {
    let peer = peer.to_canonical();
    if values.is_empty() || header == ForwardedHeader::None || !trusted.contains(peer) {
        return (peer, None);
    }
    let texts: Result<Vec<&str>, _> = values
        .iter()
        .map(|v| {
            std::str::from_utf8(v)
                .ok()
                .filter(|t| t.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
                .ok_or(ForwardedError::NotText)
        })
        .collect();
    let hops = texts.and_then(|texts| match header {
        ForwardedHeader::Forwarded => parse_forwarded(&texts),
        _ => parse_x_forwarded_for(&texts),
    });
    match hops {
        Ok(hops) => (client_ip(peer, &hops, trusted), None),
        Err(e) => (peer, Some(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn hops(list: &[&str]) -> Vec<Hop> {
        list.iter().map(|t| Hop::Ip(ip(t))).collect()
    }

    fn trusted() -> TrustedProxies {
        TrustedProxies::parse(&["10.0.0.0/8", "127.0.0.1/32", "::1/128"]).unwrap()
    }

    #[test]
    fn x_forwarded_for_lists() {
        assert_eq!(
            parse_x_forwarded_for(&["198.51.100.7"]),
            Ok(hops(&["198.51.100.7"]))
        );
        assert_eq!(
            parse_x_forwarded_for(&["203.0.113.9, 198.51.100.7,10.0.0.2", " 10.0.0.3 "]),
            Ok(hops(&[
                "203.0.113.9",
                "198.51.100.7",
                "10.0.0.2",
                "10.0.0.3"
            ]))
        );
        assert_eq!(
            parse_x_forwarded_for(&["2001:db8::7, [2001:db8::8], [2001:db8::9]:443, 192.0.2.1:80"]),
            Ok(hops(&[
                "2001:db8::7",
                "2001:db8::8",
                "2001:db8::9",
                "192.0.2.1"
            ]))
        );
        assert_eq!(
            parse_x_forwarded_for(&["unknown, 192.0.2.1", ", ,"]),
            Ok(vec![Hop::Hidden, Hop::Ip(ip("192.0.2.1"))])
        );
        for bad in [
            "198.51.100",
            "example.com",
            "1.2.3.4:99999",
            "1.2.3.4:",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "1.2.3.4 5.6.7.8",
            "1.2.3.04",
            "[1.2.3.4]",
            "2001:db8::1:99999x",
        ] {
            assert!(
                matches!(
                    parse_x_forwarded_for(&[bad]),
                    Err(ForwardedError::Address(_))
                ),
                "{bad:?}: {:?}",
                parse_x_forwarded_for(&[bad])
            );
        }
    }

    #[test]
    fn forwarded_elements() {
        assert_eq!(
            parse_forwarded(&["for=192.0.2.60;proto=http;by=203.0.113.43"]),
            Ok(hops(&["192.0.2.60"]))
        );
        assert_eq!(
            parse_forwarded(&[
                "For=\"[2001:db8:cafe::17]:4711\", for=198.51.100.7",
                "for=10.0.0.2;by=10.0.0.9"
            ]),
            Ok(hops(&["2001:db8:cafe::17", "198.51.100.7", "10.0.0.2"]))
        );
        assert_eq!(
            parse_forwarded(&["for=unknown, for=_hidden:_port, proto=https, for=\"192.0.2.1:80\""]),
            Ok(vec![
                Hop::Hidden,
                Hop::Hidden,
                Hop::Hidden,
                Hop::Ip(ip("192.0.2.1"))
            ])
        );
        // Separators inside quoted strings do not split.
        assert_eq!(
            parse_forwarded(&["by=\"a,b;c\\\"d\";for=192.0.2.1"]),
            Ok(hops(&["192.0.2.1"]))
        );
        for (bad, why) in [
            ("for=192.0.2.1;for=192.0.2.2", "twice"),
            ("for", "no ="),
            ("for=\"192.0.2.1", "unterminated"),
            ("for=\"192.0.2.1\"x", "after the quote"),
            ("for=2001:db8", "not an address"),
            ("for=example.com", "a name"),
        ] {
            assert!(parse_forwarded(&[bad]).is_err(), "{why}: {bad:?}");
        }
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        let trusted = trusted();
        // An untrusted peer: its headers mean nothing.
        assert_eq!(
            client_ip(ip("192.0.2.1"), &hops(&["198.51.100.7"]), &trusted),
            ip("192.0.2.1")
        );
        // A trusted peer: the last hop it reports.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &hops(&["198.51.100.7"]), &trusted),
            ip("198.51.100.7")
        );
        // Forged entries left of the client are skipped; trusted hops on the right too.
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                &hops(&["6.6.6.6", "198.51.100.7", "10.0.0.3", "10.0.0.2"]),
                &trusted
            ),
            ip("198.51.100.7")
        );
        // No chain: the peer.
        assert_eq!(client_ip(ip("10.0.0.1"), &[], &trusted), ip("10.0.0.1"));
        // Every hop trusted: the leftmost.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &hops(&["10.0.0.7", "10.0.0.2"]), &trusted),
            ip("10.0.0.7")
        );
        // A hidden hop: the proxy that could not tell.
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                &[Hop::Ip(ip("6.6.6.6")), Hop::Hidden, Hop::Ip(ip("10.0.0.2"))],
                &trusted
            ),
            ip("10.0.0.2")
        );
        // IPv6, and IPv4-mapped peers count as IPv4.
        assert_eq!(
            client_ip(ip("::1"), &hops(&["2001:db8::7"]), &trusted),
            ip("2001:db8::7")
        );
        assert_eq!(
            client_ip(
                ip("::ffff:127.0.0.1"),
                &hops(&["::ffff:198.51.100.7"]),
                &trusted
            ),
            ip("198.51.100.7")
        );
        // Nobody trusted: always the peer.
        assert_eq!(
            client_ip(
                ip("127.0.0.1"),
                &hops(&["198.51.100.7"]),
                &TrustedProxies::default()
            ),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn resolve_reads_only_the_configured_header_of_a_trusted_peer() {
        let trusted = trusted();
        let xff = ForwardedHeader::XForwardedFor;
        let peer = ip("127.0.0.1");
        assert_eq!(
            resolve(peer, xff, &[b"198.51.100.7"], &trusted),
            (ip("198.51.100.7"), None)
        );
        assert_eq!(
            resolve(ip("192.0.2.1"), xff, &[b"not parsed at all"], &trusted),
            (ip("192.0.2.1"), None)
        );
        assert_eq!(resolve(peer, xff, &[], &trusted), (peer, None));
        assert_eq!(
            resolve(peer, ForwardedHeader::None, &[b"198.51.100.7"], &trusted),
            (peer, None)
        );
        assert_eq!(
            resolve(
                peer,
                ForwardedHeader::Forwarded,
                &[b"for=198.51.100.7"],
                &trusted
            ),
            (ip("198.51.100.7"), None)
        );
        // Malformed: the peer, and why.
        let (client, error) = resolve(peer, xff, &[b"198.51.100.7, bogus"], &trusted);
        assert_eq!(client, peer);
        assert_eq!(
            error.map(|e| e.to_string()).as_deref(),
            Some("\"bogus\" is not an IP address (with an optional port)")
        );
        assert_eq!(
            resolve(peer, xff, &[b"198.51.100.7\xff"], &trusted),
            (peer, Some(ForwardedError::NotText))
        );
        assert_eq!(
            resolve(peer, xff, &[b"198.51.100.7\x01"], &trusted),
            (peer, Some(ForwardedError::NotText))
        );
    }

    #[test]
    fn header_names_and_config_values() {
        assert_eq!(
            ForwardedHeader::XForwardedFor.header_name(),
            Some("x-forwarded-for")
        );
        assert_eq!(ForwardedHeader::Forwarded.header_name(), Some("forwarded"));
        assert_eq!(ForwardedHeader::None.header_name(), None);
        let parsed: Vec<ForwardedHeader> =
            serde_json::from_str(r#"["x-forwarded-for", "forwarded", "none"]"#).unwrap();
        assert_eq!(
            parsed,
            [
                ForwardedHeader::XForwardedFor,
                ForwardedHeader::Forwarded,
                ForwardedHeader::None
            ]
        );
        assert!(serde_json::from_str::<ForwardedHeader>(r#""X-Real-IP""#).is_err());
    }
}
