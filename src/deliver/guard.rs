//! The SSRF guard: which IP addresses delivery may connect to.
//!
//! A subscription's URL is user input, so without a guard anyone who can create a subscription
//! could make Herald POST to its own loopback services, the private network around it or a cloud
//! metadata endpoint. The guard is a pure function over one address, applied by the connector
//! (`super::connect`) to every address a target *resolved to* (and to IP-literal hosts, which never
//! reach DNS), and the connector then dials only the addresses that passed. Checking the resolved
//! addresses rather than the host name, and resolving only once, is what defeats DNS rebinding: a
//! name that answers "public" to a check and "private" to the connect is never resolved twice.
//!
//! IPv6 forms that carry an IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
//! `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) are judged by the IPv4 address they lead to, so
//! `::ffff:127.0.0.1` is as refused as `127.0.0.1`. The operator's `[delivery] allow_networks`
//! overrides everything, matched against the address and against its embedded IPv4 address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why an address is not a public unicast destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reserved {
    /// `0.0.0.0`, `::`.
    Unspecified,
    /// `0.0.0.0/8` ("this network"): connects to the local host on Linux.
    ThisNetwork,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918: `10/8`, `172.16/12`, `192.168/16`.
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT (RFC 6598).
    SharedCgnat,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// `fec0::/10`, deprecated site-local IPv6: private by intent.
    SiteLocal,
    /// `fc00::/7` (RFC 4193).
    UniqueLocal,
    /// A cloud instance-metadata address (AWS/GCP/Azure `169.254.169.254`, AWS `fd00:ec2::254`,
    /// Alibaba `100.100.100.200`, Oracle `192.0.0.192`). Named apart from the range it sits in
    /// because it is the address an SSRF attack wants most, and the message should say so.
    Metadata,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `240.0.0.0/4` (former class E): not routable on the internet.
    ReservedV4,
}

impl Reserved {
    /// The adjective used in messages: "10.0.0.5 is a *private* address".
    pub fn describe(self) -> &'static str {
        match self {
            Reserved::Unspecified => "unspecified",
            Reserved::ThisNetwork => "\"this network\" (0.0.0.0/8)",
            Reserved::Loopback => "loopback",
            Reserved::Private => "private",
            Reserved::SharedCgnat => "shared (carrier-grade NAT)",
            Reserved::LinkLocal => "link-local",
            Reserved::SiteLocal => "site-local",
            Reserved::UniqueLocal => "unique-local",
            Reserved::Metadata => "cloud metadata",
            Reserved::Multicast => "multicast",
            Reserved::Broadcast => "broadcast",
            Reserved::ReservedV4 => "reserved",
        }
    }
}

/// An address the guard refused, and why. Its `Display` reads "10.0.0.5 is a private address".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The address as resolved (an IPv6 form stays in its IPv6 spelling).
    pub addr: IpAddr,
    /// For an IPv6 form of an IPv4 address, the class of that IPv4 address.
    pub kind: Reserved,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is a {} address", self.addr, self.kind.describe())
    }
}

/// AWS's IPv6 instance-metadata address.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// Whether delivery may connect to `addr`: `Ok` for public unicast addresses and for anything
/// inside `allow`; otherwise the reason.
pub fn check(addr: IpAddr, allow: &[IpNet]) -> Result<(), Refusal> {
    if allow.iter().any(|net| net.contains(&addr)) {
        return Ok(());
    }
    if let IpAddr::V6(v6) = addr
        && let Some(v4) = embedded_v4(v6)
        && allow.iter().any(|net| net.contains(&IpAddr::V4(v4)))
    {
        return Ok(());
    }
    match reserved(addr) {
        None => Ok(()),
        Some(kind) => Err(Refusal { addr, kind }),
    }
}

/// Classifies an address that is not a public unicast destination; `None` for one that is.
pub fn reserved(addr: IpAddr) -> Option<Reserved> {
    match addr {
        IpAddr::V4(v4) => reserved_v4(v4),
        IpAddr::V6(v6) => reserved_v6(v6),
    }
}

fn reserved_v4(ip: Ipv4Addr) -> Option<Reserved> {
    let [a, b, c, d] = ip.octets();
    Some(match (a, b, c, d) {
        (169, 254, 169, 254) | (100, 100, 100, 200) | (192, 0, 0, 192) => Reserved::Metadata,
        (0, 0, 0, 0) => Reserved::Unspecified,
        (0, ..) => Reserved::ThisNetwork,
        (127, ..) => Reserved::Loopback,
        (10, ..) | (192, 168, ..) => Reserved::Private,
        (172, b, ..) if b & 0xf0 == 16 => Reserved::Private,
        (100, b, ..) if b & 0xc0 == 64 => Reserved::SharedCgnat,
        (169, 254, ..) => Reserved::LinkLocal,
        (255, 255, 255, 255) => Reserved::Broadcast,
        (a, ..) if a & 0xf0 == 224 => Reserved::Multicast,
        (a, ..) if a & 0xf0 == 240 => Reserved::ReservedV4,
        _ => return None,
    })
}

fn reserved_v6(ip: Ipv6Addr) -> Option<Reserved> {
    if ip == AWS_METADATA_V6 {
        return Some(Reserved::Metadata);
    }
    if ip.is_unspecified() {
        return Some(Reserved::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Reserved::Loopback);
    }
    if let Some(v4) = embedded_v4(ip) {
        // An IPv6 form of an IPv4 address reaches that IPv4 address (through the dual stack,
        // a NAT64 gateway or a 6to4 relay); judge it as that address.
        return reserved_v4(v4);
    }
    let first = ip.segments()[0];
    Some(match first {
        f if f & 0xffc0 == 0xfe80 => Reserved::LinkLocal,
        f if f & 0xffc0 == 0xfec0 => Reserved::SiteLocal,
        f if f & 0xfe00 == 0xfc00 => Reserved::UniqueLocal,
        f if f & 0xff00 == 0xff00 => Reserved::Multicast,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries, for the forms that route to it.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible; `::` and `::1` are caught first).
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        // 64:ff9b::a.b.c.d, the NAT64 well-known prefix (RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 2002:aabb:ccdd::/48, 6to4 (RFC 3056): the relay forwards to a.b.c.d.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classifies_addresses() {
        use Reserved::*;
        let table: &[(&str, Option<Reserved>)] = &[
            // Public addresses pass.
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("93.184.216.34", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("169.253.255.255", None),
            ("223.255.255.255", None),
            ("2606:4700:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::808:808", None),
            ("2002:808:808::1", None),
            // IPv4 specials.
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(ThisNetwork)),
            ("127.0.0.1", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("10.0.0.5", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("100.64.0.1", Some(SharedCgnat)),
            ("100.127.255.255", Some(SharedCgnat)),
            ("169.254.0.1", Some(LinkLocal)),
            ("169.254.169.254", Some(Metadata)),
            ("100.100.100.200", Some(Metadata)),
            ("192.0.0.192", Some(Metadata)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("240.0.0.1", Some(ReservedV4)),
            // IPv6 specials.
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fec0::1", Some(SiteLocal)),
            ("fc00::1", Some(UniqueLocal)),
            ("fd12:3456::1", Some(UniqueLocal)),
            ("fd00:ec2::254", Some(Metadata)),
            ("ff02::1", Some(Multicast)),
            // IPv6 forms of IPv4 specials.
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:10.0.0.5", Some(Private)),
            ("::ffff:169.254.169.254", Some(Metadata)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::127.0.0.1", Some(Loopback)),
            ("::192.168.0.1", Some(Private)),
            ("::2", Some(ThisNetwork)),
            ("64:ff9b::10.0.0.1", Some(Private)),
            ("64:ff9b::a9fe:a9fe", Some(Metadata)),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:c0a8:101::1", Some(Private)),
        ];
        for (addr, want) in table {
            assert_eq!(reserved(ip(addr)), *want, "{addr}");
            assert_eq!(check(ip(addr), &[]).is_ok(), want.is_none(), "{addr}");
        }
    }

    #[test]
    fn allow_networks_override() {
        let allow: Vec<IpNet> = ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let table: &[(&str, bool)] = &[
            ("10.0.0.5", true),
            ("::ffff:10.1.2.3", true),
            ("64:ff9b::10.0.0.1", true),
            ("127.0.0.1", true),
            ("::ffff:127.0.0.1", true),
            ("127.0.0.2", false),
            ("::1", false),
            ("192.168.1.1", false),
            ("fd00:ec2::254", true),
            ("fc00::1", false),
            ("8.8.8.8", true),
        ];
        for (addr, ok) in table {
            assert_eq!(check(ip(addr), &allow).is_ok(), *ok, "{addr}");
        }
    }

    #[test]
    fn refusal_reads_well() {
        let r = check(ip("10.0.0.5"), &[]).unwrap_err();
        assert_eq!(r.to_string(), "10.0.0.5 is a private address");
        let r = check(ip("169.254.169.254"), &[]).unwrap_err();
        assert_eq!(r.to_string(), "169.254.169.254 is a cloud metadata address");
    }
}
