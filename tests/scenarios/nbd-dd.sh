# Scenario nbd-dd: the unikernel serves disks that live on NBD servers (nbdkit in dom0,
# reached over the unikernel's vif, dom0's netback and a bridge). Checks: both vif ends
# connected; the disk connects with the export's size; data written through the unikernel is
# in the server's own file; ext4 and flush; the driver domain destroyed and re-created with
# the data still there; nbdkit killed mid-I/O and restarted (nothing lost); the server away
# past the window (errors, not a hang; other disks served; healing); a Linux domU on its own
# NBD disk; a closed port and an unreachable server refused with their reason.
UK=uk-nbd
IMG=/tmp/disk0.img

step "dom0: netback, a bridge, nbdkit"
storage_bridge
dd if=/dev/zero of=$IMG bs=1048576 count=64 2>/dev/null || fail "disk image"
start_nbdkit() {
    nbdkit --exit-with-parent -f -i 192.0.2.1 -p 10809 --filter=log file file=$IMG logfile=/tmp/nbdkit.log >>/tmp/nbdkit.out 2>&1 &
    NBDKIT=$!
    wait_for 10 grep -q . /proc/$NBDKIT/status || fail "nbdkit did not start: $(cat /tmp/nbdkit.out)"
}
start_nbdkit

# create_uk [KEY=VALUE...]: start the driver domain from uk-nbd.cfg; return once its vif is
# connected and it has an address (static from ip=, or a DHCP lease).
create_uk() {
    n0=$(grep -c "network: address 192" "/var/log/xen/console/guest-$UK.log" 2>/dev/null || true)
    uk_create $UK uk-nbd "$@"
    wait_for 60 sh -c "[ \$(grep -c 'network: address 192' '$LOG') -gt ${n0:-0} ]" ||
        fail "the driver domain got no address: $(grep 'network:' "$LOG" | tail -2)"
    wait_for 30 xs_is "/local/domain/$DD/device/vif/0/state" 4 || fail "vif frontend state $(xenstore-read /local/domain/$DD/device/vif/0/state)"
    wait_for 30 xs_is "/local/domain/0/backend/vif/$DD/0/state" 4 || fail "vif backend state $(xenstore-read /local/domain/0/backend/vif/$DD/0/state)"
    info "vif: request-rx-copy=$(xenstore-read /local/domain/$DD/device/vif/0/request-rx-copy) feature-rx-notify=$(xenstore-read /local/domain/$DD/device/vif/0/feature-rx-notify) bridge ports: $(ls /sys/class/net/xenbr0/brif/ | tr '\n' ' ')"
}
attach_nbd() {
    xl block-attach 0 "format=raw, vdev=xvdb, access=rw, backend=$UK, target=nbd://192.0.2.1/disk0" || fail "xl block-attach"
    wait_for 60 xs_is /local/domain/0/device/vbd/51728/state 4 ||
        fail "dom0 frontend state $(xenstore-read /local/domain/0/device/vbd/51728/state) (backend $(xenstore-read /local/domain/$DD/backend/vbd/0/51728/state), error $(xenstore-read /local/domain/$DD/backend/vbd/0/51728/hotplug-error 2>/dev/null))"
    wait_for 10 test -b /dev/xvdb || fail "/dev/xvdb did not appear"
}

step "create the driver domain with a vif"
load_mod xen-blkfront max_indirect_segments=256 || fail "xen-blkfront"
create_uk

step "attach an NBD-backed disk to dom0"
attach_nbd
[ "$(xenstore-read /local/domain/$DD/backend/vbd/0/51728/sectors)" = 131072 ] || fail "sectors != 131072 for the 64 MiB export"

step "verify data from 512 B to 4 MiB, sequential and random"
blkload --verify --dev /dev/xvdb --span-mib 16 --ops 60 --seed 11 || fail "data verification failed"

step "the data is in the server's own file"
a=$(dd if=/dev/xvdb bs=1048576 count=16 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
sync
b=$(dd if=$IMG bs=1048576 count=16 2>/dev/null | md5sum | cut -d' ' -f1)
info "device $a, server file $b"
[ "$a" = "$b" ] || fail "the server's file differs from what the guest reads"

step "ext4 on the NBD disk, flush reaches the server"
ext4_fill /dev/xvdb
grep -q "Flush" /tmp/nbdkit.log || fail "no FLUSH reached the server (log: $(tail -3 /tmp/nbdkit.log))"

step "destroy and re-create the driver domain (addressed by DHCP now): the data is still there"
xl block-detach 0 xvdb || fail "block-detach"
xl destroy $UK || fail "destroy"
# busybox udhcpd on the bridge hands out 192.0.2.100-110; the re-created domain has no ip=.
cat > /tmp/udhcpd.conf <<EOF
start 192.0.2.100
end 192.0.2.110
interface xenbr0
lease_file /tmp/udhcpd.leases
option subnet 255.255.255.0
option router 192.0.2.1
option lease 600
EOF
touch /tmp/udhcpd.leases
udhcpd -f /tmp/udhcpd.conf >/tmp/udhcpd.out 2>&1 &
sleep 2
create_uk CMDLINE="nbd-timeout=8"
grep -q "network: vif .*DHCPv4" "$LOG" || fail "the re-created domain did not ask DHCP"
lease=$(grep "network: address" "$LOG" | tail -1)
info "lease: ${lease#*network: address }"
case "$lease" in *"192.0.2.1"[01][0-9]"/24 via 192.0.2.1"*) ;; *) fail "not the server's lease: $lease" ;; esac
attach_nbd
ext4_intact /dev/xvdb "after the driver domain was re-created"

step "nbdkit killed mid-I/O and restarted: I/O resumes, nothing lost"
blkload --verify --dev /dev/xvdb --span-mib 16 --ops 150 --seed 12 >/tmp/v1.out 2>&1 &
V=$!
sleep 3
kill -9 $NBDKIT; wait $NBDKIT 2>/dev/null
info "nbdkit killed while the verify ran"
sleep 3
start_nbdkit
wait $V || fail "verification across the server restart failed: $(tail -2 /tmp/v1.out)"
sleep 1.5
info "nbd_reconnects=$(stat 0 51728 nbd_reconnects) nbd_replayed=$(stat 0 51728 nbd_replayed) errors=$(stat 0 51728 errors)"
[ "$(stat 0 51728 nbd_reconnects)" -ge 1 ] || fail "no reconnection counted"

step "the server stays away past the window: I/O errors, the driver domain serves on"
kill -9 $NBDKIT; wait $NBDKIT 2>/dev/null
t0=$(now_ms)
if dd if=/dev/xvdb of=/dev/null bs=4096 count=1 skip=3000 iflag=direct 2>/dev/null; then
    fail "a read succeeded with the server gone"
fi
el=$(( $(now_ms) - t0 ))
info "the read failed after $el ms (window 8 s)"
[ "$el" -lt 30000 ] || fail "the read hung for $el ms"
xl list $UK >/dev/null || fail "the driver domain died"
xl block-attach 0 "format=raw, vdev=xvde, access=rw, backend=$UK, target=ram:8M" || fail "attach a RAM disk"
wait_for 30 xs_is /local/domain/0/device/vbd/51776/state 4 || fail "RAM disk not Connected while the server is away"
wait_for 10 test -b /dev/xvde || fail "/dev/xvde missing"
verify_disk /dev/xvde 4 65536 || fail "the RAM disk does not verify while the NBD server is away"
xl block-detach 0 xvde || fail "detach the RAM disk"
step "the server returns: the disk heals without a re-attach"
start_nbdkit
wait_for 30 dd if=/dev/xvdb of=/dev/null bs=4096 count=1 iflag=direct || fail "the disk did not heal"
info "nbd_timed_out=$(stat 0 51728 nbd_timed_out) nbd_reconnects=$(stat 0 51728 nbd_reconnects)"

step "a Linux domU uses its own NBD-backed disk (a second nbdkit)"
dd if=/dev/zero of=/tmp/disk1.img bs=1048576 count=32 2>/dev/null || fail "second image"
nbdkit --exit-with-parent -f -i 192.0.2.1 -p 10811 file file=/tmp/disk1.img >/tmp/nbdkit1.out 2>&1 &
wait_for 10 grep -q . /proc/$!/status || fail "second nbdkit did not start"
fe_create $UK nbd://192.0.2.1:10811/disk1
fe_verdict 200
blkload --verify --dev /dev/xvdb --span-mib 8 --ops 20 --seed 14 || fail "dom0's NBD disk while the domU used its own"
# The domU powers itself off after its verdict; destroy it if it has not yet.
xl destroy fe-linux >/dev/null 2>&1
wait_for 30 xs_gone "$(be "$FE" 51712)" || fail "the domU's backend directory was not removed"

step "a closed port and an unreachable server end the attach with their reason"
# no_server ADDR VDEV DEVID: attach, then expect the backend Closed with a hotplug-error.
no_server() {
    xl block-attach 0 "format=raw, vdev=$2, access=rw, backend=$UK, target=nbd://$1/disk0" || fail "block-attach $1"
    wait_for 60 xs_is "/local/domain/$DD/backend/vbd/0/$3/state" 6 || fail "$1: backend state $(xenstore-read /local/domain/$DD/backend/vbd/0/$3/state), not Closed"
    err=$(xenstore-read "/local/domain/$DD/backend/vbd/0/$3/hotplug-error")
    info "$1: hotplug-error: $err"
    case "$err" in *"NBD server is unreachable"*) ;; *) fail "$1: hotplug-error says '$err'" ;; esac
    grep -q "ERROR .*$3.*unreachable" "$LOG" || fail "$1: no console line"
    xl block-detach 0 "$2" >/dev/null 2>&1
    wait_for 15 xs_gone "/local/domain/$DD/backend/vbd/0/$3" || fail "$1: backend directory left after detach"
}
no_server 192.0.2.1:10810 xvdc 51744
no_server 192.0.2.99 xvdd 51760

step "shut down"
xl block-detach 0 xvdb || fail "final detach"
xl destroy $UK
pass
