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
fe_create linux-dd /dev/ram1
fe_verdict 120
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
