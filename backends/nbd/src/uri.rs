//! `nbd://<host>[:<port>]/<export>` (`doc/uri.md` of the NBD project), the form a disk's
//! `target=` takes. The export name is percent-decoded; an absent port is 10809. TLS
//! (`nbds://`), Unix sockets (`nbd+unix://`) and IPv6 literals are refused with a reason:
//! this client speaks plain TCP over IPv4.
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::wire::{DEFAULT_PORT, MAX_STRING};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdUri {
    /// A hostname or dotted IPv4 address, as written.
    pub host: String,
    pub port: u16,
    /// The export name (may be empty: the server's default export).
    pub export: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriError {
    Scheme(String),
    NoHost,
    BadHost(String),
    BadPort(String),
    BadEscape,
    ExportTooLong,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriError::Scheme(s) => write!(f, "scheme `{s}` is not supported: use nbd://host[:port]/export"),
            UriError::NoHost => f.write_str("no host: use nbd://host[:port]/export"),
            UriError::BadHost(h) => write!(f, "bad host `{h}` (a hostname or an IPv4 address)"),
            UriError::BadPort(p) => write!(f, "bad port `{p}` (1-65535)"),
            UriError::BadEscape => f.write_str("bad %-escape in the export name"),
            UriError::ExportTooLong => f.write_str("export name longer than 4096 bytes"),
        }
    }
}

impl NbdUri {
    pub fn parse(s: &str) -> Result<Self, UriError> {
        let s = s.trim();
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(UriError::Scheme(String::from(s)));
        };
        if scheme != "nbd" {
            return Err(UriError::Scheme(String::from(scheme)));
        }
        // Query parameters (tls-*, socket) do not apply to plain TCP: cut them off.
        let rest = rest.split(['?', '#']).next().unwrap_or("");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(UriError::NoHost);
        }
        if authority.starts_with('[') || authority.contains('@') {
            return Err(UriError::BadHost(String::from(authority)));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => {
                let port =
                    p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| UriError::BadPort(String::from(p)))?;
                (h, port)
            }
            None => (authority, DEFAULT_PORT),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !host_ok {
            return Err(UriError::BadHost(String::from(host)));
        }
        let export = percent_decode(path)?;
        if export.len() > MAX_STRING {
            return Err(UriError::ExportTooLong);
        }
        Ok(Self { host: String::from(host), port, export })
    }

    /// The host as an IPv4 address, if it is one.
    pub fn ipv4(&self) -> Option<[u8; 4]> {
        parse_ipv4(&self.host)
    }
}

/// A dotted IPv4 address, strict: four decimal octets of 1-3 digits, no
/// signs, spaces or trailing dot. Shared with the driver domain's
/// command-line parser so both read addresses the same way.
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut out {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn percent_decode(s: &str) -> Result<String, UriError> {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0usize;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = |k: usize| b.get(k).and_then(|&h| char::from(h).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i.saturating_add(1)), hex(i.saturating_add(2))) else {
                return Err(UriError::BadEscape);
            };
            out.push(u8::try_from(hi.saturating_mul(16).saturating_add(lo)).map_err(|_| UriError::BadEscape)?);
            i = i.saturating_add(3);
        } else {
            out.push(c);
            i = i.saturating_add(1);
        }
    }
    String::from_utf8(out).map_err(|_| UriError::BadEscape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(host: &str, port: u16, export: &str) -> Result<NbdUri, UriError> {
        Ok(NbdUri { host: host.into(), port, export: export.into() })
    }

    #[test]
    fn accepted() {
        assert_eq!(NbdUri::parse("nbd://192.0.2.1:10809/disk0"), ok("192.0.2.1", 10809, "disk0"));
        assert_eq!(NbdUri::parse("nbd://storage.example/vm%2Fdisk%201"), ok("storage.example", 10809, "vm/disk 1"));
        assert_eq!(NbdUri::parse("nbd://10.0.0.7:2000"), ok("10.0.0.7", 2000, ""));
        assert_eq!(NbdUri::parse("nbd://h/"), ok("h", 10809, ""));
        assert_eq!(NbdUri::parse("nbd://h/e?tls-certificates=/x"), ok("h", 10809, "e"));
        assert_eq!(NbdUri::parse("nbd://192.0.2.1/x").map(|u| u.ipv4()), Ok(Some([192, 0, 2, 1])));
        assert_eq!(NbdUri::parse("nbd://nas/x").map(|u| u.ipv4()), Ok(None));
        assert_eq!(NbdUri::parse("nbd://1.2.3.256/x").map(|u| u.ipv4()), Ok(None));
    }

    #[test]
    fn refused_with_a_reason() {
        assert_eq!(NbdUri::parse("nbds://h/e"), Err(UriError::Scheme("nbds".into())));
        assert_eq!(NbdUri::parse("nbd+unix:///e?socket=/s"), Err(UriError::Scheme("nbd+unix".into())));
        assert_eq!(NbdUri::parse("ram:64M"), Err(UriError::Scheme("ram:64M".into())));
        assert_eq!(NbdUri::parse("nbd:///e"), Err(UriError::NoHost));
        assert_eq!(NbdUri::parse("nbd://h:0/e"), Err(UriError::BadPort("0".into())));
        assert_eq!(NbdUri::parse("nbd://h:99999/e"), Err(UriError::BadPort("99999".into())));
        assert_eq!(NbdUri::parse("nbd://[::1]/e"), Err(UriError::BadHost("[::1]".into())));
        assert_eq!(NbdUri::parse("nbd://u@h/e"), Err(UriError::BadHost("u@h".into())));
        assert_eq!(NbdUri::parse("nbd://h_x/e"), Err(UriError::BadHost("h_x".into())));
        assert_eq!(NbdUri::parse("nbd://h/%zz"), Err(UriError::BadEscape));
        assert_eq!(NbdUri::parse("nbd://h/%ff"), Err(UriError::BadEscape));
        assert_eq!(NbdUri::parse("nbd://h/%4"), Err(UriError::BadEscape));
        let long = alloc::format!("nbd://h/{}", "a".repeat(4097));
        assert_eq!(NbdUri::parse(&long), Err(UriError::ExportTooLong));
    }
}
