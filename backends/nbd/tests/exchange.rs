//! The client against an in-process NBD server written from the protocol document: every
//! negotiation path, every reply form, delivered in pieces as a socket would, data checked
//! byte for byte; then a hostile server: every breach is a protocol error, never a panic.
// Test scaffolding: sizes and offsets are the tests' own.
#![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use std::collections::BTreeMap;

use nbd::client::{Client, Command, ProtocolError, ReplyError, Sink, SubmitError};
use nbd::handshake::{BlockSizes, Export, Handshake, HandshakeError};
use nbd::testing::*;
use nbd::wire::*;
use proptest::prelude::*;

/// Feeds `bytes` to `f` in pieces of the given sizes (cycled), as a socket would.
fn in_pieces(bytes: &[u8], sizes: &[usize], mut f: impl FnMut(&[u8])) {
    let mut i = 0;
    let mut k = 0;
    while i < bytes.len() {
        let n = sizes[k % sizes.len()].max(1).min(bytes.len() - i);
        f(&bytes[i..i + n]);
        i += n;
        k += 1;
    }
}

/// Runs the negotiation to its end.
fn negotiate(
    server: &mut Server,
    greet: Vec<u8>,
    export: &str,
    sizes: &[usize],
) -> Result<(Export, Vec<u8>), HandshakeError> {
    let mut hs = Handshake::new(export);
    let mut to_server = Vec::new();
    let mut result = None;
    let mut pending = greet;
    for _ in 0..20 {
        let mut err = None;
        in_pieces(&pending, sizes, |piece| {
            if result.is_some() || err.is_some() {
                return;
            }
            match hs.receive(piece, &mut to_server) {
                Ok(Some(e)) => result = Some(e),
                Ok(None) => {}
                Err(e) => err = Some(e),
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        if let Some(e) = result {
            return Ok((e, hs.leftover()));
        }
        pending = server.feed(&std::mem::take(&mut to_server));
    }
    panic!("negotiation did not end");
}

/// Collects what the client hands out.
#[derive(Default, Debug)]
struct Collect {
    bufs: BTreeMap<u64, Vec<u8>>,
    done: BTreeMap<u64, Result<(), ReplyError>>,
    pieces: usize,
}

impl Sink for Collect {
    fn data(&mut self, cookie: u64, at: u32, data: &[u8]) {
        let b = self.bufs.get_mut(&cookie).expect("data for a request we did not start");
        b[at as usize..at as usize + data.len()].copy_from_slice(data);
        self.pieces += 1;
    }
    fn zeroes(&mut self, cookie: u64, at: u32, len: u32) {
        let b = self.bufs.get_mut(&cookie).expect("hole for a request we did not start");
        b[at as usize..(at + len) as usize].fill(0);
    }
    fn done(&mut self, cookie: u64, result: Result<(), ReplyError>) {
        assert!(self.done.insert(cookie, result).is_none(), "cookie {cookie} answered twice");
    }
}

struct Pair {
    server: Server,
    client: Client,
    sink: Collect,
    sizes: Vec<usize>,
}

impl Pair {
    fn new(o: ServerOpts, size: usize, sizes: &[usize]) -> Self {
        let (mut server, greet) = Server::new(o, size);
        let (export, left) = negotiate(&mut server, greet, "disk0", sizes).expect("negotiation");
        assert!(left.is_empty());
        Self { server, client: Client::new(export, 64), sink: Collect::default(), sizes: sizes.to_vec() }
    }

    /// Sends the commands, then delivers the server's replies in pieces.
    fn run(&mut self, cmds: &[(Command, Option<Vec<u8>>)]) -> Vec<u64> {
        let mut wire = Vec::new();
        let mut cookies = Vec::new();
        for (c, data) in cmds {
            let (cookie, hdr) = self.client.submit(*c).expect("submit");
            wire.extend(hdr);
            if let Some(d) = data {
                wire.extend(d);
            }
            if let Command::Read { length, .. } = c {
                // Stale bytes, to show every byte is written.
                self.sink.bufs.insert(cookie, vec![0xEE; *length as usize]);
            }
            cookies.push(cookie);
        }
        let replies = self.server.feed(&wire);
        let (client, sink) = (&mut self.client, &mut self.sink);
        let mut res = Ok(());
        in_pieces(&replies, &self.sizes, |p| {
            if res.is_ok() {
                res = client.receive(p, sink);
            }
        });
        res.expect("protocol");
        cookies
    }
}

#[test]
fn go_with_structured_replies_and_block_sizes() {
    for sizes in [vec![1], vec![3, 7], vec![4096]] {
        let mut p = Pair::new(ServerOpts { chunks: 3, ..ServerOpts::default() }, 1 << 20, &sizes);
        let e = *p.client.export();
        assert_eq!(e.size, 1 << 20);
        assert!(e.structured);
        assert_eq!(e.block, BlockSizes { min: 512, preferred: 4096, max_payload: 1 << 20 });
        assert_eq!(p.server.names, ["disk0"]);
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let c = p.run(&[
            (Command::Write { offset: 4096, length: 8192, fua: true }, Some(data.clone())),
            (Command::Read { offset: 4096, length: 8192 }, None),
            (Command::Read { offset: 0, length: 4096 }, None),
            (Command::Flush, None),
        ]);
        assert_eq!(p.sink.done.len(), 4);
        assert!(p.sink.done.values().all(Result::is_ok), "{:?}", p.sink.done);
        assert_eq!(p.sink.bufs[&c[1]], data);
        assert_eq!(p.sink.bufs[&c[2]], p.server.disk[..4096]);
        assert_eq!(p.server.flushes, 1);
        assert_eq!(p.client.in_flight(), 0);
    }
}

#[test]
fn holes_read_as_zeroes() {
    let mut p = Pair::new(ServerOpts { chunks: 3, hole: true, ..ServerOpts::default() }, 1 << 16, &[5]);
    p.run(&[(Command::WriteZeroes { offset: 0, length: 3 * 4096, no_hole: false }, None)]);
    let c = p.run(&[(Command::Read { offset: 0, length: 3 * 4096 }, None)]);
    assert_eq!(p.sink.done[&c[0]], Ok(()));
    assert!(p.sink.bufs[&c[0]].iter().all(|&b| b == 0), "the hole left stale bytes");
}

#[test]
fn simple_replies_without_structured_or_go() {
    for (o, sizes) in [
        (ServerOpts { structured: false, ..ServerOpts::default() }, vec![2]),
        (ServerOpts { structured: false, go: false, ..ServerOpts::default() }, vec![9]),
        (ServerOpts { go: false, no_zeroes: false, ..ServerOpts::default() }, vec![1]),
        (
            ServerOpts {
                fixed_newstyle: false,
                structured: false,
                go: false,
                no_zeroes: false,
                ..ServerOpts::default()
            },
            vec![64],
        ),
    ] {
        let mut p = Pair::new(o, 1 << 16, &sizes);
        assert_eq!(p.client.export().structured, o.structured && o.fixed_newstyle);
        if !o.go {
            // NBD_OPT_EXPORT_NAME: the defaults, since no block sizes were exchanged.
            assert_eq!(p.client.export().block, BlockSizes::default());
        }
        let data = vec![0x5A; 2048];
        let c = p.run(&[
            (Command::Write { offset: 1024, length: 2048, fua: false }, Some(data.clone())),
            (Command::Read { offset: 1024, length: 2048 }, None),
        ]);
        assert_eq!(p.sink.done[&c[1]], Ok(()));
        assert_eq!(p.sink.bufs[&c[1]], data);
    }
}

#[test]
fn server_errors_reach_the_request_not_the_connection() {
    let mut p = Pair::new(ServerOpts::default(), 1 << 16, &[7]);
    // The server checks ranges itself too: a read it refuses (sent by a client that thinks
    // the disk is larger) is an error for that request only.
    let c = {
        let e = Export { size: 1 << 30, ..*p.client.export() };
        p.client = Client::new(e, 8);
        p.run(&[
            (Command::Read { offset: 1 << 20, length: 4096 }, None),
            (Command::Read { offset: 0, length: 512 }, None),
        ])
    };
    assert_eq!(p.sink.done[&c[0]], Err(ReplyError { error: EINVAL, message: "range".into() }));
    assert_eq!(p.sink.done[&c[1]], Ok(()));
    let mut ro = Pair::new(ServerOpts { flags: FLAG_HAS_FLAGS | FLAG_READ_ONLY, ..ServerOpts::default() }, 4096, &[3]);
    assert!(ro.client.export().read_only());
    assert_eq!(ro.client.submit(Command::Write { offset: 0, length: 512, fua: false }), Err(SubmitError::ReadOnly));
    assert_eq!(ro.client.submit(Command::Flush), Err(SubmitError::NotOffered("flush")));
}

#[test]
fn submit_checks_against_the_export() {
    let p = Pair::new(ServerOpts::default(), 1 << 20, &[1]);
    let mut c = p.client;
    assert_eq!(c.submit(Command::Read { offset: 100, length: 512 }), Err(SubmitError::Misaligned));
    assert_eq!(c.submit(Command::Read { offset: 0, length: 0 }), Err(SubmitError::Misaligned));
    assert_eq!(c.submit(Command::Read { offset: 0, length: 2 << 20 }), Err(SubmitError::TooLong));
    assert_eq!(c.submit(Command::Read { offset: (1 << 20) - 512, length: 1024 }), Err(SubmitError::OutOfRange));
    assert_eq!(c.submit(Command::Read { offset: u64::MAX - 511, length: 512 }), Err(SubmitError::OutOfRange));
    assert_eq!(c.in_flight(), 0, "a refused command was recorded");
    let mut c = Client::new(*c.export(), 2);
    c.submit(Command::Flush).unwrap();
    c.submit(Command::Flush).unwrap();
    assert_eq!(c.submit(Command::Flush), Err(SubmitError::Busy));
    // After a lost connection the commands come back for replay, in order.
    let back = c.take_in_flight();
    assert_eq!(back.iter().map(|b| b.1).collect::<Vec<_>>(), [Command::Flush, Command::Flush]);
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn unknown_export_and_bad_greetings() {
    let (mut s, greet) = Server::new(ServerOpts::default(), 4096);
    assert_eq!(negotiate(&mut s, greet, "nope", &[4]).map(|_| ()), Err(HandshakeError::UnknownExport));
    let mut hs = Handshake::new("x");
    assert_eq!(hs.receive(&[0u8; 18], &mut Vec::new()), Err(HandshakeError::NotNewstyle));
    // Impossible block sizes (minimum not a power of two).
    let (mut s, greet) = Server::new(ServerOpts { block: Some((500, 4096, 1 << 20)), ..ServerOpts::default() }, 4096);
    assert!(matches!(negotiate(&mut s, greet, "disk0", &[4]), Err(HandshakeError::BadReply(_))));
}

/// A client with one READ of 4096 bytes at 8192 in flight (cookie 1), structured or not.
fn one_read(structured: bool) -> Client {
    let e = Export { size: 1 << 20, flags: FLAG_HAS_FLAGS, block: BlockSizes::default(), structured };
    let mut c = Client::new(e, 4);
    let (cookie, _) = c.submit(Command::Read { offset: 8192, length: 4096 }).unwrap();
    assert_eq!(cookie, 1);
    c
}

fn chunk(flags: u16, kind: u16, cookie: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Server::chunk(&mut out, flags, kind, cookie, payload);
    out
}

fn data_chunk(flags: u16, offset: u64, n: usize) -> Vec<u8> {
    let mut p = be64(offset).to_vec();
    p.extend(vec![1u8; n]);
    chunk(flags, REPLY_TYPE_OFFSET_DATA, 1, &p)
}

#[test]
fn hostile_replies_are_protocol_errors() {
    let mut sink = Collect::default();
    sink.bufs.insert(1, vec![0; 4096]);
    let cases: Vec<(bool, Vec<u8>, ProtocolError)> = vec![
        (true, vec![0xde, 0xad, 0xbe, 0xef], ProtocolError::BadMagic(0xdead_beef)),
        (true, chunk(REPLY_FLAG_DONE, REPLY_TYPE_NONE, 9, &[]), ProtocolError::UnknownCookie(9)),
        (false, chunk(REPLY_FLAG_DONE, REPLY_TYPE_NONE, 1, &[]), ProtocolError::WrongReplyKind),
        (
            true,
            {
                let mut o = Vec::new();
                Server::simple(&mut o, 0, 1);
                o
            },
            ProtocolError::WrongReplyKind,
        ),
        (true, chunk(REPLY_FLAG_DONE, 77, 1, &[]), ProtocolError::UnknownChunk(77)),
        (true, chunk(0, REPLY_TYPE_NONE, 1, &[]), ProtocolError::BadChunk("NONE chunk with a payload or not final")),
        (true, data_chunk(0, 4096, 16), ProtocolError::OutOfRequest),
        (true, data_chunk(0, 8192 + 4090, 16), ProtocolError::OutOfRequest),
        (true, [data_chunk(0, 8192, 2048), data_chunk(0, 8192 + 1024, 16)].concat(), ProtocolError::OutOfRequest),
        (true, data_chunk(REPLY_FLAG_DONE, 8192, 2048), ProtocolError::Incomplete),
        (
            true,
            chunk(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_HOLE, 1, &[0; 8]),
            ProtocolError::BadChunk("OFFSET_HOLE length or request"),
        ),
        (true, chunk(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 1, &[0; 6]), ProtocolError::BadChunk("error chunk fields")),
        (
            true,
            chunk(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 1, &[0, 0, 0, 5, 0, 9, b'x']),
            ProtocolError::BadChunk("error chunk fields"),
        ),
        (
            true,
            {
                let mut h = chunk(0, REPLY_TYPE_ERROR, 1, &[]);
                h[16..20].copy_from_slice(&be32(1 << 30));
                h
            },
            ProtocolError::BadChunk("error chunk length"),
        ),
        (
            true,
            {
                let mut h = chunk(0, REPLY_TYPE_OFFSET_DATA, 1, &[]);
                h[16..20].copy_from_slice(&be32(u32::MAX));
                h
            },
            ProtocolError::BadChunk("OFFSET_DATA length"),
        ),
    ];
    for (i, (structured, bytes, want)) in cases.into_iter().enumerate() {
        for piece in [1usize, 5, 4096] {
            let mut c = one_read(structured);
            let mut got = Ok(());
            in_pieces(&bytes, &[piece], |p| {
                if got.is_ok() {
                    got = c.receive(p, &mut sink);
                }
            });
            assert_eq!(got, Err(want), "case {i}, pieces of {piece}");
        }
    }
    // Many 1-byte pieces of data in reverse order: bounded bookkeeping, not a slow death.
    let mut c = one_read(true);
    let mut err = Ok(());
    for k in 0..100u64 {
        if err.is_ok() {
            err = c.receive(&data_chunk(0, 8192 + 4095 - 2 * k, 1), &mut sink);
        }
    }
    assert_eq!(err, Err(ProtocolError::TooFragmented));
}

#[test]
fn error_chunks_fail_the_request_with_the_servers_words() {
    let mut sink = Collect::default();
    sink.bufs.insert(1, vec![0; 4096]);
    let mut c = one_read(true);
    let mut p = be32(EIO).to_vec();
    p.extend(be16(4));
    p.extend(b"disk");
    p.extend(be64(8192 + 512));
    let mut bytes = data_chunk(0, 8192, 512);
    bytes.extend(chunk(0, REPLY_TYPE_ERROR_OFFSET, 1, &p));
    bytes.extend(chunk(REPLY_FLAG_DONE, REPLY_TYPE_NONE, 1, &[]));
    c.receive(&bytes, &mut sink).unwrap();
    assert_eq!(sink.done[&1], Err(ReplyError { error: EIO, message: "disk".into() }));
    assert_eq!(ReplyError { error: EIO, message: "disk".into() }.to_string(), "EIO (5): disk");
    assert_eq!(c.in_flight(), 0);
}

proptest! {
    /// Whatever a server sends, the client answers each request at most once, writes only
    /// inside its buffers (the sink asserts both), and ends in Ok or a protocol error.
    #[test]
    fn arbitrary_replies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), structured: bool, cut in 1usize..64) {
        let mut sink = Collect::default();
        sink.bufs.insert(1, vec![0; 4096]);
        let mut c = one_read(structured);
        let mut res = Ok(());
        in_pieces(&bytes, &[cut], |p| if res.is_ok() { res = c.receive(p, &mut sink); });
        prop_assert!(sink.done.len() <= 1);
    }

    /// Mostly valid replies, one byte changed: never a panic; the read either completes
    /// with the right data or fails.
    #[test]
    fn one_corrupted_byte(at in 0usize..2200, val: u8, cut in 1usize..300) {
        let mut bytes = data_chunk(0, 8192 + 2048, 2048);
        bytes.extend(data_chunk(REPLY_FLAG_DONE, 8192, 2048));
        let at = at % bytes.len();
        bytes[at] = val;
        let mut sink = Collect::default();
        sink.bufs.insert(1, vec![0; 4096]);
        let mut c = one_read(true);
        let mut res = Ok(());
        in_pieces(&bytes, &[cut], |p| if res.is_ok() { res = c.receive(p, &mut sink); });
        if res.is_ok() {
            if let Some(Ok(())) = sink.done.get(&1) {
                prop_assert_eq!(sink.bufs[&1].len(), 4096);
            }
        }
    }
}
