//! The ring client (see the module's documentation).
use alloc::string::{String, ToString};
use xen_hv::Count;

use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use xen_hv::{EventQueue, StoreErr};

use core::mem::offset_of;

use xen_sys_mini::io::xs_wire::{xs, XenstoreDomainInterface, XsdSockmsg, XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE};
use xen_sys_mini::EvtchnPort;

use crate::shared::SharedMem;
use crate::{evtchn, sched, time};

use super::wire::{self, Incoming};

// Offsets in `struct xenstore_domain_interface` (`io/xs_wire.h`).
const REQ: usize = offset_of!(XenstoreDomainInterface, req);
const RSP: usize = offset_of!(XenstoreDomainInterface, rsp);
const REQ_CONS: usize = offset_of!(XenstoreDomainInterface, req_cons);
const REQ_PROD: usize = offset_of!(XenstoreDomainInterface, req_prod);
const RSP_CONS: usize = offset_of!(XenstoreDomainInterface, rsp_cons);
const RSP_PROD: usize = offset_of!(XenstoreDomainInterface, rsp_prod);
/// How long a request may wait for xenstored.
const TIMEOUT_NS: u64 = 20_000_000_000;
/// Abandoned request ids remembered (their replies are dropped when they come).
const MAX_ABANDONED: usize = 8;

pub use super::wire::XsError;
pub use xen_hv::WatchEvent;

pub type XsResult<T> = Result<T, XsError>;

/// A transaction id (0 = none).
pub type Tx = u32;

#[derive(Debug)]
pub struct XenStore {
    page: SharedMem,
    port: EvtchnPort,
    next_id: u32,
    events: EventQueue,
    /// Requests whose reply did not come before the deadline, newest last (at most
    /// `MAX_ABANDONED`): their late replies are dropped instead of being taken for the
    /// answer to a later request, which would keep the client out of step.
    abandoned: Vec<u32>,
    /// Requests sent, for statistics.
    pub requests: u64,
    /// Time spent waiting for replies, all requests together, and the longest one (the
    /// clock is read once more per request; requests are rare next to ring work).
    pub waited_ns: u64,
    pub rtt_max_ns: u64,
}

impl XenStore {
    /// # Safety
    /// `pfn` must be the xenstore ring page (`HVM_PARAM_STORE_PFN`), identity-mapped.
    pub unsafe fn new(pfn: u64, port: EvtchnPort) -> Self {
        // SAFETY: guaranteed by the caller; the window covers struct xenstore_domain_interface.
        let page = unsafe { SharedMem::new(pfn << 12, 4096) };
        Self {
            page,
            port,
            next_id: 1,
            events: EventQueue::default(),
            abandoned: Vec::new(),
            requests: 0,
            waited_ns: 0,
            rtt_max_ns: 0,
        }
    }

    /// The event channel of the ring.
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    fn idx(&self, off: usize) -> XsResult<&core::sync::atomic::AtomicU32> {
        self.page.atomic_u32(off).map_err(|_| XsError::Protocol("ring page"))
    }

    fn wait(&self, deadline: u64) -> XsResult<()> {
        if time::system_time_ns() > deadline {
            return Err(XsError::Timeout);
        }
        let _ = sched::poll(&[self.port], deadline);
        evtchn::clear(self.port);
        Ok(())
    }

    fn ring_write(&mut self, mut data: &[u8], deadline: u64) -> XsResult<()> {
        while !data.is_empty() {
            let cons = self.idx(REQ_CONS)?.load(Ordering::Acquire);
            let prod = self.idx(REQ_PROD)?.load(Ordering::Relaxed);
            let used = prod.wrapping_sub(cons) as usize;
            if used > XENSTORE_RING_SIZE {
                return Err(XsError::Protocol("request ring indices out of range"));
            }
            let space = XENSTORE_RING_SIZE - used;
            if space == 0 {
                evtchn::notify(self.port);
                self.wait(deadline)?;
                continue;
            }
            let n = space.min(data.len());
            for (i, b) in data[..n].iter().enumerate() {
                let at = (prod as usize + i) % XENSTORE_RING_SIZE;
                self.page.write_bytes(REQ + at, core::slice::from_ref(b)).map_err(|_| XsError::Protocol("ring"))?;
            }
            self.idx(REQ_PROD)?.store(prod.wrapping_add(n as u32), Ordering::Release);
            evtchn::notify(self.port);
            data = &data[n..];
        }
        Ok(())
    }

    fn ring_read(&mut self, out: &mut [u8], deadline: u64) -> XsResult<()> {
        let mut got = 0;
        while got < out.len() {
            let prod = self.idx(RSP_PROD)?.load(Ordering::Acquire);
            let cons = self.idx(RSP_CONS)?.load(Ordering::Relaxed);
            let avail = prod.wrapping_sub(cons) as usize;
            if avail > XENSTORE_RING_SIZE {
                return Err(XsError::Protocol("response ring indices out of range"));
            }
            if avail == 0 {
                self.wait(deadline)?;
                continue;
            }
            let n = avail.min(out.len() - got);
            for i in 0..n {
                let at = (cons as usize + i) % XENSTORE_RING_SIZE;
                let mut b = [0u8];
                self.page.read_bytes(RSP + at, &mut b).map_err(|_| XsError::Protocol("ring"))?;
                out[got + i] = b[0];
            }
            // Bytes are copied before the consumer index frees their space.
            self.idx(RSP_CONS)?.store(cons.wrapping_add(n as u32), Ordering::Release);
            evtchn::notify(self.port);
            got += n;
        }
        Ok(())
    }

    /// Reads one message (header + payload), validated.
    fn read_msg(&mut self, deadline: u64) -> XsResult<(XsdSockmsg, Vec<u8>)> {
        let mut h = [0u8; wire::HEADER_LEN];
        self.ring_read(&mut h, deadline)?;
        let hdr = wire::decode_header(&h)?;
        let mut payload = alloc::vec![0u8; hdr.len as usize];
        self.ring_read(&mut payload, deadline)?;
        Ok((hdr, payload))
    }

    fn queue_watch_event(&mut self, payload: &[u8]) -> XsResult<()> {
        self.events.push(wire::decode_watch_event(payload)?);
        Ok(())
    }

    /// Sends a request and returns its reply payload.
    pub fn request(&mut self, type_: u32, tx: Tx, parts: &[&[u8]]) -> XsResult<Vec<u8>> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > XENSTORE_PAYLOAD_MAX {
            return Err(XsError::Protocol("request longer than XENSTORE_PAYLOAD_MAX"));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.requests += 1;
        let start = time::system_time_ns();
        let deadline = start + TIMEOUT_NS;
        let hdr = wire::encode_header(type_, id, tx, len as u32);
        self.ring_write(&hdr, deadline)?;
        for p in parts {
            self.ring_write(p, deadline)?;
        }
        loop {
            let (h, payload) = match self.read_msg(deadline) {
                Ok(m) => m,
                Err(e) => {
                    self.abandon(id);
                    return Err(e);
                }
            };
            match wire::classify(&h, payload, type_, id, &self.abandoned)? {
                Incoming::Event(e) => self.events.push(e),
                Incoming::Stale(old) => self.abandoned.retain(|&x| x != old),
                Incoming::Reply(p) => {
                    // The loop waits for xenstored here: what a turn spends on xenstore.
                    let rtt = time::system_time_ns().saturating_sub(start);
                    self.waited_ns.add_sat(rtt);
                    self.rtt_max_ns = self.rtt_max_ns.max(rtt);
                    return Ok(p);
                }
            }
        }
    }

    fn text(v: Vec<u8>) -> XsResult<String> {
        String::from_utf8(v).map_err(|_| XsError::NotText)
    }

    pub fn read(&mut self, tx: Tx, path: &str) -> XsResult<String> {
        self.request(xs::READ, tx, &[path.as_bytes(), b"\0"]).and_then(Self::text)
    }

    /// `read`, `None` if the node does not exist.
    pub fn read_opt(&mut self, tx: Tx, path: &str) -> XsResult<Option<String>> {
        match self.read(tx, path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_enoent() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn write(&mut self, tx: Tx, path: &str, value: &str) -> XsResult<()> {
        self.request(xs::WRITE, tx, &[path.as_bytes(), b"\0", value.as_bytes()]).map(|_| ())
    }

    pub fn mkdir(&mut self, tx: Tx, path: &str) -> XsResult<()> {
        self.request(xs::MKDIR, tx, &[path.as_bytes(), b"\0"]).map(|_| ())
    }

    pub fn rm(&mut self, tx: Tx, path: &str) -> XsResult<()> {
        self.request(xs::RM, tx, &[path.as_bytes(), b"\0"]).map(|_| ())
    }

    pub fn directory(&mut self, tx: Tx, path: &str) -> XsResult<Vec<String>> {
        wire::decode_list(&self.request(xs::DIRECTORY, tx, &[path.as_bytes(), b"\0"])?)
    }

    /// Permissions as xenstored lists them: `n0`, `r5`, ... (owner first).
    pub fn get_perms(&mut self, tx: Tx, path: &str) -> XsResult<Vec<String>> {
        wire::decode_list(&self.request(xs::GET_PERMS, tx, &[path.as_bytes(), b"\0"])?)
    }

    pub fn set_perms(&mut self, tx: Tx, path: &str, perms: &[&str]) -> XsResult<()> {
        let mut parts: Vec<&[u8]> = alloc::vec![path.as_bytes(), b"\0"];
        for p in perms {
            parts.push(p.as_bytes());
            parts.push(b"\0");
        }
        self.request(xs::SET_PERMS, tx, &parts).map(|_| ())
    }

    pub fn watch(&mut self, path: &str, token: &str) -> XsResult<()> {
        self.request(xs::WATCH, 0, &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"]).map(|_| ())
    }

    pub fn unwatch(&mut self, path: &str, token: &str) -> XsResult<()> {
        self.request(xs::UNWATCH, 0, &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"]).map(|_| ())
    }

    pub fn transaction_start(&mut self) -> XsResult<Tx> {
        let v = Self::text(self.request(xs::TRANSACTION_START, 0, &[b"\0"])?)?;
        v.trim_end_matches('\0').parse().map_err(|_| XsError::Protocol("transaction id not a number"))
    }

    pub fn transaction_end(&mut self, tx: Tx, commit: bool) -> XsResult<()> {
        self.request(xs::TRANSACTION_END, tx, &[if commit { b"T\0" } else { b"F\0" }]).map(|_| ())
    }

    /// Runs `f` in a transaction, retrying the whole of it while xenstored answers EAGAIN
    /// (another writer touched what it read). Returns `f`'s value and the attempts made.
    pub fn transaction<T>(&mut self, mut f: impl FnMut(&mut Self, Tx) -> XsResult<T>) -> XsResult<(T, u32)> {
        for attempt in 1..=16 {
            let tx = self.transaction_start()?;
            match f(self, tx) {
                Ok(v) => match self.transaction_end(tx, true) {
                    Ok(()) => return Ok((v, attempt)),
                    Err(e) if e.is_eagain() => continue,
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    let _ = self.transaction_end(tx, false);
                    if e.is_eagain() {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        Err(XsError::Errno(xen_sys_mini::errno::EAGAIN, "EAGAIN"))
    }

    fn abandon(&mut self, id: u32) {
        if self.abandoned.len() >= MAX_ABANDONED {
            self.abandoned.remove(0);
        }
        self.abandoned.push(id);
    }

    /// The next watch event, waiting until `deadline_ns` (Xen system time) at most.
    pub fn next_event(&mut self, deadline_ns: u64) -> XsResult<Option<WatchEvent>> {
        loop {
            if let Some(e) = self.events.pop() {
                return Ok(Some(e));
            }
            // Anything on the response ring now can only be a watch event.
            let prod = self.idx(RSP_PROD)?.load(Ordering::Acquire);
            let cons = self.idx(RSP_CONS)?.load(Ordering::Relaxed);
            if prod != cons {
                let (h, payload) = self.read_msg(time::system_time_ns() + TIMEOUT_NS)?;
                if h.type_ != xs::WATCH_EVENT {
                    if self.abandoned.contains(&h.req_id) {
                        // The late reply to a request we gave up on.
                        self.abandoned.retain(|&x| x != h.req_id);
                        continue;
                    }
                    return Err(XsError::Protocol("unsolicited reply"));
                }
                self.queue_watch_event(&payload)?;
                continue;
            }
            // Deadline 0 (the service loop's "anything queued?") needs no clock: a clock
            // read is a world switch when Xen emulates the TSC, and this runs every turn.
            if deadline_ns == 0 || time::system_time_ns() >= deadline_ns {
                return Ok(None);
            }
            let _ = sched::poll(&[self.port], deadline_ns);
            evtchn::clear(self.port);
        }
    }
}

fn store_err(e: XsError) -> StoreErr {
    if e.is_enoent() {
        StoreErr::NotFound
    } else if e.is_eagain() {
        StoreErr::Again
    } else {
        StoreErr::Other(e.to_string())
    }
}

/// Xenstore as the runtime's `XenStore` (outside transactions; `write_all` is one).
impl xen_hv::XenStore for XenStore {
    fn read(&mut self, path: &str) -> Result<Option<String>, StoreErr> {
        match self.read_opt(0, path) {
            // xenstored answers EACCES, not ENOENT, for a node under a domain directory that
            // is gone (the check falls to an ancestor we may not read): for us it is absent.
            Err(XsError::Errno(xen_sys_mini::errno::EACCES, _)) => Ok(None),
            r => r.map_err(store_err),
        }
    }
    fn write(&mut self, path: &str, value: &str) -> Result<(), StoreErr> {
        XenStore::write(self, 0, path, value).map_err(store_err)
    }
    fn rm(&mut self, path: &str) -> Result<(), StoreErr> {
        match XenStore::rm(self, 0, path) {
            Err(e) if e.is_enoent() => Ok(()),
            r => r.map_err(store_err),
        }
    }
    fn directory(&mut self, path: &str) -> Result<Vec<String>, StoreErr> {
        match XenStore::directory(self, 0, path) {
            Err(e) if e.is_enoent() => Ok(Vec::new()),
            r => r.map_err(store_err),
        }
    }
    fn write_all(&mut self, pairs: &[(String, String)]) -> Result<(), StoreErr> {
        self.transaction(|xs, tx| {
            for (k, v) in pairs {
                XenStore::write(xs, tx, k, v)?;
            }
            Ok(())
        })
        .map(|_| ())
        .map_err(store_err)
    }
    fn watch(&mut self, path: &str, token: &str) -> Result<(), StoreErr> {
        XenStore::watch(self, path, token).map_err(store_err)
    }
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), StoreErr> {
        XenStore::unwatch(self, path, token).map_err(store_err)
    }
    fn next_event(&mut self) -> Result<Option<WatchEvent>, StoreErr> {
        XenStore::next_event(self, 0).map_err(store_err)
    }
}
