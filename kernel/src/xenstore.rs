//! Xenstore client over the shared ring (`io/xs_wire.h`), found through
//! `HVM_PARAM_STORE_PFN`/`_EVTCHN`.
//!
//! One request is outstanding at a time (the runtime is single-threaded). Replies are
//! hostile input: ring indices more than a ring apart, a payload longer than
//! `XENSTORE_PAYLOAD_MAX`, an unknown type, a reply to a request id we did not send, a
//! malformed watch event, or no answer before the deadline are errors, never panics.
//! Watch events that arrive while waiting for a reply are queued.
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use xen_sys_mini::io::xs_wire::{xs, XsdSockmsg, XENSTORE_PAYLOAD_MAX, XENSTORE_RING_SIZE, XSD_ERRORS};
use xen_sys_mini::EvtchnPort;

use crate::shared::SharedMem;
use crate::{evtchn, sched, time};

const REQ: usize = 0;
const RSP: usize = XENSTORE_RING_SIZE;
const REQ_CONS: usize = 2 * XENSTORE_RING_SIZE;
const REQ_PROD: usize = REQ_CONS + 4;
const RSP_CONS: usize = REQ_CONS + 8;
const RSP_PROD: usize = REQ_CONS + 12;
/// How long a request may wait for xenstored.
const TIMEOUT_NS: u64 = 20_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XsError {
    /// xenstored answered with an error (the errno of its name, e.g. ENOENT = 2).
    Errno(i32, &'static str),
    /// The ring or a reply broke the protocol (who: xenstored, or memory corruption).
    Protocol(&'static str),
    /// No answer in time.
    Timeout,
    /// A reply that is not UTF-8 where text was expected.
    NotText,
}

impl XsError {
    pub fn is_enoent(&self) -> bool {
        matches!(self, XsError::Errno(2, _))
    }
    pub fn is_eagain(&self) -> bool {
        matches!(self, XsError::Errno(11, _))
    }
}

impl core::fmt::Display for XsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            XsError::Errno(_, n) => write!(f, "{n}"),
            XsError::Protocol(w) => write!(f, "protocol error: {w}"),
            XsError::Timeout => write!(f, "timed out"),
            XsError::NotText => write!(f, "reply is not text"),
        }
    }
}

pub type XsResult<T> = Result<T, XsError>;

/// A watch event: the path that changed and the token given to `watch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: String,
    pub token: String,
}

/// A transaction id (0 = none).
pub type Tx = u32;

#[derive(Debug)]
pub struct XenStore {
    page: SharedMem,
    port: EvtchnPort,
    next_id: u32,
    events: VecDeque<WatchEvent>,
    /// Requests sent, for statistics.
    pub requests: u64,
}

impl XenStore {
    /// # Safety
    /// `pfn` must be the xenstore ring page (`HVM_PARAM_STORE_PFN`), identity-mapped.
    pub unsafe fn new(pfn: u64, port: EvtchnPort) -> Self {
        // SAFETY: guaranteed by the caller; the window covers struct xenstore_domain_interface.
        let page = unsafe { SharedMem::new(pfn << 12, 4096) };
        Self { page, port, next_id: 1, events: VecDeque::new(), requests: 0 }
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
        let mut h = [0u8; 16];
        self.ring_read(&mut h, deadline)?;
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let hdr = XsdSockmsg { type_: word(0), req_id: word(4), tx_id: word(8), len: word(12) };
        if hdr.len as usize > XENSTORE_PAYLOAD_MAX {
            return Err(XsError::Protocol("payload longer than XENSTORE_PAYLOAD_MAX"));
        }
        if hdr.type_ >= xs::TYPE_COUNT {
            return Err(XsError::Protocol("unknown message type"));
        }
        let mut payload = alloc::vec![0u8; hdr.len as usize];
        self.ring_read(&mut payload, deadline)?;
        Ok((hdr, payload))
    }

    fn queue_watch_event(&mut self, payload: &[u8]) -> XsResult<()> {
        // "path\0token\0" (io/xs_wire.h: XS_WATCH_PATH, XS_WATCH_TOKEN).
        let mut parts = payload.split(|&b| b == 0);
        let (Some(p), Some(t)) = (parts.next(), parts.next()) else {
            return Err(XsError::Protocol("malformed watch event"));
        };
        let path = String::from_utf8(p.to_vec()).map_err(|_| XsError::Protocol("watch event path not text"))?;
        let token = String::from_utf8(t.to_vec()).map_err(|_| XsError::Protocol("watch event token not text"))?;
        if path.is_empty() {
            return Err(XsError::Protocol("watch event with an empty path"));
        }
        self.events.push_back(WatchEvent { path, token });
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
        let deadline = time::system_time_ns() + TIMEOUT_NS;
        let mut hdr = [0u8; 16];
        for (i, v) in [type_, id, tx, len as u32].into_iter().enumerate() {
            hdr[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        self.ring_write(&hdr, deadline)?;
        for p in parts {
            self.ring_write(p, deadline)?;
        }
        loop {
            let (h, payload) = self.read_msg(deadline)?;
            if h.type_ == xs::WATCH_EVENT {
                self.queue_watch_event(&payload)?;
                continue;
            }
            if h.req_id != id {
                return Err(XsError::Protocol("reply to a request id we did not send"));
            }
            if h.type_ == xs::ERROR {
                let name = payload.split(|&b| b == 0).next().unwrap_or(&[]);
                let e = XSD_ERRORS.iter().find(|(n, _)| n.as_bytes() == name).copied().unwrap_or(("EIO", 5));
                return Err(XsError::Errno(e.1, e.0));
            }
            if h.type_ != type_ {
                return Err(XsError::Protocol("reply of another type than the request"));
            }
            return Ok(payload);
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
        let v = self.request(xs::DIRECTORY, tx, &[path.as_bytes(), b"\0"])?;
        v.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| Self::text(s.to_vec())).collect()
    }

    /// Permissions as xenstored lists them: `n0`, `r5`, ... (owner first).
    pub fn get_perms(&mut self, tx: Tx, path: &str) -> XsResult<Vec<String>> {
        let v = self.request(xs::GET_PERMS, tx, &[path.as_bytes(), b"\0"])?;
        v.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| Self::text(s.to_vec())).collect()
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
        Err(XsError::Errno(11, "EAGAIN"))
    }

    /// The next watch event, waiting until `deadline_ns` (Xen system time) at most.
    pub fn next_event(&mut self, deadline_ns: u64) -> XsResult<Option<WatchEvent>> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            // Anything on the response ring now can only be a watch event.
            let prod = self.idx(RSP_PROD)?.load(Ordering::Acquire);
            let cons = self.idx(RSP_CONS)?.load(Ordering::Relaxed);
            if prod != cons {
                let (h, payload) = self.read_msg(time::system_time_ns() + TIMEOUT_NS)?;
                if h.type_ != xs::WATCH_EVENT {
                    return Err(XsError::Protocol("unsolicited reply"));
                }
                self.queue_watch_event(&payload)?;
                continue;
            }
            if time::system_time_ns() >= deadline_ns {
                return Ok(None);
            }
            let _ = sched::poll(&[self.port], deadline_ns);
            evtchn::clear(self.port);
        }
    }
}
