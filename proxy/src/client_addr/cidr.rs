//! Address ranges (CIDR) and the list of trusted proxies (`limits.trusted_proxies`): the peers
//! that may say who the client behind them is, with a PROXY protocol header or an
//! `X-Forwarded-For` / `Forwarded` header.

use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not an IP address or a CIDR range (e.g. 10.0.0.0/8, ::1/128)")]
    NotAnAddress(String),
    #[error("{text:?}: prefix length {prefix} is over {max}")]
    Prefix { text: String, prefix: u8, max: u8 },
    #[error("{text:?} has host bits set: the range is {network}/{prefix}")]
    HostBits {
        text: String,
        network: IpAddr,
        prefix: u8,
    },
}

/// An IPv4 or IPv6 network: its address (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// `u128` mask of the `prefix` leading bits out of `bits`.
fn mask(prefix: u8, bits: u8) -> u128 {
    let all = if bits == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    match u32::from(bits - prefix) {
        0 => all,
        host if host >= 128 => 0,
        host => all & !((1u128 << host) - 1),
    }
}

fn bits_of(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

impl Cidr {
    /// Does the range hold `ip`? An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a socket
    /// bound to `[::]` sees of an IPv4 peer) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (value, bits) = bits_of(ip.to_canonical());
        let (network, network_bits) = bits_of(self.network);
        bits == network_bits && value & mask(self.prefix, bits) == network
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `address/prefix`, or a bare address (one host: /32 or /128).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let not_an_address = || CidrError::NotAnAddress(text.to_owned());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let ip = IpAddr::from_str(address)
            .map_err(|_| not_an_address())?
            .to_canonical();
        let max = bits_of(ip).1;
        let prefix = match prefix {
            None => max,
            // Digits only: `u8::from_str` would take "+8".
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| not_an_address())?
            }
            Some(_) => return Err(not_an_address()),
        };
        if prefix > max {
            return Err(CidrError::Prefix {
                text: text.to_owned(),
                prefix,
                max,
            });
        }
        let (value, bits) = bits_of(ip);
        let network_bits = value & mask(prefix, bits);
        if network_bits != value {
            // A typo such as 10.0.0.1/8 is refused rather than silently widened.
            let network = match ip {
                IpAddr::V4(_) => {
                    IpAddr::from(u32::try_from(network_bits).unwrap_or(0).to_be_bytes())
                }
                IpAddr::V6(_) => IpAddr::from(network_bits.to_be_bytes()),
            };
            return Err(CidrError::HostBits {
                text: text.to_owned(),
                network,
                prefix,
            });
        }
        Ok(Cidr {
            network: ip,
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The proxies whose word about the client's address is believed. Empty: nobody's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn parse<S: AsRef<str>>(ranges: &[S]) -> Result<Self, CidrError> {
        ranges
            .iter()
            .map(|r| r.as_ref().trim().parse())
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_ranges() {
        let net = cidr("10.0.0.0/8");
        assert!(net.contains(ip("10.0.0.0")));
        assert!(net.contains(ip("10.255.255.255")));
        assert!(!net.contains(ip("11.0.0.0")));
        assert!(!net.contains(ip("9.255.255.255")));
        let host = cidr("127.0.0.1/32");
        assert!(host.contains(ip("127.0.0.1")));
        assert!(!host.contains(ip("127.0.0.2")));
        let odd = cidr("192.168.4.0/22");
        assert!(odd.contains(ip("192.168.7.255")));
        assert!(!odd.contains(ip("192.168.8.0")));
        let all = cidr("0.0.0.0/0");
        assert!(all.contains(ip("1.2.3.4")));
        assert!(all.contains(ip("255.255.255.255")));
        assert!(
            !all.contains(ip("::1")),
            "an IPv4 range holds no IPv6 address"
        );
        assert_eq!(cidr("127.0.0.1"), host, "a bare address is one host");
    }

    #[test]
    fn ipv6_ranges() {
        let loopback = cidr("::1/128");
        assert!(loopback.contains(ip("::1")));
        assert!(!loopback.contains(ip("::2")));
        let net = cidr("fd00::/8");
        assert!(net.contains(ip("fdff:ffff::1")));
        assert!(!net.contains(ip("fe00::1")));
        let net = cidr("2001:db8:1234::/48");
        assert!(net.contains(ip("2001:db8:1234:ffff::9")));
        assert!(!net.contains(ip("2001:db8:1235::")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert!(!cidr("::/0").contains(ip("10.0.0.1")));
        assert_eq!(cidr("::1"), loopback);
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let net = cidr("127.0.0.0/8");
        assert!(net.contains(ip("::ffff:127.0.0.1")));
        assert!(!net.contains(ip("::ffff:128.0.0.1")));
        // A mapped range is the IPv4 range.
        assert_eq!(cidr("::ffff:10.0.0.0/8"), cidr("10.0.0.0/8"));
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in [
            "",
            "10.0.0.0/",
            "/8",
            "10.0.0/8",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0.0/-1",
            "10.0.0.0/1000",
            "localhost",
            "10.0.0.0 /8",
            "::1/",
            "::g/64",
        ] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::NotAnAddress(_))),
                "{bad:?}: {:?}",
                bad.parse::<Cidr>()
            );
        }
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::Prefix {
                text: "10.0.0.0/33".into(),
                prefix: 33,
                max: 32
            })
        );
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::Prefix { max: 128, .. })
        ));
        let err = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"10.0.0.1/8\" has host bits set: the range is 10.0.0.0/8"
        );
        assert!(matches!(
            "fd00::1/8".parse::<Cidr>(),
            Err(CidrError::HostBits { prefix: 8, .. })
        ));
    }

    #[test]
    fn trusted_list() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8", " 127.0.0.1/32 ", "::1/128"]).unwrap();
        assert!(trusted.contains(ip("10.1.2.3")));
        assert!(trusted.contains(ip("127.0.0.1")));
        assert!(trusted.contains(ip("::1")));
        assert!(!trusted.contains(ip("127.0.0.2")));
        assert!(!trusted.contains(ip("192.0.2.1")));
        let none = TrustedProxies::default();
        assert!(none.is_empty());
        assert!(!none.contains(ip("127.0.0.1")));
        assert!(TrustedProxies::parse(&["10.0.0.0/8", "nonsense"]).is_err());
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
    }
}
