//! Replays the `nvme_completion` fuzz corpus (`fuzz/corpus/nvme_completion/`): every input the
//! fuzzer kept must keep passing the model's checks.
mod fuzz_model;

#[test]
fn corpus_replays_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/nvme_completion");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("the corpus directory exists") {
        let data = std::fs::read(e.expect("entry").path()).expect("readable input");
        fuzz_model::nvme_completion(&data);
        n += 1;
    }
    assert!(n >= 20, "only {n} corpus inputs");
}
