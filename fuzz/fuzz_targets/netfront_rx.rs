//! A hostile netback against the driver domain's vif; the model and its checks are in
//! `backends/netfront/tests/fuzz_model/` (shared with the corpus replay).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../backends/netfront/tests/fuzz_model/mod.rs"]
mod fuzz_model;

fuzz_target!(|data: &[u8]| fuzz_model::netfront_rx(data));
