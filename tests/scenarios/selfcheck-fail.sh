# Scenario selfcheck-fail: the harness's negative self-check. It must end in FAILURE, and
# `cargo xtask test` checks that it does. Two verifiers the real scenarios rely on are shown
# to catch a corrupted disk, on a dom0 RAM disk:
# 1. `blkload --verify` (unikernel-dd's verifier) with a write lost behind its model must
#    exit 1 and name the mismatch; if it passes, the scenario is an ERROR, not the expected
#    FAILURE, so `cargo xtask test` fails.
# 2. the checksum check (`verify_disk`) with a block zeroed between write and read must
#    report a mismatch: that is the expected FAILURE.
load_mod brd rd_nr=1 rd_size=65536 || error "brd"
step "blkload --verify catches a lost write"
if blkload --verify --dev /dev/ram0 --span-mib 16 --seed 3 --ops 50 --inject-loss 12288 >/tmp/v.out 2>&1; then
    cat /tmp/v.out
    error "blkload --verify passed a disk that lost a write"
fi
cat /tmp/v.out
grep -q "MISMATCH reading .* from 12288 to 16383" /tmp/v.out || error "blkload --verify failed without naming the lost block"
step "verify a deliberately corrupted disk"
verify_disk /dev/ram0 16 1048576 1 || fail "data mismatch (expected: the block was corrupted)"
pass
