//! A hostile NVMe controller writing arbitrary completions; the model and its checks are in
//! `backends/nvme/tests/fuzz_model/` (shared with the corpus replay).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../backends/nvme/tests/fuzz_model/mod.rs"]
mod fuzz_model;

fuzz_target!(|data: &[u8]| fuzz_model::nvme_completion(data));
