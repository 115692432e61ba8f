//! The transmission phase (`doc/proto.md`, "Transmission"): requests go out with a cookie,
//! replies come back in any order, simple (16-byte header, then a READ's data) or
//! structured (20-byte chunk headers: data at an offset, holes, errors, a final chunk).
//!
//! Replies are parsed as a stream: `receive` takes whatever the socket produced, even one
//! byte, keeps at most a header's worth of state, and hands a READ's data to the caller's
//! [`Sink`] as it arrives, so payload moves from the socket's buffer to its destination
//! with no copy in between.
//!
//! Checked, because the server is hostile input: magic; that the cookie is one we sent and
//! have not seen answered; that data, holes and error offsets lie inside the request they
//! answer and do not overlap; lengths against the request and the negotiated maximum; that a
//! successful READ was covered completely; that structured replies were negotiated before
//! one arrives. Any breach is a [`ProtocolError`]: the caller drops the connection.
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::handshake::Export;
use crate::wire::*;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read {
        offset: u64,
        length: u32,
    },
    /// The caller sends `length` bytes of data right after the header.
    Write {
        offset: u64,
        length: u32,
        fua: bool,
    },
    Flush,
    Trim {
        offset: u64,
        length: u32,
    },
    /// `no_hole`: the server must allocate (`NBD_CMD_FLAG_NO_HOLE`).
    WriteZeroes {
        offset: u64,
        length: u32,
        no_hole: bool,
    },
}

impl Command {
    fn kind(self) -> u16 {
        match self {
            Command::Read { .. } => CMD_READ,
            Command::Write { .. } => CMD_WRITE,
            Command::Flush => CMD_FLUSH,
            Command::Trim { .. } => CMD_TRIM,
            Command::WriteZeroes { .. } => CMD_WRITE_ZEROES,
        }
    }
    fn range(self) -> (u64, u32) {
        match self {
            Command::Read { offset, length }
            | Command::Write { offset, length, .. }
            | Command::Trim { offset, length }
            | Command::WriteZeroes { offset, length, .. } => (offset, length),
            Command::Flush => (0, 0),
        }
    }
}

/// Why a command cannot be sent on this export (the caller's mistake, or what the server
/// did not offer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    ReadOnly,
    /// The server did not offer it (`NBD_FLAG_SEND_*`).
    NotOffered(&'static str),
    /// Offset or length not a multiple of the minimum block size, or an empty range.
    Misaligned,
    /// Longer than the maximum payload.
    TooLong,
    /// Past the end of the export.
    OutOfRange,
    /// Too many requests in flight.
    Busy,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::ReadOnly => f.write_str("the export is read-only"),
            SubmitError::NotOffered(w) => write!(f, "the server does not offer {w}"),
            SubmitError::Misaligned => f.write_str("request not aligned to the export's block size"),
            SubmitError::TooLong => f.write_str("request longer than the server's maximum payload"),
            SubmitError::OutOfRange => f.write_str("request past the end of the export"),
            SubmitError::Busy => f.write_str("too many requests in flight"),
        }
    }
}

/// The server broke the protocol: drop the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    BadMagic(u32),
    UnknownCookie(u64),
    /// A structured reply although none was negotiated, or a simple reply to a READ after
    /// structured replies were.
    WrongReplyKind,
    /// A chunk type we do not know and that is not an error.
    UnknownChunk(u16),
    /// A chunk whose length does not fit its type or the request.
    BadChunk(&'static str),
    /// Data or a hole outside the request, or over bytes already covered.
    OutOfRequest,
    /// A READ reported done without all of its bytes.
    Incomplete,
    /// A request answered in more pieces than we track (a defensive bound).
    TooFragmented,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::BadMagic(m) => write!(f, "NBD reply with bad magic {m:#x}"),
            ProtocolError::UnknownCookie(c) => write!(f, "NBD reply to cookie {c}, which is not in flight"),
            ProtocolError::WrongReplyKind => f.write_str("NBD reply of a kind not negotiated"),
            ProtocolError::UnknownChunk(t) => write!(f, "NBD structured reply of unknown type {t}"),
            ProtocolError::BadChunk(w) => write!(f, "malformed NBD structured reply: {w}"),
            ProtocolError::OutOfRequest => f.write_str("NBD reply data outside its request"),
            ProtocolError::Incomplete => f.write_str("NBD read reply without all of its data"),
            ProtocolError::TooFragmented => f.write_str("NBD reply in too many pieces"),
        }
    }
}

/// A request the server answered with an error (passed on to the guest, not retried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError {
    /// The NBD error value (`wire::E*`).
    pub error: u32,
    /// The server's message, if it sent one (cut to 256 characters).
    pub message: String,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", error_name(self.error), self.error)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// Where replies go.
pub trait Sink {
    /// `data` of READ `cookie`, `at` bytes into the request (arrives in pieces, in any order
    /// the server chooses, never twice for a byte).
    fn data(&mut self, cookie: u64, at: u32, data: &[u8]);
    /// `len` bytes of READ `cookie` at `at` read as zeroes (a hole).
    fn zeroes(&mut self, cookie: u64, at: u32, len: u32);
    /// Request `cookie` is answered.
    fn done(&mut self, cookie: u64, result: Result<(), ReplyError>);
}

/// Pieces of a reply tracked per request at most (merged when adjacent; a server sending
/// data in order uses one).
const MAX_PIECES: usize = 64;
/// Longest error or unknown-error chunk payload we take (4096-byte message + fields).
const MAX_ERROR_CHUNK: u32 = 6 + 4096 + 8;

#[derive(Debug)]
struct InFlight {
    cmd: Command,
    /// Byte ranges of a READ already covered, sorted, merged.
    covered: Vec<(u32, u32)>,
    error: Option<ReplyError>,
}

impl InFlight {
    /// Marks `[at, at + len)` covered; refuses overlap and too many pieces.
    fn cover(&mut self, at: u32, len: u32) -> Result<(), ProtocolError> {
        let end = at.checked_add(len).ok_or(ProtocolError::OutOfRequest)?;
        let i = self.covered.partition_point(|&(s, _)| s < at);
        let overlaps_prev = i > 0 && self.covered.get(i.wrapping_sub(1)).is_some_and(|&(_, e)| e > at);
        let overlaps_next = self.covered.get(i).is_some_and(|&(s, _)| s < end);
        if overlaps_prev || overlaps_next {
            return Err(ProtocolError::OutOfRequest);
        }
        self.covered.insert(i, (at, end));
        // Merge with neighbours.
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.covered.len());
        for &(s, e) in &self.covered {
            match merged.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => merged.push((s, e)),
            }
        }
        if merged.len() > MAX_PIECES {
            return Err(ProtocolError::TooFragmented);
        }
        self.covered = merged;
        Ok(())
    }
}

#[derive(Debug)]
enum Rx {
    /// Collecting a reply header (16 or 20 bytes, known from the magic).
    Header { buf: [u8; CHUNK_HEADER_LEN], have: usize },
    /// Streaming a simple READ reply's data.
    SimpleData { cookie: u64, at: u32, left: u32 },
    /// Collecting the fixed part of a chunk payload (offset, hole size, error fields).
    ChunkFields { cookie: u64, flags: u16, kind: u16, len: u32, buf: Vec<u8> },
    /// Streaming an `OFFSET_DATA` chunk's data.
    ChunkData { cookie: u64, flags: u16, at: u32, left: u32 },
}

/// The client in the transmission phase.
#[derive(Debug)]
pub struct Client {
    export: Export,
    next_cookie: u64,
    inflight: BTreeMap<u64, InFlight>,
    max_inflight: usize,
    rx: Rx,
}

impl Client {
    /// A client for a negotiated export, with at most `max_inflight` requests outstanding.
    pub fn new(export: Export, max_inflight: usize) -> Self {
        Self {
            export,
            next_cookie: 1,
            inflight: BTreeMap::new(),
            max_inflight: max_inflight.max(1),
            rx: Rx::Header { buf: [0; CHUNK_HEADER_LEN], have: 0 },
        }
    }

    pub fn export(&self) -> &Export {
        &self.export
    }

    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// The header of a new request and its cookie; for a WRITE the caller sends the data
    /// right after it. Nothing is recorded if the command is refused.
    pub fn submit(&mut self, cmd: Command) -> Result<(u64, [u8; REQUEST_LEN]), SubmitError> {
        if self.inflight.len() >= self.max_inflight {
            return Err(SubmitError::Busy);
        }
        let e = &self.export;
        let writes = !matches!(cmd, Command::Read { .. } | Command::Flush);
        if writes && e.read_only() {
            return Err(SubmitError::ReadOnly);
        }
        let mut flags = 0u16;
        match cmd {
            Command::Flush if !e.has(FLAG_SEND_FLUSH) => return Err(SubmitError::NotOffered("flush")),
            Command::Trim { .. } if !e.has(FLAG_SEND_TRIM) => return Err(SubmitError::NotOffered("trim")),
            Command::WriteZeroes { .. } if !e.has(FLAG_SEND_WRITE_ZEROES) => {
                return Err(SubmitError::NotOffered("write zeroes"));
            }
            Command::Write { fua: true, .. } if !e.has(FLAG_SEND_FUA) => return Err(SubmitError::NotOffered("FUA")),
            Command::Write { fua: true, .. } => flags |= CMD_FLAG_FUA,
            Command::WriteZeroes { no_hole: true, .. } => flags |= CMD_FLAG_NO_HOLE,
            _ => {}
        }
        let (offset, length) = cmd.range();
        if cmd != Command::Flush {
            let min = u64::from(e.block.min);
            if length == 0 || !offset.is_multiple_of(min) || !u64::from(length).is_multiple_of(min) {
                return Err(SubmitError::Misaligned);
            }
            if matches!(cmd, Command::Read { .. } | Command::Write { .. }) && length > e.block.max_payload {
                return Err(SubmitError::TooLong);
            }
            if offset.checked_add(u64::from(length)).is_none_or(|end| end > e.size) {
                return Err(SubmitError::OutOfRange);
            }
        }
        let cookie = self.next_cookie;
        self.next_cookie = self.next_cookie.wrapping_add(1).max(1);
        let header = Request { flags, kind: cmd.kind(), cookie, offset, length }.encode();
        self.inflight.insert(cookie, InFlight { cmd, covered: Vec::new(), error: None });
        Ok((cookie, header))
    }

    /// The commands still in flight, by cookie order, forgotten here: after a lost
    /// connection the caller replays them on a new one (`submit` again).
    pub fn take_in_flight(&mut self) -> Vec<(u64, Command)> {
        self.rx = Rx::Header { buf: [0; CHUNK_HEADER_LEN], have: 0 };
        core::mem::take(&mut self.inflight).into_iter().map(|(c, f)| (c, f.cmd)).collect()
    }

    /// Parses what the server sent, calling `sink` as replies complete. Consumes all of
    /// `input` unless the server broke the protocol.
    pub fn receive<S: Sink>(&mut self, mut input: &[u8], sink: &mut S) -> Result<(), ProtocolError> {
        while !input.is_empty() {
            let rx = core::mem::replace(&mut self.rx, Rx::Header { buf: [0; CHUNK_HEADER_LEN], have: 0 });
            self.rx = match rx {
                Rx::Header { mut buf, mut have } => {
                    // The magic first (4 bytes), then the rest of a header of the size it
                    // names; a bad magic is refused as soon as its 4 bytes are in.
                    let need = header_len(&buf, have)?;
                    let n = need.saturating_sub(have).min(input.len());
                    let (now, rest) = input.split_at(n);
                    if let Some(dst) = buf.get_mut(have..have.saturating_add(n)) {
                        dst.copy_from_slice(now);
                    }
                    have = have.saturating_add(n);
                    input = rest;
                    match header_len(&buf, have)? {
                        SIMPLE_REPLY_LEN if have == SIMPLE_REPLY_LEN => self.simple(&buf, sink)?,
                        CHUNK_HEADER_LEN if have == CHUNK_HEADER_LEN => self.chunk_header(&buf, sink)?,
                        _ => Rx::Header { buf, have },
                    }
                }
                Rx::SimpleData { cookie, at, left } => {
                    let n32 = stream(&mut input, cookie, at, left, sink);
                    let left = left.saturating_sub(n32);
                    if left == 0 {
                        self.inflight.remove(&cookie);
                        sink.done(cookie, Ok(()));
                        Rx::Header { buf: [0; CHUNK_HEADER_LEN], have: 0 }
                    } else {
                        Rx::SimpleData { cookie, at: at.saturating_add(n32), left }
                    }
                }
                Rx::ChunkFields { cookie, flags, kind, len, mut buf } => {
                    let need = fields_len(kind, len);
                    let n = need.saturating_sub(buf.len()).min(input.len());
                    let (now, rest) = input.split_at(n);
                    buf.extend_from_slice(now);
                    input = rest;
                    if buf.len() < need {
                        Rx::ChunkFields { cookie, flags, kind, len, buf }
                    } else {
                        self.chunk_fields(cookie, flags, kind, len, &buf, sink)?
                    }
                }
                Rx::ChunkData { cookie, flags, at, left } => {
                    let n32 = stream(&mut input, cookie, at, left, sink);
                    let left = left.saturating_sub(n32);
                    if left == 0 {
                        self.chunk_end(cookie, flags, sink)?;
                        Rx::Header { buf: [0; CHUNK_HEADER_LEN], have: 0 }
                    } else {
                        Rx::ChunkData { cookie, flags, at: at.saturating_add(n32), left }
                    }
                }
            };
        }
        // A zero-length simple READ cannot exist (submit refuses empty ranges), and a
        // chunk whose fields were all in this input has been handled: nothing pending to
        // finish without more bytes.
        Ok(())
    }

    fn simple<S: Sink>(&mut self, buf: &[u8; CHUNK_HEADER_LEN], sink: &mut S) -> Result<Rx, ProtocolError> {
        let r = Reader(buf);
        let error = r.u32(4).unwrap_or(0);
        let cookie = r.u64(8).unwrap_or(0);
        let f = self.inflight.get(&cookie).ok_or(ProtocolError::UnknownCookie(cookie))?;
        let read_len = match f.cmd {
            Command::Read { length, .. } => {
                if self.export.structured {
                    return Err(ProtocolError::WrongReplyKind);
                }
                Some(length)
            }
            _ => None,
        };
        match (error, read_len) {
            (0, Some(length)) => Ok(Rx::SimpleData { cookie, at: 0, left: length }),
            (e, _) => {
                self.inflight.remove(&cookie);
                let result = if e == 0 { Ok(()) } else { Err(ReplyError { error: e, message: String::new() }) };
                sink.done(cookie, result);
                Ok(Rx::Header { buf: [0; CHUNK_HEADER_LEN], have: 0 })
            }
        }
    }

    fn chunk_header<S: Sink>(&mut self, buf: &[u8; CHUNK_HEADER_LEN], sink: &mut S) -> Result<Rx, ProtocolError> {
        if !self.export.structured {
            return Err(ProtocolError::WrongReplyKind);
        }
        let r = Reader(buf);
        let flags = r.u16(4).unwrap_or(0);
        let kind = r.u16(6).unwrap_or(0);
        let cookie = r.u64(8).unwrap_or(0);
        let len = r.u32(16).unwrap_or(0);
        let f = self.inflight.get(&cookie).ok_or(ProtocolError::UnknownCookie(cookie))?;
        let is_read = matches!(f.cmd, Command::Read { .. });
        match kind {
            REPLY_TYPE_NONE => {
                if len != 0 || flags & REPLY_FLAG_DONE == 0 {
                    return Err(ProtocolError::BadChunk("NONE chunk with a payload or not final"));
                }
                self.chunk_end(cookie, flags, sink)?;
                return Ok(Rx::Header { buf: [0; CHUNK_HEADER_LEN], have: 0 });
            }
            REPLY_TYPE_OFFSET_DATA => {
                if !is_read {
                    return Err(ProtocolError::BadChunk("data for a request that reads nothing"));
                }
                if len < 9 || len.saturating_sub(8) > self.export.block.max_payload {
                    return Err(ProtocolError::BadChunk("OFFSET_DATA length"));
                }
            }
            REPLY_TYPE_OFFSET_HOLE => {
                if !is_read || len != 12 {
                    return Err(ProtocolError::BadChunk("OFFSET_HOLE length or request"));
                }
            }
            REPLY_TYPE_ERROR | REPLY_TYPE_ERROR_OFFSET => {
                let min = if kind == REPLY_TYPE_ERROR { 6 } else { 14 };
                if !(min..=MAX_ERROR_CHUNK).contains(&len) {
                    return Err(ProtocolError::BadChunk("error chunk length"));
                }
            }
            k if k & REPLY_TYPE_FLAG_ERROR != 0 => {
                // An error chunk of a type we do not know: still an error for this request.
                if !(6..=MAX_ERROR_CHUNK).contains(&len) {
                    return Err(ProtocolError::BadChunk("error chunk length"));
                }
            }
            k => return Err(ProtocolError::UnknownChunk(k)),
        }
        Ok(Rx::ChunkFields { cookie, flags, kind, len, buf: Vec::new() })
    }

    fn chunk_fields<S: Sink>(
        &mut self,
        cookie: u64,
        flags: u16,
        kind: u16,
        len: u32,
        buf: &[u8],
        sink: &mut S,
    ) -> Result<Rx, ProtocolError> {
        let r = Reader(buf);
        let f = self.inflight.get_mut(&cookie).ok_or(ProtocolError::UnknownCookie(cookie))?;
        let (req_off, req_len) = f.cmd.range();
        // Position of [offset, offset + n) inside the request.
        let inside = |offset: u64, n: u32| -> Result<u32, ProtocolError> {
            let at = offset.checked_sub(req_off).ok_or(ProtocolError::OutOfRequest)?;
            let at = u32::try_from(at).map_err(|_| ProtocolError::OutOfRequest)?;
            if at.checked_add(n).is_none_or(|end| end > req_len) {
                return Err(ProtocolError::OutOfRequest);
            }
            Ok(at)
        };
        match kind {
            REPLY_TYPE_OFFSET_DATA => {
                let n = len.saturating_sub(8);
                let at = inside(r.u64(0).unwrap_or(0), n)?;
                f.cover(at, n)?;
                return Ok(Rx::ChunkData { cookie, flags, at, left: n });
            }
            REPLY_TYPE_OFFSET_HOLE => {
                let n = r.u32(8).unwrap_or(0);
                if n == 0 {
                    return Err(ProtocolError::BadChunk("empty hole"));
                }
                let at = inside(r.u64(0).unwrap_or(0), n)?;
                f.cover(at, n)?;
                sink.zeroes(cookie, at, n);
            }
            _ => {
                // Error chunks: error, message length, message[, offset].
                let error = r.u32(0).unwrap_or(0);
                let mlen = usize::from(r.u16(4).unwrap_or(0));
                let fixed = if kind == REPLY_TYPE_ERROR_OFFSET { 14 } else { 6 };
                if error == 0 || mlen > (len as usize).saturating_sub(fixed) {
                    return Err(ProtocolError::BadChunk("error chunk fields"));
                }
                if kind == REPLY_TYPE_ERROR_OFFSET {
                    let off = r.u64(6usize.saturating_add(mlen)).unwrap_or(0);
                    inside(off, 0)?;
                }
                let msg = buf.get(6..6usize.saturating_add(mlen)).unwrap_or_default();
                let message: String = String::from_utf8_lossy(msg).chars().take(256).collect();
                if f.error.is_none() {
                    f.error = Some(ReplyError { error, message });
                }
            }
        }
        self.chunk_end(cookie, flags, sink)?;
        Ok(Rx::Header { buf: [0; CHUNK_HEADER_LEN], have: 0 })
    }

    /// After a chunk: if it was the last of its reply, the request is answered.
    fn chunk_end<S: Sink>(&mut self, cookie: u64, flags: u16, sink: &mut S) -> Result<(), ProtocolError> {
        if flags & REPLY_FLAG_DONE == 0 {
            return Ok(());
        }
        let f = self.inflight.remove(&cookie).ok_or(ProtocolError::UnknownCookie(cookie))?;
        let result = match f.error {
            Some(e) => Err(e),
            None => {
                if let Command::Read { length, .. } = f.cmd {
                    if f.covered.as_slice() != [(0, length)] {
                        return Err(ProtocolError::Incomplete);
                    }
                }
                Ok(())
            }
        };
        sink.done(cookie, result);
        Ok(())
    }
}

/// Hands up to `left` bytes of `input` to the sink as READ data at `at`; returns how many.
fn stream<S: Sink>(input: &mut &[u8], cookie: u64, at: u32, left: u32, sink: &mut S) -> u32 {
    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
    let (now, rest) = input.split_at(n);
    sink.data(cookie, at, now);
    *input = rest;
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The length of the header being collected: 4 until the magic is in, then the size of
/// the reply it names.
fn header_len(buf: &[u8; CHUNK_HEADER_LEN], have: usize) -> Result<usize, ProtocolError> {
    match Reader(buf.get(..have.min(4)).unwrap_or_default()).u32(0) {
        Some(SIMPLE_REPLY_MAGIC) => Ok(SIMPLE_REPLY_LEN),
        Some(STRUCTURED_REPLY_MAGIC) => Ok(CHUNK_HEADER_LEN),
        Some(m) => Err(ProtocolError::BadMagic(m)),
        None => Ok(4),
    }
}

/// Bytes of fixed fields to collect before acting on a chunk: the offset of a data chunk,
/// the whole payload of the others (bounded by `chunk_header`).
fn fields_len(kind: u16, len: u32) -> usize {
    match kind {
        REPLY_TYPE_OFFSET_DATA => 8,
        _ => len as usize,
    }
}
