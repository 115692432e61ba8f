# Scenario selfcheck-fail: the harness's negative self-check. The same verification the
# real scenarios use, on a dom0 RAM disk, with a block zeroed between write and read:
# it must end in FAILURE, and `cargo xtask test` checks that it does.
step "verify a deliberately corrupted disk"
load_mod brd rd_nr=1 rd_size=65536 || error "brd"
verify_disk /dev/ram0 16 1048576 1 || fail "data mismatch (expected: the block was corrupted)"
pass
