//! Opening one delivery connection: resolve → guard → TCP → TLS, within a connect timeout.
//!
//! `super::pool` calls this only when it has no idle connection for an origin, so everything here
//! is per *connection*, not per delivery. The SSRF guard sits between resolving and dialing: the
//! name is resolved once, every address goes through [`guard::check`], and
//! only the addresses that passed are dialed (DNS rebinding cannot swap in a private address
//! between a check and a second lookup, because there is no second lookup). The connect timeout
//! covers DNS, TCP and TLS together; it is split across a target's addresses, like hyper's own
//! connector does, so one black-holed address cannot eat the whole budget. Every socket gets
//! `TCP_NODELAY`, and TLS (rustls, ring) offers `h2` and `http/1.1` by ALPN; the pool speaks
//! HTTP/2 where the server picked it.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use ipnet::IpNet;
use rustls::pki_types::ServerName;
use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::guard::{self, Refusal};

/// At most this many resolved addresses are dialed for one connection: a name with hundreds of
/// records must not turn one connect into hundreds of dials.
const MAX_ADDRESSES: usize = 8;

/// Why a connection could not be made; `super::client` tells `Refused` from `Connect` by variant.
/// Messages name the host, never the path or query, which can carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URI has no usable host or a scheme other than `http`/`https`.
    #[error("bad target URL: {0}")]
    BadTarget(&'static str),
    /// DNS failed.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: Box<str>,
        #[source]
        source: io::Error,
    },
    /// DNS answered with no address.
    #[error("{host} resolved to no address")]
    NoAddress { host: Box<str> },
    /// Every address the target resolved to was refused by the SSRF guard.
    #[error("{0}")]
    Refused(RefusedTarget),
    /// Every allowed address failed to connect; the last failure is kept.
    #[error("connect to {addr} failed: {source}")]
    Tcp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Certificate, protocol or handshake I/O failure.
    #[error("TLS handshake with {host} failed: {source}")]
    Tls {
        host: Box<str>,
        #[source]
        source: io::Error,
    },
    /// The HTTP/2 connection preface failed after TLS had negotiated `h2`.
    #[error("HTTP/2 handshake with {host} failed: {source}")]
    Handshake {
        host: Box<str>,
        #[source]
        source: hyper::Error,
    },
    /// DNS + TCP + TLS took longer than the connect timeout.
    #[error("connect timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// The refusal of a whole target: the first refused address, and the host name when the address
/// came from DNS (so the operator sees which name led there).
#[derive(Debug)]
pub struct RefusedTarget {
    /// `None` for an IP-literal host.
    pub host: Option<Box<str>>,
    pub refusal: Refusal,
}

impl fmt::Display for RefusedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            None => write!(f, "refused: {}", self.refusal)?,
            Some(host) => write!(
                f,
                "refused: {host} resolves to {}, a {} address",
                self.refusal.addr,
                self.refusal.kind.describe()
            )?,
        }
        f.write_str("; add it to [delivery] allow_networks to allow it")
    }
}

/// What every connection of one [`Client`](super::Client) is opened with.
pub(super) struct ConnectorShared {
    pub tls: TlsConnector,
    pub allow: Vec<IpNet>,
}

/// Opens a connection to `dst` within `timeout` (DNS, TCP and TLS together).
pub(super) async fn connect(
    shared: &ConnectorShared,
    dst: &Uri,
    timeout: Duration,
) -> Result<Stream, ConnectError> {
    let deadline = Instant::now() + timeout;
    match tokio::time::timeout_at(deadline, connect_by(shared, dst, deadline)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout(timeout)),
    }
}

/// Whether the target is `https`, with its host (brackets stripped) and port.
pub(super) fn target(uri: &Uri) -> Result<(bool, &str, u16), ConnectError> {
    let tls = is_https(uri)?;
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or(ConnectError::BadTarget("the URL has no host"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok((tls, host, port))
}

/// Whether `uri` is `https` (else `http`); any other scheme, or none, is refused.
pub(super) fn is_https(uri: &Uri) -> Result<bool, ConnectError> {
    match uri.scheme_str() {
        Some("https") => Ok(true),
        Some("http") => Ok(false),
        Some(_) => Err(ConnectError::BadTarget("the scheme must be http or https")),
        None => Err(ConnectError::BadTarget("the URL must be absolute")),
    }
}

async fn connect_by(
    shared: &ConnectorShared,
    dst: &Uri,
    deadline: Instant,
) -> Result<Stream, ConnectError> {
    let (tls, host, port) = target(dst)?;
    let addrs = resolve_allowed(host, port, &shared.allow).await?;
    let tcp = dial(&addrs, deadline).await?;
    if !tls {
        return Ok(Stream::Plain(tcp));
    }
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| ConnectError::BadTarget("the host is not a valid TLS server name"))?;
    let stream = shared
        .tls
        .connect(name, tcp)
        .await
        .map_err(|source| ConnectError::Tls {
            host: host.into(),
            source,
        })?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// Resolves `host` once (IP literals skip DNS) and keeps the addresses the guard lets through.
async fn resolve_allowed(
    host: &str,
    port: u16,
    allow: &[IpNet],
) -> Result<SmallVec<[SocketAddr; 4]>, ConnectError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match guard::check(ip, allow) {
            Ok(()) => Ok(SmallVec::from_elem(SocketAddr::new(ip, port), 1)),
            Err(refusal) => Err(ConnectError::Refused(RefusedTarget {
                host: None,
                refusal,
            })),
        };
    }
    let resolved = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| ConnectError::Resolve {
            host: host.into(),
            source,
        })?;
    let mut allowed = SmallVec::new();
    let mut first_refusal = None;
    for addr in resolved {
        match guard::check(addr.ip(), allow) {
            Ok(()) if allowed.len() < MAX_ADDRESSES => allowed.push(addr),
            Ok(()) => {}
            Err(refusal) => {
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    if allowed.is_empty() {
        return Err(match first_refusal {
            Some(refusal) => ConnectError::Refused(RefusedTarget {
                host: Some(host.into()),
                refusal,
            }),
            None => ConnectError::NoAddress { host: host.into() },
        });
    }
    Ok(allowed)
}

/// Dials the addresses in order; each gets an equal share of the time left, so a black-holed
/// first address still leaves time for the others.
async fn dial(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, ConnectError> {
    let mut last_error = None;
    for (i, &addr) in addrs.iter().enumerate() {
        let result = if i + 1 == addrs.len() {
            // The last address gets all the time left; the caller's deadline bounds it and
            // reports the connect timeout as such.
            TcpStream::connect(addr).await
        } else {
            let left = deadline.saturating_duration_since(Instant::now());
            let share = left / (addrs.len() - i) as u32;
            match tokio::time::timeout(share, TcpStream::connect(addr)).await {
                Ok(result) => result,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
            }
        };
        match result {
            Ok(tcp) => {
                // Whole-body writes do not need it, but a request written in pieces (TLS
                // records, HTTP/2 frames) must not wait for Nagle.
                tcp.set_nodelay(true)
                    .map_err(|source| ConnectError::Tcp { addr, source })?;
                return Ok(tcp);
            }
            Err(source) => last_error = Some(ConnectError::Tcp { addr, source }),
        }
    }
    // `resolve_allowed` never returns an empty list; the fallback keeps this total anyway.
    Err(last_error.unwrap_or(ConnectError::BadTarget("no address to connect to")))
}

/// A delivery connection: plain TCP or TLS over TCP.
pub(super) enum Stream {
    Plain(TcpStream),
    /// Boxed: a TLS stream is far larger than a `TcpStream`.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether TLS negotiated HTTP/2 by ALPN (plain HTTP is always HTTP/1.1).
    pub(super) fn is_h2(&self) -> bool {
        match self {
            Stream::Plain(_) => false,
            Stream::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    // Forwarded so hyper keeps writing head and body with one `writev` (PERF-NOTES: syscalls
    // are the cost).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(https, host, port)`.
    type Target = (bool, &'static str, u16);

    #[test]
    fn reads_targets() {
        let table: &[(&str, Option<Target>)] = &[
            ("http://example.com/hook", Some((false, "example.com", 80))),
            ("https://example.com/hook", Some((true, "example.com", 443))),
            (
                "https://example.com:8443/",
                Some((true, "example.com", 8443)),
            ),
            ("http://10.0.0.5:81/x?y", Some((false, "10.0.0.5", 81))),
            ("http://[::1]:8080/", Some((false, "::1", 8080))),
            (
                "https://[fd00:ec2::254]/",
                Some((true, "fd00:ec2::254", 443)),
            ),
            ("ftp://example.com/", None),
            ("/relative/path", None),
        ];
        for (uri, want) in table {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(target(&uri).ok(), *want, "{uri}");
        }
    }

    #[tokio::test]
    async fn refuses_before_dialing() {
        // 10.0.0.5 must never see a packet: the guard refuses the literal before any dial.
        let err = resolve_allowed("10.0.0.5", 80, &[]).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "refused: 10.0.0.5 is a private address; add it to [delivery] allow_networks to allow it"
        );
        // `localhost` resolves only to loopback addresses.
        let err = resolve_allowed("localhost", 80, &[]).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("refused: localhost resolves to "),
            "{err}"
        );
        let allow = ["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let addrs = resolve_allowed("localhost", 80, &allow).await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80));
    }
}
