//! The whole network path on the host: our vif (netfront) against a mock Linux netback in
//! "dom0", whose other side is a second smoltcp interface running the NBD test server; TCP
//! from our stack to it; an NBD store on that connection negotiates and moves data, checked
//! against the server's export. And the stack without a static address: a DHCPv4 lease
//! from a server in "dom0", a connection from the leased address, the lease lost.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use blkback::store::nbd::NbdStore;
use blkback::store::{BlockStore, IoOp, IoSeg, StoreIo};
use nbd::testing::{Server, ServerOpts};
use netfront::testing::MockNetback;
use netfront::vif::{Vif, VifConfig};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    DhcpMessageType, DhcpPacket, DhcpRepr, EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address,
};
use xen_blkback_rs::netstack::{Addressing, Ipv4Config, NetStack, TcpStream};
use xen_hv::fake::*;

/// dom0's side of the vif: frames from our TX ring, frames into our RX ring.
struct Dom0<'a> {
    nb: &'a mut MockNetback,
    g: &'a mut FakeGrants,
    ev: &'a mut FakeEvtchn,
    inbox: &'a mut VecDeque<Vec<u8>>,
}
struct Rx(Vec<u8>);
impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}
struct Tx<'a> {
    nb: &'a mut MockNetback,
    g: &'a mut FakeGrants,
    ev: &'a mut FakeEvtchn,
}
impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0u8; len];
        let r = f(&mut b);
        self.nb.to_frontend(self.g, self.ev, &b);
        r
    }
}
impl Device for Dom0<'_> {
    type RxToken<'b>
        = Rx
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b>
    where
        Self: 'b;
    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        if self.inbox.is_empty() {
            self.inbox.extend(self.nb.from_frontend(self.g, self.ev));
        }
        let f = self.inbox.pop_front()?;
        Some((Rx(f), Tx { nb: self.nb, g: self.g, ev: self.ev }))
    }
    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx { nb: self.nb, g: self.g, ev: self.ev })
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

/// The fake hypervisor with our vif connected to a mock Linux netback in "dom0".
fn connected_vif(mac: &str) -> (FakeGrants, FakeEvtchn, MockNetback, Vif<FakeShared>) {
    let mut xs = FakeXenStore::default();
    let mut g = FakeGrants::new();
    let mut ev = FakeEvtchn::default();
    let mut frames = g.shared_frames();
    let mut nb = MockNetback::attach(&mut xs, BACKEND, 0, mac);
    let cfg = VifConfig::read(&mut xs, &nb.fe).unwrap();
    let mut vif: Vif<FakeShared> = Vif::new(cfg);
    vif.update(&mut xs, &mut g, &mut ev, &mut frames).unwrap();
    nb.update(&mut xs, &mut g, &mut ev);
    (g, ev, nb, vif)
}

/// dom0's interface on the bridge: 192.0.2.1/24.
fn dom0_iface(dev: &mut Dom0<'_>) -> Interface {
    let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, 1])));
    cfg.random_seed = 7;
    let mut d0 = Interface::new(cfg, dev, Instant::ZERO);
    d0.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::v4(192, 0, 2, 1), 24)).unwrap();
    });
    d0
}

#[test]
fn nbd_over_tcp_over_netfront() {
    let (mut g, mut ev, mut nb, vif) = connected_vif("00:16:3e:00:00:05");
    assert!(vif.connected() && nb.connected());
    let ip = Ipv4Config { addr: [192, 0, 2, 2], prefix: 24, gateway: None };
    let net = Rc::new(RefCell::new(NetStack::new(vif, Addressing::Static(ip), 42)));
    net.borrow_mut().poll(&mut ev, 1_000_000);

    // dom0: an interface on the bridge with the NBD server behind port 10809.
    let mut inbox = VecDeque::new();
    let mut d0 = dom0_iface(&mut Dom0 { nb: &mut nb, g: &mut g, ev: &mut ev, inbox: &mut inbox });
    let mut d0sockets = SocketSet::new(vec![]);
    let mut listener =
        tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 1 << 20]), tcp::SocketBuffer::new(vec![0; 1 << 20]));
    listener.listen(10809).unwrap();
    let lh = d0sockets.add(listener);
    let (mut server, greet) = Server::new(ServerOpts::default(), 4 << 20);
    let mut to_client = greet;

    let handle = net.borrow_mut().connect([192, 0, 2, 1], 10809).expect("connect");
    let stream = TcpStream { net: net.clone(), handle, addr: [192, 0, 2, 1], port: 10809 };
    let mut store: NbdStore<TcpStream<FakeShared>, MemPage> = NbdStore::new(stream, "disk0", 60_000_000_000);

    let data: Vec<u8> = (0..65536u32).map(|i| (i * 13 + i / 4096) as u8).collect();
    let wbufs: Vec<MemPage> = (0..16)
        .map(|i| {
            let p = MemPage::new();
            p.set(0, &data[i * 4096..(i + 1) * 4096]);
            p
        })
        .collect();
    let rbufs: Vec<MemPage> = (0..16).map(|_| MemPage::new()).collect();
    let seg =
        |bufs: &[MemPage]| bufs.iter().map(|b| IoSeg { buf: b.clone(), offset: 0, len: 4096 }).collect::<Vec<_>>();
    let mut submitted = 0;
    let mut done = Vec::new();
    let mut now = 1_000_000u64;
    for _ in 0..20_000 {
        now += 100_000;
        net.borrow_mut().poll(&mut ev, now);
        {
            let mut dev = Dom0 { nb: &mut nb, g: &mut g, ev: &mut ev, inbox: &mut inbox };
            d0.poll(Instant::from_micros((now / 1000) as i64), &mut dev, &mut d0sockets);
        }
        // dom0's NBD server behind the listening socket.
        let s = d0sockets.get_mut::<tcp::Socket>(lh);
        if s.can_recv() {
            let mut got = Vec::new();
            s.recv(|b| {
                got.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
            to_client.extend(server.feed(&got));
        }
        if !to_client.is_empty() && s.can_send() {
            let n = s.send_slice(&to_client).unwrap();
            to_client.drain(..n);
        }
        store.poll();
        if store.ready() && submitted == 0 {
            let w = StoreIo {
                tag: 1,
                op: IoOp::Write { preflush: false, fua: false },
                sector: 64,
                nr_sectors: 0,
                segs: seg(&wbufs),
            };
            store.submit(w).unwrap();
            submitted = 1;
        }
        store.complete(&mut done);
        if submitted == 1 && done.len() == 1 {
            let r = StoreIo { tag: 2, op: IoOp::Read, sector: 64, nr_sectors: 0, segs: seg(&rbufs) };
            store.submit(r).unwrap();
            submitted = 2;
        }
        if done.len() == 2 {
            break;
        }
    }
    assert!(store.failed().is_none(), "{:?}", store.failed());
    assert_eq!(done.len(), 2, "I/O did not complete (ready: {})", store.ready());
    assert!(done.iter().all(|(_, r)| r.is_ok()), "{:?}", done.iter().map(|d| &d.1).collect::<Vec<_>>());
    assert_eq!(store.info().sectors, (4 << 20) / 512);
    assert_eq!(server.disk[64 * 512..64 * 512 + 65536], data[..], "the export does not hold the write");
    let read: Vec<u8> = rbufs.iter().flat_map(|p| p.bytes()).collect();
    assert_eq!(read, data, "read back differs");
    assert!(nb.disabled.is_none(), "{:?}", nb.disabled);
    let st = net.borrow().vif.stats;
    assert!(st.tx_packets > 40 && st.rx_packets > 40 && st.bad_responses == 0, "{st:?}");
}

/// A DHCP server's answer to a client's DISCOVER (OFFER) or REQUEST (ACK) of `offer`,
/// per RFC 2131 section 4.3: to the broadcast address, the client has no address yet.
fn dhcp_answer(req: &DhcpRepr<'_>, offer: Ipv4Address, lease_s: u32) -> Option<Vec<u8>> {
    let message_type = match req.message_type {
        DhcpMessageType::Discover => DhcpMessageType::Offer,
        DhcpMessageType::Request if req.requested_ip.is_none_or(|ip| ip == offer) => DhcpMessageType::Ack,
        _ => return None,
    };
    let server = Ipv4Address::new(192, 0, 2, 1);
    let repr = DhcpRepr {
        message_type,
        transaction_id: req.transaction_id,
        secs: 0,
        client_hardware_address: req.client_hardware_address,
        client_ip: Ipv4Address::UNSPECIFIED,
        your_ip: offer,
        server_ip: server,
        router: Some(server),
        subnet_mask: Some(Ipv4Address::new(255, 255, 255, 0)),
        relay_agent_ip: Ipv4Address::UNSPECIFIED,
        broadcast: true,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(server),
        parameter_request_list: None,
        dns_servers: None,
        max_size: None,
        lease_duration: Some(lease_s),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut DhcpPacket::new_unchecked(&mut buf)).ok()?;
    Some(buf)
}

#[test]
fn dhcp_lease_addresses_the_stack_and_expires() {
    let (mut g, mut ev, mut nb, vif) = connected_vif("00:16:3e:00:00:06");
    let mut net = NetStack::new(vif, Addressing::Dhcp, 42);

    // dom0: the DHCP server on UDP port 67, and a TCP listener to connect to once leased.
    let mut inbox = VecDeque::new();
    let mut d0 = dom0_iface(&mut Dom0 { nb: &mut nb, g: &mut g, ev: &mut ev, inbox: &mut inbox });
    let mut d0sockets = SocketSet::new(vec![]);
    let mut dhcpd = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8192]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8192]),
    );
    dhcpd.bind(67).unwrap();
    let uh = d0sockets.add(dhcpd);
    let mut listener = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 4096]), tcp::SocketBuffer::new(vec![0; 4096]));
    listener.listen(10809).unwrap();
    let lh = d0sockets.add(listener);

    let offer = Ipv4Address::new(192, 0, 2, 50);
    let lease_s = 20;
    let (mut answers, mut answering) = (0, true);
    let mut lease = None;
    let mut conn = None;
    let mut lost_at = None;
    let mut now = 1_000_000u64;
    for _ in 0..100_000 {
        now += 1_000_000;
        net.poll(&mut ev, now);
        {
            let mut dev = Dom0 { nb: &mut nb, g: &mut g, ev: &mut ev, inbox: &mut inbox };
            d0.poll(Instant::from_micros((now / 1000) as i64), &mut dev, &mut d0sockets);
        }
        let u = d0sockets.get_mut::<udp::Socket>(uh);
        while let Ok((req, _)) = u.recv() {
            let req = req.to_vec();
            let packet = DhcpPacket::new_checked(&req[..]).unwrap();
            let repr = DhcpRepr::parse(&packet).unwrap();
            if let Some(a) = dhcp_answer(&repr, offer, lease_s).filter(|_| answering) {
                u.send_slice(&a, IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::BROADCAST), 68)).unwrap();
                answers += 1;
            }
        }
        match net.take_address_change() {
            None => {}
            Some(Some(ip)) => {
                assert!(lease.is_none(), "a second lease without losing the first: {ip:?}");
                lease = Some(ip);
                conn = Some(net.connect([192, 0, 2, 1], 10809).expect("connect from the leased address"));
            }
            Some(None) => {
                lost_at = Some(now);
                break;
            }
        }
        if let Some(h) = conn {
            if net.socket(h).state() == tcp::State::Established && answering {
                // Connected from the leased address: now the server goes away, and the lease
                // must run out (renew at half, rebind, expire at `lease_s`).
                assert_eq!(d0sockets.get::<tcp::Socket>(lh).remote_endpoint().map(|e| e.addr), Some(offer.into()));
                answering = false;
            }
        }
    }
    assert_eq!(answers, 2, "one OFFER and one ACK");
    assert_eq!(lease, Some(Ipv4Config { addr: [192, 0, 2, 50], prefix: 24, gateway: Some([192, 0, 2, 1]) }));
    assert!(!answering, "no connection was established from the leased address");
    let lost = lost_at.expect("the lease never expired");
    assert!(lost > u64::from(lease_s) * 1_000_000_000, "lease dropped early, at {lost} ns");
    assert_eq!(net.address(), None);
    assert!(net.connect([192, 0, 2, 1], 10809).is_none(), "a connection opened without an address");
}
