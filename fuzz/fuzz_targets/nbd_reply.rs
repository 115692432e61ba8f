//! Arbitrary NBD server bytes into the client's handshake and reply parser; the model and
//! its checks are in `backends/nbd/tests/fuzz_model/` (shared with the corpus replay).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../backends/nbd/tests/fuzz_model/mod.rs"]
mod fuzz_model;

fuzz_target!(|data: &[u8]| fuzz_model::nbd_reply(data));
