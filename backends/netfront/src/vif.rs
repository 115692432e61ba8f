//! One vif of the driver domain: its configuration from xenstore, the connection (rings,
//! pre-granted buffers, event channel) and the frames moving through it.
//!
//! Buffers are granted once per connection and reused: 256 RX pages granted writable and
//! always posted (RX responses come back in the slot of their request, `io/netif.h`), and
//! `tx_buffers` pages granted read-only. A frame is sent from offset 0 of one page, so a
//! TX slot never crosses a page (Linux netback disables the vif for that) and uses one slot.
//! Without `feature-sg` and GSO negotiated the backend sends one slot per packet; anything
//! else (chains, extra-info slots, sizes past the page, bad ids) is dropped and counted.
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use xen_hv::Count;

use xen_hv::{
    DomId, EventChannel, EvtchnAlloc, EvtchnPort, GrantAccess, GrantError, GrantRef, SharedFrame, SharedFrames,
    StoreErr, XenStore,
};
use xen_sys_mini::io::netif::*;
use xen_sys_mini::io::xenbus::XenbusState;

use crate::xenbus::{self, Action, Snapshot};
use xen_ring::{FrontRing, RingError};

const PAGE: usize = 4096;
/// Largest frame we send or accept in one slot.
pub const MAX_FRAME: usize = PAGE;

/// What the toolstack wrote for our vif (`device/vif/<n>`): checked, though written by dom0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifConfig {
    /// Our frontend directory, `/local/domain/<us>/device/vif/<n>`.
    pub fe: String,
    /// The backend's directory and domain.
    pub be: String,
    pub be_dom: DomId,
    pub mac: [u8; 6],
    /// TX buffers (pages granted read-only), at most the ring's 256 slots.
    pub tx_buffers: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VifError {
    /// A toolstack key is missing or malformed.
    Config(String),
    /// The backend does not offer `feature-rx-copy` (netback has for 15 years).
    NoRxCopy,
    Store(StoreErr),
    Grant(GrantError),
    Evtchn(i32),
    /// Out of frames for rings and buffers.
    NoMemory,
    /// The backend broke the ring protocol.
    Ring(RingError),
}

impl fmt::Display for VifError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VifError::Config(w) => write!(f, "vif configuration: {w}"),
            VifError::NoRxCopy => f.write_str("the backend does not offer feature-rx-copy"),
            VifError::Store(e) => write!(f, "xenstore: {e}"),
            VifError::Grant(e) => write!(f, "granting a vif page: {e}"),
            VifError::Evtchn(e) => write!(f, "event channel: {}", xen_sys_mini::errno::name(e.saturating_abs())),
            VifError::NoMemory => f.write_str("no memory for the vif's rings and buffers"),
            VifError::Ring(e) => write!(f, "vif ring: {e}"),
        }
    }
}

impl From<StoreErr> for VifError {
    fn from(e: StoreErr) -> Self {
        VifError::Store(e)
    }
}
impl From<RingError> for VifError {
    fn from(e: RingError) -> Self {
        VifError::Ring(e)
    }
}

/// `aa:bb:cc:dd:ee:ff`, strict.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl VifConfig {
    /// Reads `backend`, `backend-id` and `mac` from our frontend directory `fe`.
    pub fn read<X: XenStore>(xs: &mut X, fe: &str) -> Result<Self, VifError> {
        let need = |xs: &mut X, k: &str| -> Result<String, VifError> {
            xs.read(&format!("{fe}/{k}"))?.ok_or_else(|| VifError::Config(format!("no `{k}` key")))
        };
        let be = need(xs, "backend")?.trim().to_string();
        let be_dom = need(xs, "backend-id")?
            .trim()
            .parse::<u16>()
            .map_err(|_| VifError::Config(String::from("bad `backend-id`")))?;
        if !be.starts_with(&format!("/local/domain/{be_dom}/")) {
            return Err(VifError::Config(format!("backend path {be} is not in domain {be_dom}")));
        }
        let mac = parse_mac(&need(xs, "mac")?).ok_or_else(|| VifError::Config(String::from("bad `mac`")))?;
        Ok(Self { fe: String::from(fe), be, be_dom, mac, tx_buffers: 64 })
    }
}

/// Counters of a vif.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VifStats {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// TX responses with an error or dropped status.
    pub tx_errors: u64,
    /// RX slots dropped: error statuses, chains and extra info we did not negotiate.
    pub rx_dropped: u64,
    /// Responses that break the protocol (ids, offsets, sizes): dropped.
    pub bad_responses: u64,
    /// Frames refused for want of a free TX buffer.
    pub tx_full: u64,
    pub connects: u64,
}

#[derive(Debug)]
struct Buf<S> {
    page: S,
    gref: GrantRef,
}

#[derive(Debug)]
struct Conn<S> {
    tx: FrontRing<S>,
    rx: FrontRing<S>,
    tx_ref: GrantRef,
    rx_ref: GrantRef,
    port: EvtchnPort,
    tx_bufs: Vec<Buf<S>>,
    tx_free: Vec<u16>,
    /// RX buffer `i` is posted with id `i` in ring slot `i`.
    rx_bufs: Vec<Buf<S>>,
    /// Dropping the rest of a multi-slot packet.
    rx_skip_chain: bool,
    /// Extra-info slots still to skip.
    rx_skip_extra: bool,
}

/// The driver domain's vif.
#[derive(Debug)]
pub struct Vif<S> {
    pub cfg: VifConfig,
    published: XenbusState,
    conn: Option<Conn<S>>,
    /// Pages whose grants the backend still used at disconnect: ended later, then freed.
    zombies: Vec<Buf<S>>,
    pub stats: VifStats,
    scratch: Vec<u8>,
}

impl<S: SharedFrame> Vif<S> {
    pub fn new(cfg: VifConfig) -> Self {
        Self {
            cfg,
            published: XenbusState::Initialising,
            conn: None,
            zombies: Vec::new(),
            stats: VifStats::default(),
            scratch: alloc::vec![0u8; MAX_FRAME],
        }
    }

    pub fn state(&self) -> XenbusState {
        self.published
    }

    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Our event channel port while connected (to sleep on).
    pub fn port(&self) -> Option<EvtchnPort> {
        self.conn.as_ref().map(|c| c.port)
    }

    /// Paths to watch: the backend's state.
    pub fn watch_path(&self) -> String {
        format!("{}/state", self.cfg.be)
    }

    /// Re-reads the backend's state and acts on it.
    pub fn update<X, G, E, F>(&mut self, xs: &mut X, g: &mut G, ev: &mut E, frames: &mut F) -> Result<(), VifError>
    where
        X: XenStore,
        G: GrantAccess,
        E: EvtchnAlloc + EventChannel,
        F: SharedFrames<Shared = S>,
    {
        self.retry_zombies(g);
        let backend = xs
            .read(&format!("{}/state", self.cfg.be))?
            .and_then(|v| v.trim().parse::<u32>().ok())
            .and_then(XenbusState::from_u32);
        let (next, actions) = xenbus::step(self.published, &Snapshot { backend, connected: self.conn.is_some() });
        for a in actions {
            match a {
                Action::Disconnect => self.disconnect(g, ev),
                Action::SetState(s) => xs.write(&format!("{}/state", self.cfg.fe), &(s as u32).to_string())?,
                Action::Connect => self.connect(xs, g, ev, frames)?,
            }
        }
        self.published = next;
        Ok(())
    }

    fn connect<X, G, E, F>(&mut self, xs: &mut X, g: &mut G, ev: &mut E, frames: &mut F) -> Result<(), VifError>
    where
        X: XenStore,
        G: GrantAccess,
        E: EvtchnAlloc + EventChannel,
        F: SharedFrames<Shared = S>,
    {
        // Linux netback refuses a frontend without rx-copy; so do we, the other way round.
        if xs.read(&format!("{}/feature-rx-copy", self.cfg.be))?.as_deref().map(str::trim) != Some("1") {
            return Err(VifError::NoRxCopy);
        }
        let conn = match self.build(g, ev, frames) {
            Ok(c) => c,
            Err((bufs, e)) => {
                // Nothing was published yet: give every grant back before the pages go.
                for b in bufs {
                    self.end(g, b);
                }
                return Err(e);
            }
        };
        let fe = &self.cfg.fe;
        let pairs: Vec<(String, String)> = [
            ("tx-ring-ref", conn.tx_ref.to_string()),
            ("rx-ring-ref", conn.rx_ref.to_string()),
            ("event-channel", conn.port.to_string()),
            // Linux netback requires rx-copy and expects rx-notify (`read_xenbus_vif_flags`).
            ("request-rx-copy", String::from("1")),
            ("feature-rx-notify", String::from("1")),
            // One slot per packet, full checksums from the backend: no sg, no GSO, no
            // partial checksums (the TCP/IP stack verifies every checksum).
            ("feature-sg", String::from("0")),
            ("feature-gso-tcpv4", String::from("0")),
            ("feature-no-csum-offload", String::from("1")),
            ("state", (XenbusState::Connected as u32).to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{fe}/{k}"), v))
        .collect();
        if let Err(e) = xs.write_all(&pairs) {
            self.conn = Some(conn);
            self.disconnect(g, ev);
            return Err(e.into());
        }
        self.stats.connects.inc();
        self.conn = Some(conn);
        Ok(())
    }

    /// Rings, buffers and the event channel of a new connection. On failure, every page
    /// granted so far comes back (to end its grant).
    #[allow(clippy::type_complexity)]
    fn build<G, E, F>(&self, g: &mut G, ev: &mut E, frames: &mut F) -> Result<Conn<S>, (Vec<Buf<S>>, VifError)>
    where
        G: GrantAccess,
        E: EvtchnAlloc,
        F: SharedFrames<Shared = S>,
    {
        let dom = self.cfg.be_dom;
        let n_tx = self.cfg.tx_buffers.clamp(1, NET_TX_RING_SIZE);
        // [tx ring, rx ring, tx buffers..., rx buffers...]; buffers read-only on TX.
        let mut bufs: Vec<Buf<S>> = Vec::new();
        for i in 0..2usize.saturating_add(n_tx).saturating_add(NET_RX_RING_SIZE) {
            let ro = (2..2usize.saturating_add(n_tx)).contains(&i);
            let Some(page) = frames.alloc_shared() else { return Err((bufs, VifError::NoMemory)) };
            match g.grant(dom, page.gfn(), ro) {
                Ok(gref) => bufs.push(Buf { page, gref }),
                Err(e) => return Err((bufs, VifError::Grant(e))),
            }
        }
        let port = match ev.alloc_unbound(dom) {
            Ok(p) => p,
            Err(e) => return Err((bufs, VifError::Evtchn(e))),
        };
        let mut it = bufs.into_iter();
        let (Some(txr), Some(rxr)) = (it.next(), it.next()) else {
            return Err((Vec::new(), VifError::NoMemory));
        };
        let tx_bufs: Vec<Buf<S>> = it.by_ref().take(n_tx).collect();
        let rx_bufs: Vec<Buf<S>> = it.collect();
        let (tx_ref, rx_ref) = (txr.gref, rxr.gref);
        let tx = match FrontRing::init(alloc::vec![txr.page], NETIF_TX_ENTRY_SIZE) {
            Ok(r) => r,
            Err((pages, e)) => {
                let mut v: Vec<Buf<S>> = pages.into_iter().map(|page| Buf { page, gref: tx_ref }).collect();
                v.push(rxr);
                v.extend(tx_bufs.into_iter().chain(rx_bufs));
                return Err((v, VifError::Ring(e)));
            }
        };
        let mut rx = match FrontRing::init(alloc::vec![rxr.page], NETIF_RX_ENTRY_SIZE) {
            Ok(r) => r,
            Err((pages, e)) => {
                let mut v: Vec<Buf<S>> = tx.into_pages().into_iter().map(|page| Buf { page, gref: tx_ref }).collect();
                v.extend(pages.into_iter().map(|page| Buf { page, gref: rx_ref }));
                v.extend(tx_bufs.into_iter().chain(rx_bufs));
                return Err((v, VifError::Ring(e)));
            }
        };
        // Every RX buffer posted, id = slot.
        for (i, b) in rx_bufs.iter().enumerate() {
            let _ = rx.put_request(&rx_request(u16::try_from(i).unwrap_or(0), b.gref));
        }
        let _ = rx.push_requests_and_check_notify();
        let tx_free = (0..u16::try_from(tx_bufs.len()).unwrap_or(0)).rev().collect();
        Ok(Conn { tx, rx, tx_ref, rx_ref, port, tx_bufs, tx_free, rx_bufs, rx_skip_chain: false, rx_skip_extra: false })
    }

    fn end<G: GrantAccess>(&mut self, g: &mut G, b: Buf<S>) {
        match g.end_access(b.gref) {
            Ok(()) => {}
            // Still mapped by the backend: keep the page, never reuse it, retry later.
            Err(GrantError::InUse) => self.zombies.push(b),
            Err(_) => {}
        }
    }

    fn retry_zombies<G: GrantAccess>(&mut self, g: &mut G) {
        let z = core::mem::take(&mut self.zombies);
        for b in z {
            self.end(g, b);
        }
    }

    /// Pages whose grants could not be ended yet.
    pub fn zombies(&self) -> usize {
        self.zombies.len()
    }

    fn disconnect<G: GrantAccess, E: EventChannel>(&mut self, g: &mut G, ev: &mut E) {
        let Some(c) = self.conn.take() else { return };
        ev.close(c.port);
        let tx_ref = c.tx_ref;
        let rx_ref = c.rx_ref;
        let tx_pages = c.tx.into_pages();
        let rx_pages = c.rx.into_pages();
        for page in tx_pages {
            self.end(g, Buf { page, gref: tx_ref });
        }
        for page in rx_pages {
            self.end(g, Buf { page, gref: rx_ref });
        }
        for b in c.tx_bufs.into_iter().chain(c.rx_bufs) {
            self.end(g, b);
        }
    }

    /// Sends one Ethernet frame. `Ok(false)` when no TX buffer is free (TX responses are
    /// reaped first).
    pub fn transmit<E: EventChannel>(&mut self, ev: &mut E, frame: &[u8]) -> Result<bool, VifError> {
        self.reap_tx()?;
        let Some(c) = self.conn.as_mut() else { return Ok(false) };
        if frame.is_empty() || frame.len() > MAX_FRAME || c.tx.free() == 0 {
            return Ok(false);
        }
        let Some(id) = c.tx_free.pop() else {
            self.stats.tx_full.inc();
            return Ok(false);
        };
        let Some(b) = c.tx_bufs.get(usize::from(id)) else { return Ok(false) };
        b.page.write(0, frame).map_err(RingError::Memory)?;
        let size = u16::try_from(frame.len()).unwrap_or(0);
        c.tx.put_request(&tx_request(b.gref, id, size))?;
        if c.tx.push_requests_and_check_notify()? {
            ev.notify(c.port);
        }
        self.stats.tx_packets.inc();
        self.stats.tx_bytes.add_sat(frame.len() as u64);
        Ok(true)
    }

    /// Whether `transmit` would take a frame now (TX responses are reaped first). A stack
    /// asks before it builds a frame, so it keeps what it cannot send (TCP data stays in
    /// its send buffer) instead of losing it to a full pool and waiting for a retransmission.
    pub fn can_transmit(&mut self) -> bool {
        if self.reap_tx().is_err() {
            return false;
        }
        self.conn.as_ref().is_some_and(|c| !c.tx_free.is_empty() && c.tx.free() > 0)
    }

    /// Frees the TX buffers the backend is done with.
    pub fn reap_tx(&mut self) -> Result<(), VifError> {
        let Some(c) = self.conn.as_mut() else { return Ok(()) };
        let mut rsp = [0u8; NETIF_TX_ENTRY_SIZE];
        loop {
            if c.tx.take_response(&mut rsp)?.is_none() {
                // Re-arm `rsp_event`: a full TX pool is refilled by the next notification.
                if c.tx.final_check_for_responses()? {
                    continue;
                }
                break;
            }
            let id = u16::from_le_bytes([rsp[0], rsp[1]]);
            let status = i16::from_le_bytes([rsp[2], rsp[3]]);
            if status == NETIF_RSP_NULL {
                // The answer to an extra-info slot: we send none.
                self.stats.bad_responses.inc();
                continue;
            }
            // An id we did not send, or one already free: a lying backend.
            if usize::from(id) >= c.tx_bufs.len() || c.tx_free.contains(&id) {
                self.stats.bad_responses.inc();
                continue;
            }
            if status != NETIF_RSP_OKAY {
                self.stats.tx_errors.inc();
            }
            c.tx_free.push(id);
        }
        Ok(())
    }

    /// Hands every received frame to `sink` and posts its buffer again. Returns the frames
    /// delivered.
    pub fn receive<E: EventChannel>(&mut self, ev: &mut E, mut sink: impl FnMut(&[u8])) -> Result<usize, VifError> {
        let Some(c) = self.conn.as_mut() else { return Ok(0) };
        let mut n = 0usize;
        let mut consumed = false;
        let mut rsp = [0u8; NETIF_RX_ENTRY_SIZE];
        // Until no response is left after re-arming `rsp_event` (`RING_FINAL_CHECK_FOR_
        // RESPONSES`): without that netback stops notifying after the first batch.
        loop {
            while let Some(slot) = c.rx.take_response(&mut rsp)? {
                consumed = true;
                let id = u16::from_le_bytes([rsp[0], rsp[1]]);
                let offset = usize::from(u16::from_le_bytes([rsp[2], rsp[3]]));
                let flags = u16::from_le_bytes([rsp[4], rsp[5]]);
                let status = i16::from_le_bytes([rsp[6], rsp[7]]);
                let buf = c.rx_bufs.get(slot as usize);
                let verdict = if c.rx_skip_extra {
                    // This slot holds a netif_extra_info, not data.
                    c.rx_skip_extra = rsp[1] & XEN_NETIF_EXTRA_FLAG_MORE != 0;
                    Err(false)
                } else if u32::from(id) != slot || buf.is_none() {
                    Err(true)
                } else if c.rx_skip_chain || flags & (NETRXF_MORE_DATA | NETRXF_EXTRA_INFO) != 0 || status <= 0 {
                    // Chains and extra info were not negotiated; errors carry no data.
                    c.rx_skip_chain = flags & NETRXF_MORE_DATA != 0;
                    c.rx_skip_extra = flags & NETRXF_EXTRA_INFO != 0;
                    Err(false)
                } else {
                    let len = usize::try_from(status).unwrap_or(0);
                    if offset.checked_add(len).is_none_or(|end| end > PAGE) {
                        Err(true)
                    } else {
                        Ok(len)
                    }
                };
                match verdict {
                    Ok(len) => {
                        let dst = self.scratch.get_mut(..len).unwrap_or_default();
                        if let Some(b) = buf {
                            // One copy out of the shared page; only the copy is used.
                            b.page.read(offset, dst).map_err(RingError::Memory)?;
                        }
                        sink(dst);
                        n = n.saturating_add(1);
                        self.stats.rx_packets.inc();
                        self.stats.rx_bytes.add_sat(len as u64);
                    }
                    Err(true) => self.stats.bad_responses = self.stats.bad_responses.saturating_add(1),
                    Err(false) => self.stats.rx_dropped = self.stats.rx_dropped.saturating_add(1),
                }
                // Post the slot's buffer again (the ring stays full: the new request lands in
                // the slot just consumed, where its response will come back).
                if let Some(b) = c.rx_bufs.get(slot as usize) {
                    let id = u16::try_from(slot).unwrap_or(0);
                    c.rx.put_request(&rx_request(id, b.gref))?;
                }
            }
            if !c.rx.final_check_for_responses()? {
                break;
            }
        }
        // The reposted buffers become visible; netback is told if it waits for them.
        if consumed && c.rx.push_requests_and_check_notify()? {
            ev.notify(c.port);
        }
        Ok(n)
    }

    /// Whether responses are waiting (`RING_FINAL_CHECK_FOR_RESPONSES` on both rings).
    pub fn pending(&mut self) -> Result<bool, VifError> {
        let Some(c) = self.conn.as_mut() else { return Ok(false) };
        Ok(c.rx.final_check_for_responses()? | c.tx.final_check_for_responses()?)
    }
}

fn tx_request(gref: GrantRef, id: u16, size: u16) -> [u8; NETIF_TX_ENTRY_SIZE] {
    let mut b = [0u8; NETIF_TX_ENTRY_SIZE];
    b[0..4].copy_from_slice(&gref.to_le_bytes());
    // offset 0, flags 0: a whole frame at the start of its page, checksums filled in.
    b[8..10].copy_from_slice(&id.to_le_bytes());
    b[10..12].copy_from_slice(&size.to_le_bytes());
    b
}

fn rx_request(id: u16, gref: GrantRef) -> [u8; NETIF_RX_ENTRY_SIZE] {
    let mut b = [0u8; NETIF_RX_ENTRY_SIZE];
    b[0..2].copy_from_slice(&id.to_le_bytes());
    b[4..8].copy_from_slice(&gref.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(parse_mac("00:16:3e:12:34:5f"), Some([0, 0x16, 0x3e, 0x12, 0x34, 0x5f]));
        for bad in ["", "00:16:3e:12:34", "00:16:3e:12:34:5f:00", "0:16:3e:12:34:5f", "zz:16:3e:12:34:5f"] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_layouts_match_netif_h() {
        let t = tx_request(0x0102_0304, 7, 1514);
        assert_eq!(&t[0..4], &[4, 3, 2, 1]);
        assert_eq!(u16::from_le_bytes([t[8], t[9]]), 7);
        assert_eq!(u16::from_le_bytes([t[10], t[11]]), 1514);
        assert_eq!(core::mem::offset_of!(NetifTxRequest, id), 8);
        assert_eq!(core::mem::offset_of!(NetifTxRequest, size), 10);
        let r = rx_request(9, 0x0a0b_0c0d);
        assert_eq!(u16::from_le_bytes([r[0], r[1]]), 9);
        assert_eq!(&r[4..8], &[0x0d, 0x0c, 0x0b, 0x0a]);
        assert_eq!(core::mem::offset_of!(NetifRxRequest, gref), 4);
        assert_eq!(core::mem::offset_of!(NetifRxResponse, status), 6);
    }
}
