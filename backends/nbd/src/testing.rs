//! An NBD server written from the protocol document (feature `test-utils`), for the
//! client's and its users' tests: a RAM export `disk0`, fixed or plain newstyle, with or
//! without structured replies and `NBD_OPT_GO`, READ replies split into chunks and holes on
//! request, and the server-side range and read-only checks.
// Test scaffolding: sizes and offsets are the tests' own.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::missing_panics_doc,
    clippy::unwrap_used
)]

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::wire::*;

/// How the fake server behaves.
#[derive(Debug, Clone, Copy)]
pub struct ServerOpts {
    pub fixed_newstyle: bool,
    pub no_zeroes: bool,
    pub structured: bool,
    pub go: bool,
    pub flags: u16,
    pub block: Option<(u32, u32, u32)>,
    /// Split READ replies into this many data chunks (structured), with a hole in the
    /// middle when `hole`.
    pub chunks: u32,
    pub hole: bool,
}

impl Default for ServerOpts {
    fn default() -> Self {
        Self {
            fixed_newstyle: true,
            no_zeroes: true,
            structured: true,
            go: true,
            flags: FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES,
            block: Some((512, 4096, 1 << 20)),
            chunks: 1,
            hole: false,
        }
    }
}

/// A RAM export speaking the server side of `doc/proto.md`.
#[derive(Debug)]
pub struct Server {
    pub o: ServerOpts,
    pub disk: Vec<u8>,
    inbuf: Vec<u8>,
    phase: u8, // 0 client flags, 1 options, 2 transmission
    pub structured: bool,
    client_no_zeroes: bool,
    pub flushes: u32,
    pub names: Vec<String>,
    /// Commands served, by type (`CMD_*`).
    pub served: BTreeMap<u16, u32>,
}

pub fn be16(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}
pub fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}
pub fn be64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

impl Server {
    /// A server with a `size`-byte export named `disk0`, and its greeting.
    pub fn new(o: ServerOpts, size: usize) -> (Self, Vec<u8>) {
        let mut greet = Vec::new();
        greet.extend(be64(NBDMAGIC));
        greet.extend(be64(IHAVEOPT));
        let hs = if o.fixed_newstyle { FLAG_FIXED_NEWSTYLE } else { 0 } | if o.no_zeroes { FLAG_NO_ZEROES } else { 0 };
        greet.extend(be16(hs));
        let disk = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
        let s = Self {
            o,
            disk,
            inbuf: Vec::new(),
            phase: 0,
            structured: false,
            client_no_zeroes: false,
            flushes: 0,
            names: Vec::new(),
            served: BTreeMap::new(),
        };
        (s, greet)
    }

    /// A new client connection to the same export (the old one is gone): the greeting.
    pub fn reconnect(&mut self) -> Vec<u8> {
        self.inbuf.clear();
        self.phase = 0;
        self.structured = false;
        let mut greet = Vec::new();
        greet.extend(be64(NBDMAGIC));
        greet.extend(be64(IHAVEOPT));
        let hs = if self.o.fixed_newstyle { FLAG_FIXED_NEWSTYLE } else { 0 }
            | if self.o.no_zeroes { FLAG_NO_ZEROES } else { 0 };
        greet.extend(be16(hs));
        greet
    }

    pub fn opt_reply(out: &mut Vec<u8>, opt: u32, kind: u32, data: &[u8]) {
        out.extend(be64(OPTION_REPLY_MAGIC));
        out.extend(be32(opt));
        out.extend(be32(kind));
        out.extend(be32(data.len() as u32));
        out.extend(data);
    }

    /// Takes the client's bytes, returns the server's.
    pub fn feed(&mut self, input: &[u8]) -> Vec<u8> {
        self.inbuf.extend(input);
        let mut out = Vec::new();
        loop {
            match self.phase {
                0 => {
                    if self.inbuf.len() < 4 {
                        break;
                    }
                    let f = u32::from_be_bytes(self.inbuf[..4].try_into().unwrap());
                    self.client_no_zeroes = f & FLAG_C_NO_ZEROES != 0;
                    assert_eq!(f & !3, 0, "unknown client flags");
                    assert!(self.o.no_zeroes || !self.client_no_zeroes, "NO_ZEROES without the server's offer");
                    self.inbuf.drain(..4);
                    self.phase = 1;
                }
                1 => {
                    if self.inbuf.len() < 16 {
                        break;
                    }
                    assert_eq!(u64::from_be_bytes(self.inbuf[..8].try_into().unwrap()), IHAVEOPT);
                    let opt = u32::from_be_bytes(self.inbuf[8..12].try_into().unwrap());
                    let len = u32::from_be_bytes(self.inbuf[12..16].try_into().unwrap()) as usize;
                    if self.inbuf.len() < 16 + len {
                        break;
                    }
                    let data: Vec<u8> = self.inbuf[16..16 + len].to_vec();
                    self.inbuf.drain(..16 + len);
                    match opt {
                        OPT_STRUCTURED_REPLY if self.o.structured => {
                            self.structured = true;
                            Self::opt_reply(&mut out, opt, REP_ACK, &[]);
                        }
                        OPT_GO if self.o.go => {
                            let nlen = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
                            let name = String::from_utf8(data[4..4 + nlen].to_vec()).unwrap();
                            let ninfo = u16::from_be_bytes(data[4 + nlen..6 + nlen].try_into().unwrap());
                            assert_eq!(ninfo, 1);
                            assert_eq!(
                                u16::from_be_bytes(data[6 + nlen..8 + nlen].try_into().unwrap()),
                                INFO_BLOCK_SIZE
                            );
                            self.names.push(name.clone());
                            if name != "disk0" {
                                Self::opt_reply(&mut out, opt, REP_ERR_UNKNOWN, b"no such export");
                                continue;
                            }
                            // Something we did not ask for first: it must be ignored.
                            let mut d = be16(2).to_vec();
                            d.extend(b"a description");
                            Self::opt_reply(&mut out, opt, REP_INFO, &d);
                            if let Some((a, b, c)) = self.o.block {
                                let mut d = be16(INFO_BLOCK_SIZE).to_vec();
                                d.extend(be32(a));
                                d.extend(be32(b));
                                d.extend(be32(c));
                                Self::opt_reply(&mut out, opt, REP_INFO, &d);
                            }
                            let mut d = be16(INFO_EXPORT).to_vec();
                            d.extend(be64(self.disk.len() as u64));
                            d.extend(be16(self.o.flags));
                            Self::opt_reply(&mut out, opt, REP_INFO, &d);
                            Self::opt_reply(&mut out, opt, REP_ACK, &[]);
                            self.phase = 2;
                        }
                        OPT_EXPORT_NAME => {
                            self.names.push(String::from_utf8(data).unwrap());
                            out.extend(be64(self.disk.len() as u64));
                            out.extend(be16(self.o.flags));
                            if !self.client_no_zeroes {
                                out.extend([0u8; 124]);
                            }
                            self.phase = 2;
                        }
                        _ => Self::opt_reply(&mut out, opt, REP_ERR_UNSUP, &[]),
                    }
                }
                _ => {
                    if self.inbuf.len() < REQUEST_LEN {
                        break;
                    }
                    let r = Request::decode(self.inbuf[..REQUEST_LEN].try_into().unwrap()).expect("request magic");
                    let data_len = if r.kind == CMD_WRITE { r.length as usize } else { 0 };
                    if self.inbuf.len() < REQUEST_LEN + data_len {
                        break;
                    }
                    let payload: Vec<u8> = self.inbuf[REQUEST_LEN..REQUEST_LEN + data_len].to_vec();
                    self.inbuf.drain(..REQUEST_LEN + data_len);
                    self.serve(r, &payload, &mut out);
                }
            }
        }
        out
    }

    pub fn simple(out: &mut Vec<u8>, error: u32, cookie: u64) {
        out.extend(be32(SIMPLE_REPLY_MAGIC));
        out.extend(be32(error));
        out.extend(be64(cookie));
    }

    pub fn chunk(out: &mut Vec<u8>, flags: u16, kind: u16, cookie: u64, payload: &[u8]) {
        out.extend(be32(STRUCTURED_REPLY_MAGIC));
        out.extend(be16(flags));
        out.extend(be16(kind));
        out.extend(be64(cookie));
        out.extend(be32(payload.len() as u32));
        out.extend(payload);
    }

    fn serve(&mut self, r: Request, payload: &[u8], out: &mut Vec<u8>) {
        *self.served.entry(r.kind).or_insert(0) += 1;
        let (off, len) = (r.offset as usize, r.length as usize);
        let in_range = off + len <= self.disk.len();
        match r.kind {
            CMD_READ if !in_range => {
                if self.structured {
                    let mut p = be32(EINVAL).to_vec();
                    p.extend(be16(5));
                    p.extend(b"range");
                    Self::chunk(out, REPLY_FLAG_DONE, REPLY_TYPE_ERROR, r.cookie, &p);
                } else {
                    Self::simple(out, EINVAL, r.cookie);
                }
            }
            CMD_READ if self.structured => {
                // In `chunks` pieces, last first (order is the server's choice), a hole in
                // the middle when asked; NONE ends it.
                let n = self.o.chunks.max(1) as usize;
                let step = len.div_ceil(n);
                let mut pieces: Vec<(usize, usize)> = (0..n)
                    .map(|i| (off + i * step, (step).min(len.saturating_sub(i * step))))
                    .filter(|p| p.1 > 0)
                    .collect();
                pieces.reverse();
                let mid = pieces.len() / 2;
                for (i, &(o, l)) in pieces.iter().enumerate() {
                    if self.o.hole && i == mid && self.disk[o..o + l].iter().all(|&b| b == 0) {
                        let mut p = be64(o as u64).to_vec();
                        p.extend(be32(l as u32));
                        Self::chunk(out, 0, REPLY_TYPE_OFFSET_HOLE, r.cookie, &p);
                    } else {
                        let mut p = be64(o as u64).to_vec();
                        p.extend(&self.disk[o..o + l]);
                        Self::chunk(out, 0, REPLY_TYPE_OFFSET_DATA, r.cookie, &p);
                    }
                }
                Self::chunk(out, REPLY_FLAG_DONE, REPLY_TYPE_NONE, r.cookie, &[]);
            }
            CMD_READ => {
                Self::simple(out, 0, r.cookie);
                out.extend(&self.disk[off..off + len]);
            }
            CMD_WRITE | CMD_WRITE_ZEROES | CMD_TRIM => {
                if self.o.flags & FLAG_READ_ONLY != 0 {
                    Self::simple(out, EPERM, r.cookie);
                    return;
                }
                if !in_range {
                    Self::simple(out, ENOSPC, r.cookie);
                    return;
                }
                match r.kind {
                    CMD_WRITE => self.disk[off..off + len].copy_from_slice(payload),
                    _ => self.disk[off..off + len].fill(0),
                }
                if self.structured {
                    Self::chunk(out, REPLY_FLAG_DONE, REPLY_TYPE_NONE, r.cookie, &[]);
                } else {
                    Self::simple(out, 0, r.cookie);
                }
            }
            CMD_FLUSH => {
                self.flushes += 1;
                Self::simple(out, 0, r.cookie);
            }
            _ => Self::simple(out, EINVAL, r.cookie),
        }
    }
}
