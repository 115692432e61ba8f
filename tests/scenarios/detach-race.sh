# Scenario detach-race: `xl block-detach` of a dom0 disk while a writer is running, then
# `xl block-attach` of the same vdev as soon as the backend directory is gone, six times;
# every new frontend must connect (as it does with a Linux driver domain).
#
# Why it could fail: Linux blkfront (5.19+) writes Closed with requests in flight and keeps
# handling responses; a request the backend drops unanswered holds its bio forever, and
# `del_gendisk` in `blkfront_remove` then blocks dom0's xenwatch thread, so the new device
# is never probed (Initialising for good). On a stuck round this script dumps the blocked
# tasks (sysrq w) to show exactly that.
UK=uk-dd
uk_create $UK
load_mod xen-blkfront || fail blkfront
BE=$(be 0 51728)
FE=/local/domain/0/device/vbd/51728
xl block-attach 0 "format=raw, vdev=xvdb, access=rw, backend=$UK, target=ram:64M" || fail attach
wait_for 30 xs_is $FE/state 4 || fail "first connect"
for i in 1 2 3 4 5 6; do
    step "round $i: detach while writing, re-attach at once"
    wait_for 10 test -b /dev/xvdb || fail "no xvdb"
    dd if=/dev/zero of=/dev/xvdb bs=1048576 count=64 oflag=direct 2>/dev/null &
    W=$!
    sleep 1
    t0=$(now_ms)
    xl block-detach 0 xvdb; rc=$?
    wait_for 30 xs_gone $BE || fail "backend dir stays"
    t1=$(now_ms)
    info "detach rc=$rc, backend directory gone after $((t1 - t0)) ms"
    xl block-attach 0 "format=raw, vdev=xvdb, access=rw, backend=$UK, target=ram:64M"; rc=$?
    if wait_for 20 xs_is $FE/state 4; then
        info "round $i: connected (attach rc=$rc)"
    else
        info "round $i: STUCK frontend state $(xenstore-read $FE/state), backend $(xenstore-read $BE/state), writer $(grep State /proc/$W/status 2>/dev/null)"
        ps -o pid,stat,comm 2>/dev/null | awk '$2 ~ /D/' | sed 's/^/INFO D-state: /'
        echo w > /proc/sysrq-trigger
        dmesg | tail -60 | sed 's/^/INFO dmesg: /'
        fail "round $i: the re-attached frontend never connected (blocked tasks above)"
    fi
    kill $W 2>/dev/null; wait $W 2>/dev/null
done
xl block-detach 0 xvdb || fail "final detach"
xl destroy $UK
pass
