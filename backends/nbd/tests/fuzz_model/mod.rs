//! The `nbd_reply` fuzz target's model (`fuzz/fuzz_targets/nbd_reply.rs` includes this
//! file; `tests/fuzz_corpus.rs` replays the corpus through it): arbitrary bytes from an NBD
//! "server", first through the handshake, then as transmission replies to a few requests in
//! flight. The client must end in Ok or an error, never panic, never answer a request twice,
//! and never hand out data outside a request's buffer.
#![allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects, dead_code)]

use std::collections::BTreeMap;

use nbd::client::{Client, Command, ReplyError, Sink};
use nbd::handshake::{BlockSizes, Export, Handshake};
use nbd::wire::FLAG_HAS_FLAGS;

struct Check {
    lens: BTreeMap<u64, u32>,
    done: BTreeMap<u64, bool>,
}

impl Sink for Check {
    fn data(&mut self, cookie: u64, at: u32, data: &[u8]) {
        let len = self.lens[&cookie];
        assert!(u64::from(at) + data.len() as u64 <= u64::from(len), "data outside the request");
    }
    fn zeroes(&mut self, cookie: u64, at: u32, n: u32) {
        assert!(u64::from(at) + u64::from(n) <= u64::from(self.lens[&cookie]), "hole outside the request");
    }
    fn done(&mut self, cookie: u64, r: Result<(), ReplyError>) {
        assert!(self.done.insert(cookie, r.is_ok()).is_none(), "answered twice");
    }
}

/// One fuzz input: server bytes through the handshake, then as replies.
pub fn nbd_reply(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let cut = usize::from(sel >> 2).max(1);
    let mut hs = Handshake::new("disk0");
    let mut out = Vec::new();
    for piece in rest.chunks(cut) {
        if hs.receive(piece, &mut out).is_err() {
            break;
        }
    }
    let e = Export { size: 1 << 20, flags: FLAG_HAS_FLAGS, block: BlockSizes::default(), structured: sel & 1 != 0 };
    let mut c = Client::new(e, 8);
    let mut chk = Check { lens: BTreeMap::new(), done: BTreeMap::new() };
    for (off, len) in [(0u64, 4096u32), (8192, 512), (65536, 1 << 16)] {
        let (cookie, _) = c.submit(Command::Read { offset: off, length: len }).expect("valid read");
        chk.lens.insert(cookie, len);
    }
    let (cookie, _) = c.submit(Command::Write { offset: 0, length: 512, fua: false }).expect("valid write");
    chk.lens.insert(cookie, 0);
    for piece in rest.chunks(cut) {
        if c.receive(piece, &mut chk).is_err() {
            break;
        }
    }
}
