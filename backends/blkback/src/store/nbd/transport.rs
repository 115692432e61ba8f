//! The byte stream under an NBD store, and who opens it: the driver domain's TCP/IP stack
//! (the binary's `NetConnector`), or nothing ([`NoNetwork`]).
use alloc::string::String;

/// A byte stream to the server.
pub trait Transport {
    fn is_open(&self) -> bool;
    /// Starts a new connection to the same server after this one was lost; `false` if
    /// none can be started now.
    fn reconnect(&mut self) -> bool;
    /// The time, in ns (the stack's clock).
    fn now_ns(&self) -> u64;
    /// Queues bytes to send; returns how many were taken (0 when the buffer is full).
    fn send(&mut self, data: &[u8]) -> usize;
    /// Hands received bytes to `f`, which returns how many it consumed.
    fn recv(&mut self, f: &mut dyn FnMut(&[u8]) -> usize);
}

/// Opens byte streams to NBD servers (the driver domain's TCP/IP stack).
pub trait Connector {
    type T: Transport;
    /// A connection (possibly still being established) to `uri`'s server, or why not.
    fn connect(&mut self, uri: &nbd::uri::NbdUri) -> Result<Self::T, ConnectError>;
}

/// Why no connection to an NBD server could be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// The driver domain has no network (no vif; `built_without`: an image built without
    /// the `net` feature).
    NoNetwork {
        /// Built without networking at all.
        built_without: bool,
    },
    /// The host is not an IPv4 address (the driver domain resolves no names).
    NotIpv4(String),
    /// The vif has not connected yet.
    NotUp,
    /// DHCP has given no address yet.
    NoAddress,
    /// The stack has no socket left.
    NoSocket,
    /// The server refused the connection (`host:port`).
    Refused(String),
}

impl core::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConnectError::NoNetwork { built_without: true } => f.write_str(
                "the driver domain has no network (give it a vif; an image built without the `net` feature has none)",
            ),
            ConnectError::NoNetwork { built_without: false } => {
                f.write_str("the driver domain has no network (give it a vif)")
            }
            ConnectError::NotIpv4(h) => write!(f, "`{h}` is not an IPv4 address (the driver domain resolves no names)"),
            ConnectError::NotUp => f.write_str("the network is not up yet (the vif has not connected)"),
            ConnectError::NoAddress => f.write_str("the network has no address yet (no DHCP lease)"),
            ConnectError::NoSocket => f.write_str("the network cannot open a connection"),
            ConnectError::Refused(key) => write!(f, "{key}: connection refused"),
        }
    }
}

/// A connector for a driver domain without a network: every `nbd://` target is refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNetwork;

/// The transport of [`NoNetwork`]: none can exist.
#[derive(Debug)]
pub enum Unreachable {}

impl Transport for Unreachable {
    fn is_open(&self) -> bool {
        match *self {}
    }
    fn send(&mut self, _: &[u8]) -> usize {
        match *self {}
    }
    fn recv(&mut self, _: &mut dyn FnMut(&[u8]) -> usize) {
        match *self {}
    }
    fn reconnect(&mut self) -> bool {
        match *self {}
    }
    fn now_ns(&self) -> u64 {
        match *self {}
    }
}

impl Connector for NoNetwork {
    type T = Unreachable;
    fn connect(&mut self, _: &nbd::uri::NbdUri) -> Result<Unreachable, ConnectError> {
        Err(ConnectError::NoNetwork { built_without: true })
    }
}
