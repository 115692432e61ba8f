//! The NBD store itself: held I/O, the connection's phases (handshake, ready, lost and
//! reconnecting with backoff, failed), replay after a reconnect, the fail window, the output
//! queue with payloads streamed from the frontend's pages, and the reply sink.
use crate::hv::Count;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;

use nbd::client::{Client, Command, ReplyError, Sink};
use nbd::handshake::{Export, Handshake};
use nbd::wire::{EPERM, FLAG_SEND_FLUSH, FLAG_SEND_TRIM, FLAG_SEND_WRITE_ZEROES};

use super::commands::commands;
use super::transport::Transport;
use crate::hv::Page;
use crate::store::{BlockStore, Completion, DiskInfo, FrameBacked, ScratchFrames, StoreError, StoreIo};

/// Requests in flight on the connection at most.
const MAX_INFLIGHT: usize = 256;

#[derive(Debug)]
enum Phase {
    Handshake(Handshake),
    Ready(Client),
    /// The connection was lost: the held I/O waits for a new one (tried at `next_try`,
    /// backing off), to be replayed.
    Reconnecting {
        next_try: u64,
        backoff: u64,
    },
    /// The server refused us or broke the protocol: every I/O fails.
    Failed(String),
}

/// The first retry after a lost connection, and the longest wait between retries.
const BACKOFF_MIN_NS: u64 = 100_000_000;
const BACKOFF_MAX_NS: u64 = 5_000_000_000;

/// Counters of an NBD store, published with the disk's statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NbdCounters {
    /// Connections lost and made again.
    pub reconnects: u64,
    /// Requests sent again on a new connection.
    pub replayed: u64,
    /// Requests answered with an error because the server stayed away past the window.
    pub timed_out: u64,
    /// Errors the server reported.
    pub server_errors: u64,
}

/// Bytes waiting to go out, in order.
#[derive(Debug)]
enum Out {
    Bytes {
        data: Vec<u8>,
        sent: usize,
    },
    /// `len` bytes of I/O `tag`'s segments from byte `at`.
    Payload {
        tag: u64,
        at: u32,
        len: u32,
    },
}

#[derive(Debug)]
struct Held<B> {
    io: StoreIo<B>,
    pieces: u32,
    error: Option<StoreError>,
    /// After the write's replies, a FLUSH (FUA without `NBD_FLAG_SEND_FUA`).
    then_flush: bool,
}

#[derive(Debug)]
pub struct NbdStore<T, B> {
    t: T,
    phase: Phase,
    export: Option<Export>,
    out: VecDeque<Out>,
    held: BTreeMap<u64, Held<B>>,
    /// cookie → (I/O tag, byte offset of the piece in the I/O).
    cookies: BTreeMap<u64, (u64, u32)>,
    /// Submitted before the handshake ended.
    waiting: VecDeque<u64>,
    done: Vec<Completion<B>>,
    export_name: String,
    /// A zero page for holes.
    zeroes: Vec<u8>,
    /// The export's size and read-only flag, once negotiated: a reconnection must find
    /// the same (else it is another disk).
    expected: Option<(u64, bool)>,
    /// When the connection was lost (while reconnecting).
    lost_at: Option<u64>,
    /// How long held I/O waits for the server before it fails.
    window_ns: u64,
    pub counters: NbdCounters,
}

/// Bytes of an I/O's segments, in order.
fn io_len<B>(io: &StoreIo<B>) -> u32 {
    io.segs.iter().map(|s| u32::from(s.len)).fold(0u32, u32::saturating_add)
}

/// Applies `f(segment buffer, offset in its page, range of the slice)` over bytes
/// `[at, at + len)` of an I/O's segments.
fn over_segments<B: Page>(io: &StoreIo<B>, at: u32, len: usize, mut f: impl FnMut(&B, usize, core::ops::Range<usize>)) {
    let mut seg_start = 0u32;
    let mut done = 0usize;
    for s in &io.segs {
        let seg_end = seg_start.saturating_add(u32::from(s.len));
        let from = at.saturating_add(u32::try_from(done).unwrap_or(u32::MAX));
        if done < len && from >= seg_start && from < seg_end {
            let in_seg = from.saturating_sub(seg_start);
            let n = usize::try_from(seg_end.saturating_sub(from)).unwrap_or(0).min(len.saturating_sub(done));
            f(&s.buf, usize::from(s.offset).saturating_add(in_seg as usize), done..done.saturating_add(n));
            done = done.saturating_add(n);
        }
        seg_start = seg_end;
    }
}

impl<T: Transport, B: Page> NbdStore<T, B> {
    /// A store for `export` on the server behind `t` (connected or connecting). Held I/O
    /// waits `window_ns` for a lost server to come back, then fails.
    pub fn new(t: T, export: &str, window_ns: u64) -> Self {
        Self {
            expected: None,
            lost_at: None,
            window_ns,
            counters: NbdCounters::default(),
            export_name: String::from(export),
            t,
            phase: Phase::Handshake(Handshake::new(export)),
            export: None,
            out: VecDeque::new(),
            held: BTreeMap::new(),
            cookies: BTreeMap::new(),
            waiting: VecDeque::new(),
            done: Vec::new(),
            zeroes: alloc::vec![0u8; 4096],
        }
    }

    pub fn transport(&self) -> &T {
        &self.t
    }
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.t
    }

    /// Moves bytes both ways; call when the socket has news and before `complete`.
    pub fn pump(&mut self) {
        let now = self.t.now_ns();
        if let Phase::Reconnecting { next_try, backoff } = self.phase {
            self.expire(now);
            if now < next_try {
                return;
            }
            if self.t.reconnect() {
                self.phase = Phase::Handshake(Handshake::new(&self.export_name));
            } else {
                let backoff = backoff.saturating_mul(2).min(BACKOFF_MAX_NS);
                self.phase = Phase::Reconnecting { next_try: now.saturating_add(backoff), backoff };
                return;
            }
        }
        if !self.t.is_open() {
            match self.phase {
                // Never connected: nothing to wait for.
                Phase::Handshake(_) if self.expected.is_none() => {
                    self.fail(String::from("the NBD server is unreachable or closed the connection"))
                }
                Phase::Handshake(_) | Phase::Ready(_) => self.lost(now),
                Phase::Reconnecting { .. } | Phase::Failed(_) => {}
            }
            return;
        }
        self.expire(now);
        self.pump_in();
        self.start_waiting();
        self.pump_out();
    }

    /// The connection is gone: keep every held I/O for a new one (to be replayed from the
    /// start: reads, writes, flushes and zeroing are idempotent), try again soon.
    fn lost(&mut self, now: u64) {
        if self.lost_at.is_none() {
            self.lost_at = Some(now);
        }
        self.out.clear();
        self.cookies.clear();
        self.waiting.clear();
        for (&tag, h) in self.held.iter_mut() {
            if h.pieces > 0 {
                self.counters.replayed.inc();
            }
            h.pieces = 0;
            h.error = None;
            h.then_flush = false;
            self.waiting.push_back(tag);
        }
        self.phase = Phase::Reconnecting { next_try: now.saturating_add(BACKOFF_MIN_NS), backoff: BACKOFF_MIN_NS };
    }

    /// Past the window without a server: held I/O fails (the guest gets errors, not a hang).
    fn expire(&mut self, now: u64) {
        let Some(at) = self.lost_at else { return };
        if now.saturating_sub(at) < self.window_ns {
            return;
        }
        self.waiting.clear();
        for (_, h) in core::mem::take(&mut self.held) {
            self.counters.timed_out.inc();
            self.done.push((h.io, Err(StoreError::Io)));
        }
    }

    fn fail(&mut self, why: String) {
        self.phase = Phase::Failed(why);
        self.cookies.clear();
        self.out.clear();
        self.waiting.clear();
        for (_, h) in core::mem::take(&mut self.held) {
            self.done.push((h.io, Err(StoreError::Io)));
        }
    }

    fn pump_in(&mut self) {
        let mut hs_out: Vec<u8> = Vec::new();
        let mut err: Option<String> = None;
        let mut negotiated: Option<(Export, Vec<u8>)> = None;
        let Self { t, phase, held, cookies, done, zeroes, .. } = self;
        let mut sink = Deliver { held, cookies, done, zeroes, flush_next: Vec::new() };
        t.recv(&mut |bytes: &[u8]| {
            if err.is_some() || negotiated.is_some() {
                return 0;
            }
            match phase {
                Phase::Handshake(h) => match h.receive(bytes, &mut hs_out) {
                    Ok(Some(e)) => negotiated = Some((e, h.leftover())),
                    Ok(None) => {}
                    Err(e) => err = Some(alloc::format!("NBD handshake: {e}")),
                },
                Phase::Ready(c) => {
                    if let Err(e) = c.receive(bytes, &mut sink) {
                        err = Some(alloc::format!("{e}"));
                    }
                }
                Phase::Reconnecting { .. } | Phase::Failed(_) => {}
            }
            bytes.len()
        });
        let flush_next = core::mem::take(&mut sink.flush_next);
        if !hs_out.is_empty() {
            self.out.push_back(Out::Bytes { data: hs_out, sent: 0 });
        }
        if let Some(e) = err {
            self.fail(e);
            return;
        }
        if let Some((e, leftover)) = negotiated {
            let seen = (e.size, e.read_only());
            if self.expected.is_some_and(|x| x != seen) {
                self.fail(String::from("the NBD export changed size or became read-only while reconnecting"));
                return;
            }
            if self.expected.is_some() {
                self.counters.reconnects.inc();
            }
            self.expected = Some(seen);
            self.lost_at = None;
            self.export = Some(e);
            self.phase = Phase::Ready(Client::new(e, MAX_INFLIGHT));
            if !leftover.is_empty() {
                self.fail(String::from("NBD server sent replies before any request"));
                return;
            }
        }
        for tag in flush_next {
            self.issue(tag, &[Command::Flush]);
        }
    }

    fn start_waiting(&mut self) {
        if !matches!(self.phase, Phase::Ready(_)) {
            return;
        }
        while let Some(tag) = self.waiting.pop_front() {
            self.start(tag);
        }
    }

    /// Sends the commands of a held I/O.
    fn start(&mut self, tag: u64) {
        let (Some(e), Some(h)) = (self.export, self.held.get_mut(&tag)) else { return };
        let plan = commands(h.io.op, h.io.sector, h.io.nr_sectors, io_len(&h.io), &e);
        h.then_flush = plan.then_flush;
        if plan.cmds.is_empty() {
            // Nothing to ask the server (a flush it has no cache for): done.
            if let Some(h) = self.held.remove(&tag) {
                self.done.push((h.io, Ok(0)));
            }
            return;
        }
        self.issue_at(tag, &plan.cmds);
    }

    fn issue(&mut self, tag: u64, cmds: &[Command]) {
        let pairs: Vec<(Command, u32)> = cmds.iter().map(|&c| (c, 0)).collect();
        self.issue_at(tag, &pairs);
    }

    fn issue_at(&mut self, tag: u64, cmds: &[(Command, u32)]) {
        let Phase::Ready(c) = &mut self.phase else { return };
        for &(cmd, at) in cmds {
            match c.submit(cmd) {
                Ok((cookie, hdr)) => {
                    self.cookies.insert(cookie, (tag, at));
                    self.out.push_back(Out::Bytes { data: hdr.to_vec(), sent: 0 });
                    if let Command::Write { length, .. } = cmd {
                        self.out.push_back(Out::Payload { tag, at, len: length });
                    }
                    if let Some(h) = self.held.get_mut(&tag) {
                        h.pieces = h.pieces.saturating_add(1);
                    }
                }
                Err(_) => {
                    if let Some(h) = self.held.get_mut(&tag) {
                        h.error = Some(StoreError::Io);
                    }
                }
            }
        }
        if self.held.get(&tag).is_some_and(|h| h.pieces == 0) {
            if let Some(h) = self.held.remove(&tag) {
                self.done.push((h.io, Err(h.error.unwrap_or(StoreError::Io))));
            }
        }
    }

    fn pump_out(&mut self) {
        let mut buf = [0u8; 4096];
        while let Some(front) = self.out.front_mut() {
            match front {
                Out::Bytes { data, sent } => {
                    let n = self.t.send(data.get(*sent..).unwrap_or_default());
                    *sent = sent.saturating_add(n);
                    if *sent < data.len() {
                        return;
                    }
                }
                Out::Payload { tag, at, len } => {
                    let Some(h) = self.held.get(tag) else {
                        // Cancelled payloads were copied into `Bytes`; none should remain.
                        self.out.pop_front();
                        continue;
                    };
                    let n = usize::try_from(*len).unwrap_or(0).min(buf.len());
                    let chunk = buf.get_mut(..n).unwrap_or_default();
                    let mut ok = true;
                    over_segments(&h.io, *at, n, |b, off, r| {
                        ok &= b.read(off, chunk.get_mut(r).unwrap_or_default()).is_ok();
                    });
                    let sent = self.t.send(chunk);
                    let sent32 = u32::try_from(sent).unwrap_or(0);
                    *at = at.saturating_add(sent32);
                    *len = len.saturating_sub(sent32);
                    if *len > 0 {
                        if sent == 0 {
                            return;
                        }
                        continue;
                    }
                }
            }
            self.out.pop_front();
        }
    }
}

/// Where replies land: the held I/O's segments.
struct Deliver<'a, B> {
    held: &'a mut BTreeMap<u64, Held<B>>,
    cookies: &'a mut BTreeMap<u64, (u64, u32)>,
    done: &'a mut Vec<Completion<B>>,
    zeroes: &'a [u8],
    /// Writes whose FUA needs a FLUSH now.
    flush_next: Vec<u64>,
}

impl<B: Page> Sink for Deliver<'_, B> {
    fn data(&mut self, cookie: u64, at: u32, data: &[u8]) {
        // Unknown: a cancelled request's late data.
        let Some(&(tag, base)) = self.cookies.get(&cookie) else { return };
        let Some(h) = self.held.get_mut(&tag) else { return };
        let mut ok = true;
        over_segments(&h.io, base.saturating_add(at), data.len(), |b, off, r| {
            ok &= b.write(off, data.get(r).unwrap_or_default()).is_ok();
        });
        if !ok {
            h.error.get_or_insert(StoreError::Io);
        }
    }
    fn zeroes(&mut self, cookie: u64, at: u32, len: u32) {
        let mut done = 0u32;
        while done < len {
            let n = len.saturating_sub(done).min(u32::try_from(self.zeroes.len()).unwrap_or(4096));
            let z = self.zeroes.get(..n as usize).unwrap_or_default().to_vec();
            self.data(cookie, at.saturating_add(done), &z);
            done = done.saturating_add(n);
        }
    }
    fn done(&mut self, cookie: u64, result: Result<(), ReplyError>) {
        let Some((tag, _)) = self.cookies.remove(&cookie) else { return };
        let Some(h) = self.held.get_mut(&tag) else { return };
        if let Err(e) = result {
            // The server's verdict goes to the guest, unretried.
            h.error.get_or_insert(if e.error == EPERM { StoreError::ReadOnly } else { StoreError::Io });
        }
        h.pieces = h.pieces.saturating_sub(1);
        if h.pieces > 0 {
            return;
        }
        if h.then_flush && h.error.is_none() {
            h.then_flush = false;
            self.flush_next.push(tag);
            return;
        }
        if let Some(h) = self.held.remove(&tag) {
            let moved = u64::from(io_len(&h.io));
            let r = match h.error {
                Some(e) => Err(e),
                None => Ok(moved),
            };
            self.done.push((h.io, r));
        }
    }
}

impl<T, B> FrameBacked for NbdStore<T, B> {}
impl<T, B> ScratchFrames for NbdStore<T, B> {}

impl<T: Transport, B: Page> BlockStore<B> for NbdStore<T, B> {
    fn info(&self) -> DiskInfo {
        let e = self.export;
        let has = |f: u16| e.is_some_and(|e| e.has(f));
        DiskInfo {
            sectors: e.map_or(0, |e| e.size / 512),
            sector_size: 512,
            physical_sector_size: e.map_or(4096, |e| e.block.preferred.clamp(512, 4096)),
            read_only: e.is_some_and(|e| e.read_only()),
            flush: has(FLAG_SEND_FLUSH),
            discard: has(FLAG_SEND_WRITE_ZEROES) || has(FLAG_SEND_TRIM),
            discard_secure: false,
        }
    }

    fn submit(&mut self, io: StoreIo<B>) -> Result<(), (StoreIo<B>, StoreError)> {
        let expired = self.lost_at.is_some_and(|at| self.t.now_ns().saturating_sub(at) >= self.window_ns);
        if matches!(self.phase, Phase::Failed(_)) || expired || self.held.contains_key(&io.tag) {
            return Err((io, StoreError::Io));
        }
        let tag = io.tag;
        self.held.insert(tag, Held { io, pieces: 0, error: None, then_flush: false });
        if matches!(self.phase, Phase::Ready(_)) {
            self.start(tag);
            self.pump_out();
        } else {
            self.waiting.push_back(tag);
        }
        Ok(())
    }

    fn complete(&mut self, out: &mut Vec<Completion<B>>) {
        self.pump();
        out.append(&mut self.done);
    }

    fn poll(&mut self) {
        self.pump();
    }

    fn failed(&self) -> Option<&str> {
        match &self.phase {
            Phase::Failed(w) => Some(w),
            _ => None,
        }
    }

    fn ready(&self) -> bool {
        // Once negotiated, the disk is known even while a lost connection is remade.
        self.expected.is_some() && !matches!(self.phase, Phase::Failed(_))
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let c = self.counters;
        alloc::vec![
            ("nbd_reconnects", c.reconnects),
            ("nbd_replayed", c.replayed),
            ("nbd_timed_out", c.timed_out),
            ("nbd_server_errors", c.server_errors),
        ]
    }

    fn cancel(&mut self, out: &mut Vec<StoreIo<B>>) {
        // Payload still to send is copied out of the frontend's pages now: the server gets
        // whole requests, and no page is touched after this returns.
        let outs = core::mem::take(&mut self.out);
        for o in outs {
            match o {
                Out::Payload { tag, at, len } => {
                    let mut data = alloc::vec![0u8; len as usize];
                    if let Some(h) = self.held.get(&tag) {
                        over_segments(&h.io, at, data.len(), |b, off, r| {
                            let _ = b.read(off, data.get_mut(r).unwrap_or_default());
                        });
                    }
                    self.out.push_back(Out::Bytes { data, sent: 0 });
                }
                bytes => self.out.push_back(bytes),
            }
        }
        self.cookies.clear();
        self.waiting.clear();
        for (_, h) in core::mem::take(&mut self.held) {
            out.push(h.io);
        }
        for (io, _) in self.done.drain(..) {
            out.push(io);
        }
    }
}
