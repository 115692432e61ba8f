//! Replays the `netfront_rx` fuzz corpus (`fuzz/corpus/netfront_rx/`): every input the fuzzer kept
//! must keep passing the model's checks.
mod fuzz_model;

#[test]
fn corpus_replays_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/netfront_rx");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("the corpus directory exists") {
        let data = std::fs::read(e.expect("entry").path()).expect("readable input");
        fuzz_model::netfront_rx(&data);
        n += 1;
    }
    assert!(n >= 100, "only {n} corpus inputs");
}
