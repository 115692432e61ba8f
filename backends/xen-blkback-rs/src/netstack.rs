//! The driver domain's network stack: its vif (netfront) as a smoltcp device, one
//! interface with an IPv4 address (static, or leased by DHCPv4, RFC 2131, through
//! smoltcp's client), and TCP connections as the byte streams NBD stores run on. Wiring
//! only: the protocol logic is netfront's, smoltcp's and nbd's.
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use blkback::store::nbd::{ConnectError, Transport};
use netfront::vif::{Vif, MAX_FRAME};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};
use xen_hv::{EventChannel, SharedFrame};

/// The vif as smoltcp's device, for one call of `Interface::poll`.
struct Phy<'a, S, E> {
    vif: &'a mut Vif<S>,
    ev: &'a mut E,
    rx: &'a mut VecDeque<Vec<u8>>,
}

struct Rx(Vec<u8>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct Tx<'a, S, E> {
    vif: &'a mut Vif<S>,
    ev: &'a mut E,
}

impl<S: SharedFrame, E: EventChannel> TxToken for Tx<'_, S, E> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = alloc::vec![0u8; len.min(MAX_FRAME)];
        let r = f(&mut frame);
        // `transmit` handed out this token only with a free TX buffer; one taken meanwhile
        // (an ACK sent while receiving) drops the frame, as a NIC would: TCP retransmits.
        let _ = self.vif.transmit(self.ev, &frame);
        r
    }
}

impl<S: SharedFrame, E: EventChannel> Device for Phy<'_, S, E> {
    type RxToken<'b>
        = Rx
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b, S, E>
    where
        Self: 'b;

    fn receive(&mut self, _now: Instant) -> Option<(Rx, Tx<'_, S, E>)> {
        if self.rx.is_empty() {
            let rx = &mut *self.rx;
            let _ = self.vif.receive(self.ev, |f| rx.push_back(f.to_vec()));
        }
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx { vif: self.vif, ev: self.ev }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_, S, E>> {
        // No token without a free TX buffer: smoltcp then keeps the segment and sends it on
        // a later poll (netback's TX responses wake the loop). Dropping it instead cost a
        // retransmission timeout per full pool: 1 MiB NBD writes ran at half speed with
        // p99 latencies of seconds.
        if !self.vif.connected() || !self.vif.can_transmit() {
            return None;
        }
        Some(Tx { vif: self.vif, ev: self.ev })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        // An Ethernet frame with a 1500-byte payload (the vif's MTU without sg/GSO).
        c.max_transmission_unit = 1514;
        c.max_burst_size = Some(32);
        c
    }
}

pub use crate::Ipv4Config;

/// Where the interface's address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `ip=` on the command line, or the vif's `ip` key.
    Static(Ipv4Config),
    /// A DHCPv4 lease (neither was given), renewed by smoltcp's client; until the first
    /// lease the stack has no address and opens no connection.
    Dhcp,
}

/// The stack: the vif, the interface (made once the vif is connected), the sockets.
pub struct NetStack<S> {
    pub vif: Vif<S>,
    /// The time of the last poll, in ns (the stores' clock).
    pub now_ns: u64,
    addressing: Addressing,
    /// The address in use: the static one once the interface exists, or the current lease.
    addr: Option<Ipv4Config>,
    /// Set when `addr` changed, until `take_address_change`.
    addr_changed: bool,
    dhcp: Option<SocketHandle>,
    iface: Option<Interface>,
    sockets: SocketSet<'static>,
    rx: VecDeque<Vec<u8>>,
    seed: u64,
}

impl<S> core::fmt::Debug for NetStack<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "NetStack({:?}, {:?})", self.addressing, self.addr)
    }
}

/// Replaces the interface's address and default route with `ip` (none: no address).
fn configure(i: &mut Interface, ip: Option<Ipv4Config>) {
    i.update_ip_addrs(|addrs| {
        addrs.clear();
        if let Some(Ipv4Config { addr: [a, b, c, d], prefix, .. }) = ip {
            let _ = addrs.push(IpCidr::new(IpAddress::v4(a, b, c, d), prefix));
        }
    });
    match ip.and_then(|ip| ip.gateway) {
        Some([a, b, c, d]) => {
            let _ = i.routes_mut().add_default_ipv4_route(Ipv4Address::new(a, b, c, d));
        }
        None => {
            let _ = i.routes_mut().remove_default_ipv4_route();
        }
    }
}

fn instant(ns: u64) -> Instant {
    Instant::from_micros(i64::try_from(ns / 1000).unwrap_or(i64::MAX))
}

impl<S: SharedFrame> NetStack<S> {
    /// `seed` seeds TCP's initial sequence numbers and ports (the TSC at boot will do).
    pub fn new(vif: Vif<S>, addressing: Addressing, seed: u64) -> Self {
        Self {
            vif,
            now_ns: 0,
            addressing,
            addr: None,
            addr_changed: false,
            dhcp: None,
            iface: None,
            sockets: SocketSet::new(Vec::new()),
            rx: VecDeque::new(),
            seed,
        }
    }

    /// The address in use, if any yet.
    pub fn address(&self) -> Option<Ipv4Config> {
        self.addr
    }

    /// The new address (or `Some(None)`: a lease lost) if it changed since the last call.
    pub fn take_address_change(&mut self) -> Option<Option<Ipv4Config>> {
        core::mem::take(&mut self.addr_changed).then_some(self.addr)
    }

    /// Moves frames and runs TCP (and DHCP); returns whether anything happened.
    pub fn poll<E: EventChannel>(&mut self, ev: &mut E, now_ns: u64) -> bool {
        self.now_ns = now_ns;
        let now = instant(now_ns);
        let Self { vif, iface, sockets, rx, seed, addressing, addr, addr_changed, dhcp, .. } = self;
        let mut phy = Phy { vif, ev, rx };
        if iface.is_none() {
            if !phy.vif.connected() {
                return false;
            }
            let mac = EthernetAddress(phy.vif.cfg.mac);
            let mut cfg = Config::new(HardwareAddress::Ethernet(mac));
            cfg.random_seed = *seed;
            let mut i = Interface::new(cfg, &mut phy, now);
            match *addressing {
                Addressing::Static(ip) => {
                    configure(&mut i, Some(ip));
                    *addr = Some(ip);
                    *addr_changed = true;
                }
                Addressing::Dhcp => *dhcp = Some(sockets.add(dhcpv4::Socket::new())),
            }
            *iface = Some(i);
        }
        let Some(i) = iface.as_mut() else { return false };
        let busy = i.poll(now, &mut phy, sockets) != smoltcp::iface::PollResult::None;
        if let Some(h) = *dhcp {
            let lease = match sockets.get_mut::<dhcpv4::Socket>(h).poll() {
                None => return busy,
                Some(dhcpv4::Event::Configured(c)) => Some(Ipv4Config {
                    addr: c.address.address().octets(),
                    prefix: c.address.prefix_len(),
                    gateway: c.router.map(|r| r.octets()),
                }),
                Some(dhcpv4::Event::Deconfigured) => None,
            };
            // The client reports `Deconfigured` once before its first lease: not a change.
            if *addr != lease {
                configure(i, lease);
                *addr = lease;
                *addr_changed = true;
            }
        }
        busy
    }

    /// When smoltcp wants to be polled again (retransmissions, keep-alive), in ns.
    pub fn poll_at(&mut self, now_ns: u64) -> Option<u64> {
        let i = self.iface.as_mut()?;
        let at = i.poll_at(instant(now_ns), &self.sockets)?;
        Some(u64::try_from(at.total_micros()).unwrap_or(0).saturating_mul(1000))
    }

    /// A TCP connection to `addr:port` (established asynchronously by `poll`). Nagle and
    /// delayed ACKs off: NBD is request/response traffic.
    pub fn connect(&mut self, addr: [u8; 4], port: u16) -> Option<SocketHandle> {
        self.addr?;
        let iface = self.iface.as_mut()?;
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(alloc::vec![0u8; 256 * 1024]),
            tcp::SocketBuffer::new(alloc::vec![0u8; 256 * 1024]),
        );
        s.set_nagle_enabled(false);
        s.set_ack_delay(None);
        // A dead server (no SYN-ACK, or a peer gone silent) is declared so after 15 s;
        // keep-alives probe an idle connection every 5 s.
        s.set_keep_alive(Some(Duration::from_secs(5)));
        s.set_timeout(Some(Duration::from_secs(15)));
        self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let local = 49152 + u16::try_from((self.seed >> 33) % 16000).unwrap_or(0);
        let [a, b, c, d] = addr;
        let remote = IpEndpoint::new(IpAddress::v4(a, b, c, d), port);
        s.connect(iface.context(), remote, local).ok()?;
        Some(self.sockets.add(s))
    }

    pub fn socket(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// Drops a connection's socket (after it closed).
    pub fn remove(&mut self, h: SocketHandle) {
        self.sockets.remove(h);
    }
}

/// One TCP connection of a shared stack, as an NBD store's byte stream.
pub struct TcpStream<S> {
    pub net: Rc<RefCell<NetStack<S>>>,
    pub handle: SocketHandle,
    /// The server, to connect again.
    pub addr: [u8; 4],
    pub port: u16,
}

impl<S> core::fmt::Debug for TcpStream<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "TcpStream({:?})", self.handle)
    }
}

impl<S: SharedFrame> Transport for TcpStream<S> {
    fn is_open(&self) -> bool {
        self.net.borrow_mut().socket(self.handle).is_active()
    }
    fn reconnect(&mut self) -> bool {
        let mut net = self.net.borrow_mut();
        let Some(h) = net.connect(self.addr, self.port) else { return false };
        let old = core::mem::replace(&mut self.handle, h);
        net.socket(old).abort();
        net.remove(old);
        true
    }
    fn now_ns(&self) -> u64 {
        self.net.borrow().now_ns
    }
    fn send(&mut self, data: &[u8]) -> usize {
        let mut net = self.net.borrow_mut();
        let s = net.socket(self.handle);
        if !s.can_send() {
            return 0;
        }
        s.send_slice(data).unwrap_or(0)
    }
    fn recv(&mut self, f: &mut dyn FnMut(&[u8]) -> usize) {
        let mut net = self.net.borrow_mut();
        let s = net.socket(self.handle);
        if s.can_recv() {
            let _ = s.recv(|buf| (f(buf), ()));
        }
    }
}

/// Opens NBD connections on the driver domain's stack, if it has one.
pub struct NetConnector<S> {
    pub net: Option<Rc<RefCell<NetStack<S>>>>,
}

impl<S> core::fmt::Debug for NetConnector<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "NetConnector({})", if self.net.is_some() { "up" } else { "no network" })
    }
}

impl<S: SharedFrame> blkback::store::nbd::Connector for NetConnector<S> {
    type T = TcpStream<S>;
    fn connect(&mut self, uri: &nbd::uri::NbdUri) -> Result<TcpStream<S>, ConnectError> {
        let net = self.net.as_ref().ok_or(ConnectError::NoNetwork { built_without: false })?;
        let addr = uri.ipv4().ok_or_else(|| ConnectError::NotIpv4(uri.host.clone()))?;
        let mut n = net.borrow_mut();
        let why = match n.addressing {
            _ if !n.vif.connected() => ConnectError::NotUp,
            Addressing::Dhcp if n.addr.is_none() => ConnectError::NoAddress,
            _ => ConnectError::NoSocket,
        };
        let handle = n.connect(addr, uri.port).ok_or(why)?;
        drop(n);
        Ok(TcpStream { net: net.clone(), handle, addr, port: uri.port })
    }
}
