//! Which addresses the service may connect to when it fetches a submitted URL or delivers a
//! webhook. A URL names a host; the host resolves to addresses; every address (and every
//! address of every redirect) must be public unless the operator allowed its network.
//!
//! Refused by default: loopback, private (RFC 1918), carrier-grade NAT, link-local,
//! unique-local, site-local, multicast, broadcast, unspecified, documentation, benchmarking,
//! reserved and protocol-assignment ranges, and the IPv6 forms that embed an IPv4 address
//! (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) whenever the embedded address is
//! refused.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network in CIDR notation (`10.1.0.0/16`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` lies in the network. IPv4 networks never contain IPv6 addresses and the
    /// reverse (IPv4-mapped addresses are unwrapped by the caller first).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

/// A CIDR string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a network in CIDR notation (e.g. 10.0.0.0/8 or fd00::/8)")]
pub struct InvalidNetwork(pub String);

impl FromStr for Network {
    type Err = InvalidNetwork;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InvalidNetwork(s.chars().take(64).collect());
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(err)?;
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(err());
        }
        Ok(Network { addr, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16.
    Private,
    /// 100.64.0.0/10.
    SharedAddressSpace,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// fc00::/7.
    UniqueLocal,
    /// fec0::/10 (deprecated, still routed by some networks).
    SiteLocal,
    /// 224/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32.
    Documentation,
    /// 198.18/15.
    Benchmarking,
    /// 240/4, 192.0.0/24 and other reserved or special-purpose blocks.
    Reserved,
}

impl Refusal {
    /// A short name for error messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Loopback => "loopback",
            Refusal::Private => "private",
            Refusal::SharedAddressSpace => "shared address space (CGNAT)",
            Refusal::LinkLocal => "link-local",
            Refusal::UniqueLocal => "unique-local",
            Refusal::SiteLocal => "site-local",
            Refusal::Multicast => "multicast",
            Refusal::Broadcast => "broadcast",
            Refusal::Unspecified => "unspecified",
            Refusal::Documentation => "documentation",
            Refusal::Benchmarking => "benchmarking",
            Refusal::Reserved => "reserved",
        }
    }
}

/// The outbound address policy: public addresses, plus the networks the operator allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed: Vec<Network>,
}

impl AddressPolicy {
    /// The default policy with extra `allowed` networks.
    pub fn allowing(allowed: Vec<Network>) -> AddressPolicy {
        AddressPolicy { allowed }
    }

    /// `Ok` when the service may connect to `ip`, else why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.allowed.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        match ip {
            IpAddr::V4(v4) => classify_v4(v4),
            IpAddr::V6(v6) => match embedded_v4(v6) {
                // the embedded address is what the packets reach; an allowed IPv4 network
                // also allows its mapped forms
                Some(v4) => self.check(IpAddr::V4(v4)),
                None => classify_v6(v6),
            },
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> Result<(), Refusal> {
    let [a, b, c, _] = ip.octets();
    let refusal = match (a, b, c) {
        _ if ip.is_broadcast() => Refusal::Broadcast,
        (0, _, _) => Refusal::Unspecified,
        (127, _, _) => Refusal::Loopback,
        (10, _, _) => Refusal::Private,
        (172, 16..=31, _) => Refusal::Private,
        (192, 168, _) => Refusal::Private,
        (100, 64..=127, _) => Refusal::SharedAddressSpace,
        (169, 254, _) => Refusal::LinkLocal,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Refusal::Documentation,
        (198, 18..=19, _) => Refusal::Benchmarking,
        (192, 0, 0) => Refusal::Reserved,
        // 192.88.99.0/24: the retired 6to4 relay anycast
        (192, 88, 99) => Refusal::Reserved,
        (224..=239, _, _) => Refusal::Multicast,
        (240..=255, _, _) => Refusal::Reserved,
        _ => return Ok(()),
    };
    Err(refusal)
}

fn classify_v6(ip: Ipv6Addr) -> Result<(), Refusal> {
    let s = ip.segments();
    let refusal = if ip.is_unspecified() {
        Refusal::Unspecified
    } else if ip.is_loopback() {
        Refusal::Loopback
    } else if s[0] & 0xff00 == 0xff00 {
        Refusal::Multicast
    } else if s[0] & 0xfe00 == 0xfc00 {
        Refusal::UniqueLocal
    } else if s[0] & 0xffc0 == 0xfe80 {
        Refusal::LinkLocal
    } else if s[0] & 0xffc0 == 0xfec0 {
        Refusal::SiteLocal
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        Refusal::Documentation
    } else if s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0 {
        // 100::/64, discard-only
        Refusal::Reserved
    } else if s[0] == 0x2001 && s[1] < 0x0200 && s[1] != 0 {
        // 2001::/23 IETF protocol assignments (Teredo 2001::/32 is handled as embedded IPv4)
        Refusal::Reserved
    } else if s[0] & 0xe000 != 0x2000 {
        // outside 2000::/3, nothing is globally routed unicast
        Refusal::Reserved
    } else {
        return Ok(());
    };
    Err(refusal)
}

/// The IPv4 address an IPv6 address carries and reaches: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`), 6to4 (`2002:AABB:CCDD::/48`) and
/// Teredo (`2001:0::/32`, client address inverted).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
        return Some(tail(s[6], s[7]));
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(tail(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(tail(s[1], s[2]));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some(tail(!s[6], !s[7]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ip: &str) -> Result<(), Refusal> {
        AddressPolicy::default().check(ip.parse().unwrap())
    }

    #[test]
    fn public_addresses_pass() {
        for ip in ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e"]
        {
            assert_eq!(check(ip), Ok(()), "{ip}");
        }
    }

    #[test]
    fn special_ipv4_ranges_are_refused() {
        let cases = [
            ("127.0.0.1", Refusal::Loopback),
            ("127.255.255.254", Refusal::Loopback),
            ("10.0.0.1", Refusal::Private),
            ("172.16.0.1", Refusal::Private),
            ("172.31.255.255", Refusal::Private),
            ("192.168.1.1", Refusal::Private),
            ("100.64.0.1", Refusal::SharedAddressSpace),
            ("169.254.169.254", Refusal::LinkLocal),
            ("0.0.0.0", Refusal::Unspecified),
            ("0.1.2.3", Refusal::Unspecified),
            ("224.0.0.1", Refusal::Multicast),
            ("239.255.255.250", Refusal::Multicast),
            ("255.255.255.255", Refusal::Broadcast),
            ("240.0.0.1", Refusal::Reserved),
            ("192.0.0.8", Refusal::Reserved),
            ("192.0.2.1", Refusal::Documentation),
            ("198.51.100.7", Refusal::Documentation),
            ("203.0.113.9", Refusal::Documentation),
            ("198.18.0.1", Refusal::Benchmarking),
        ];
        for (ip, why) in cases {
            assert_eq!(check(ip), Err(why), "{ip}");
        }
        // the edges of the private blocks are public
        assert_eq!(check("172.15.255.255"), Ok(()));
        assert_eq!(check("172.32.0.0"), Ok(()));
        assert_eq!(check("100.128.0.0"), Ok(()));
    }

    #[test]
    fn special_ipv6_ranges_are_refused() {
        let cases = [
            ("::1", Refusal::Loopback),
            ("::", Refusal::Unspecified),
            ("fe80::1", Refusal::LinkLocal),
            ("fc00::1", Refusal::UniqueLocal),
            ("fd12:3456::1", Refusal::UniqueLocal),
            ("fec0::1", Refusal::SiteLocal),
            ("ff02::1", Refusal::Multicast),
            ("2001:db8::1", Refusal::Documentation),
            ("100::1", Refusal::Reserved),
            ("4000::1", Refusal::Reserved),
        ];
        for (ip, why) in cases {
            assert_eq!(check(ip), Err(why), "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_of_refused_ipv4_are_refused() {
        let cases = [
            ("::ffff:127.0.0.1", Refusal::Loopback),
            ("::ffff:10.1.2.3", Refusal::Private),
            ("::ffff:169.254.169.254", Refusal::LinkLocal),
            ("::127.0.0.1", Refusal::Loopback),
            ("64:ff9b::192.168.0.1", Refusal::Private),
            ("2002:7f00:0001::1", Refusal::Loopback),
            ("2002:c0a8:0101::", Refusal::Private),
        ];
        for (ip, why) in cases {
            assert_eq!(check(ip), Err(why), "{ip}");
        }
        // Teredo: the client address is stored inverted in the last 32 bits (127.0.0.1 here)
        assert_eq!(check("2001:0:4136:e378:8000:63bf:80ff:fffe"), Err(Refusal::Loopback));
        // the mapped form of a public address is public
        assert_eq!(check("::ffff:93.184.216.34"), Ok(()));
        assert_eq!(check("64:ff9b::8.8.8.8"), Ok(()));
    }

    #[test]
    fn operators_can_allow_networks() {
        let policy =
            AddressPolicy::allowing(vec!["10.20.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        assert_eq!(policy.check("10.20.3.4".parse().unwrap()), Ok(()));
        assert_eq!(policy.check("::ffff:10.20.3.4".parse().unwrap()), Ok(()));
        assert_eq!(policy.check("10.21.0.1".parse().unwrap()), Err(Refusal::Private));
        assert_eq!(policy.check("fd00::5".parse().unwrap()), Ok(()));
        assert_eq!(policy.check("127.0.0.1".parse().unwrap()), Err(Refusal::Loopback));
    }

    #[test]
    fn networks_parse_strictly() {
        assert!("10.0.0.0/8".parse::<Network>().is_ok());
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("fd00::/129".parse::<Network>().is_err());
        assert!("10.0.0.0".parse::<Network>().is_err());
        assert!("x/8".parse::<Network>().is_err());
        let n: Network = "172.16.0.0/12".parse().unwrap();
        assert!(n.contains("172.31.1.1".parse().unwrap()));
        assert!(!n.contains("172.32.0.0".parse().unwrap()));
        assert_eq!(n.to_string(), "172.16.0.0/12");
    }
}
