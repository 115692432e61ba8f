# Scenario linux-dd: a Linux PVH driver domain serves a disk to dom0 and one to a Linux
# PVH domU; data verified on both; detach works (the backend directory disappears).
step "create Linux driver domain"
follow_console linux-dd
xl create /etc/xen/testbed/linux-dd.cfg || fail "xl create linux-dd"
wait_for 90 grep -q DD-READY /var/log/xen/console/guest-linux-dd.log || fail "driver domain never said DD-READY"
DD=$(xl domid linux-dd)
info "linux-dd is domain $DD"

step "attach a disk to dom0"
load_mod xen-blkfront || fail "xen-blkfront"
xl block-attach 0 'format=raw, vdev=xvdb, access=rw, backend=linux-dd, target=/dev/ram0' ||
    fail "xl block-attach"
# block-attach returning 0 proves nothing: the frontend must reach Connected.
wait_for 30 xs_is /local/domain/0/device/vbd/51728/state 4 ||
    fail "dom0 frontend state $(xenstore-read /local/domain/0/device/vbd/51728/state) != 4"
wait_for 10 test -b /dev/xvdb || fail "/dev/xvdb did not appear"
info "backend state $(xenstore-read /local/domain/$DD/backend/vbd/0/51728/state)"

step "verify data from dom0"
for bs in 4096 65536 1048576; do
    verify_disk /dev/xvdb 16 $bs || fail "data mismatch from dom0 (bs=$bs)"
done

step "a Linux domU uses a disk of the driver domain"
follow_console fe-linux
sed -e 's/@BACKEND@/linux-dd/' -e 's|@TARGET@|/dev/ram1|' /etc/xen/testbed/fe-linux.cfg > /tmp/fe.cfg
xl create /tmp/fe.cfg || fail "xl create fe-linux"
FE=$(xl domid fe-linux)
wait_for 60 xs_is /local/domain/$FE/device/vbd/51712/state 4 ||
    fail "domU frontend never reached Connected"
wait_for 120 grep -q FE-RESULT /var/log/xen/console/guest-fe-linux.log || fail "domU gave no FE-RESULT"
grep -q "FE-RESULT: PASS" /var/log/xen/console/guest-fe-linux.log || fail "domU: $(grep FE-RESULT /var/log/xen/console/guest-fe-linux.log)"
info "domU $FE verified its disk"

step "detach the dom0 disk"
xl block-detach 0 xvdb || fail "xl block-detach"
wait_for 15 xs_gone /local/domain/$DD/backend/vbd/0/51728 ||
    fail "backend directory /local/domain/$DD/backend/vbd/0/51728 still exists"
test -b /dev/xvdb && fail "/dev/xvdb still present after detach"

step "shut down"
xl destroy fe-linux 2>/dev/null
xl destroy linux-dd || fail "xl destroy linux-dd"
pass
