# Scenario unikernel-dd: the Rust unikernel is the driver domain. Unmodified Linux
# blkfront in dom0 and in a PVH domU use disks it serves; every claim is checked from the
# frontends' side (data, filesystem) and from the backend's statistics in xenstore.
UK=uk-dd

# attach0 VDEV DEVID ACCESS TARGET: attach to dom0 and wait until Linux really has it.
attach0() {
    xl block-attach 0 "format=raw, vdev=$1, access=$3, backend=$UK, target=$4" || fail "xl block-attach $1"
    wait_for 30 xs_is "/local/domain/0/device/vbd/$2/state" 4 ||
        fail "$1: dom0 frontend state $(xenstore-read /local/domain/0/device/vbd/$2/state) != 4 (backend: $(xenstore-read "$(be 0 "$2")/state"))"
    wait_for 10 test -b "/dev/$1" || fail "/dev/$1 did not appear"
}
detach0() {
    xl block-detach 0 "$1" || fail "xl block-detach $1"
    wait_for 15 xs_gone "$(be 0 "$2")" || fail "$1: backend directory still there after detach"
}

step "create the unikernel driver domain"
# A 4 MiB image with known contents, given to the driver domain as its boot module.
dd if=/dev/urandom of=/tmp/module.img bs=1048576 count=4 2>/dev/null
uk_create $UK uk-dd CMDLINE="path=map persistent=1 indirect=256" '+ramdisk = "/tmp/module.img"'
metric uk.create_to_serving_s "$(awk -v ms="$CREATE_MS" 'BEGIN { printf "%.2f", ms / 1000 }')"
info "$UK is domain $DD, $(xl list $UK | awk 'NR == 2 { print $3 }') MiB"

step "attach a RAM disk to dom0"
# Linux uses indirect descriptors only if both sides allow more than 11 segments.
load_mod xen-blkfront max_indirect_segments=256 || fail "xen-blkfront"
attach0 xvdb 51728 rw ram:64M
for k in sectors info sector-size physical-sector-size feature-flush-cache feature-discard feature-persistent feature-max-indirect-segments; do
    info "backend $k=$(xenstore-read "$(be 0 51728)/$k")"
done
[ "$(xenstore-read "$(be 0 51728)/sectors")" = 131072 ] || fail "sectors != 131072 for 64 MiB"

step "verify data from 512 B to 4 MiB, sequential and random"
blkload --verify --dev /dev/xvdb --span-mib 64 --ops 150 --seed 7 || fail "data verification failed"

step "large requests went indirect"
stats_settle
ind=$(stat 0 51728 indirect_req)
info "indirect_req=$ind rd_req=$(stat 0 51728 rd_req) wr_req=$(stat 0 51728 wr_req) persistent_hits=$(stat 0 51728 persistent_hits)"
[ "$ind" -gt 0 ] || fail "no indirect request reached the backend"

step "ext4: mkfs, mount, copy files, unmount, fsck clean, contents intact"
load_mod crc32c_generic || fail "crc32c module"
load_mod ext4 || fail "ext4 module"
f0=$(stat 0 51728 f_req)
mkfs.ext4 -q -F /dev/xvdb >/dev/null 2>&1 || fail "mkfs.ext4"
mkdir -p /mnt/x
mount -t ext4 /dev/xvdb /mnt/x || fail "mount"
dd if=/dev/urandom of=/tmp/f1 bs=1048576 count=8 2>/dev/null
cp /tmp/f1 /bin/busybox /usr/lib/xen-4.17/bin/xl /mnt/x/ || fail "copy files"
mkdir -p /mnt/x/tree && cp -r /etc /mnt/x/tree/ || fail "copy a tree"
want=$(cd /mnt/x && md5sum f1 busybox xl | md5sum)
info "mounted: $(df -h /mnt/x | awk 'NR == 2 { print $1 " " $2 " size, " $3 " used, on " $6 }'); $(ls /mnt/x | tr '\n' ' ')"
sync
umount /mnt/x || fail "umount"
e2fsck -fn /dev/xvdb >/tmp/fsck.log 2>&1 || { cat /tmp/fsck.log; fail "fsck found problems"; }
mount -t ext4 -o ro /dev/xvdb /mnt/x || fail "mount again"
got=$(cd /mnt/x && md5sum f1 busybox xl | md5sum)
umount /mnt/x
[ "$want" = "$got" ] || fail "files changed across unmount"

step "sync and fsync reach the backend as flushes"
info "xvdb write cache: $(cat /sys/block/xvdb/queue/write_cache 2>&1); $(dmesg | grep -i -E 'blkfront.*xvdb|xvdb.*flush' | tail -n 2)"
stats_settle
f1=$(stat 0 51728 f_req)
info "f_req $f0 -> $f1"
[ "$f1" -gt "$f0" ] || fail "no flush reached the backend"
dd if=/dev/urandom of=/dev/xvdb bs=4096 count=1 seek=1000 conv=fsync 2>/dev/null || fail "write + fsync"
stats_settle
[ "$(stat 0 51728 f_req)" -gt "$f1" ] || fail "fsync did not reach the backend as a flush"

step "blkdiscard reaches the backend as discards"
d0=$(stat 0 51728 ds_req)
blkdiscard -o 0 -l 1048576 /dev/xvdb || fail "blkdiscard"
stats_settle
d1=$(stat 0 51728 ds_req)
info "ds_req $d0 -> $d1"
[ "$d1" -gt "$d0" ] || fail "no discard reached the backend"
z=$(dd if=/dev/xvdb bs=1048576 count=1 iflag=direct 2>/dev/null | md5sum)
[ "$z" = "$(dd if=/dev/zero bs=1048576 count=1 2>/dev/null | md5sum)" ] || fail "discarded range does not read back as zeroes"

step "a read-only disk refuses writes"
attach0 xvdc 51744 ro ram:16M
[ "$(xenstore-read "$(be 0 51744)/info")" = 4 ] || fail "info is not VDISK_READONLY"
[ "$(xenstore-read "$(be 0 51744)/feature-discard")" = 0 ] || fail "discard offered on a read-only disk"
before=$(dd if=/dev/xvdc bs=1048576 count=16 iflag=direct 2>/dev/null | md5sum) || fail "reading the read-only disk"
# Stock blkfront honours VDISK_READONLY and refuses locally (even after --setrw); the
# backend's own refusal of such writes is covered by the host tests (read_only_disk).
blockdev --setrw /dev/xvdc 2>/dev/null
if dd if=/dev/urandom of=/dev/xvdc bs=4096 count=4 oflag=direct 2>/dev/null; then
    fail "a write to the read-only disk succeeded"
fi
stats_settle
[ "$(stat 0 51744 wr_req)" = 0 ] || fail "a write reached the read-only disk's backend and was counted as served"
after=$(dd if=/dev/xvdc bs=1048576 count=16 iflag=direct 2>/dev/null | md5sum)
[ "$before" = "$after" ] || fail "the read-only disk changed"
info "read-only disk: rd_req=$(stat 0 51744 rd_req) wr_req=$(stat 0 51744 wr_req) errors=$(stat 0 51744 errors)"

step "detach and re-attach"
detach0 xvdc 51744
test -b /dev/xvdc && fail "/dev/xvdc still present"
attach0 xvdc 51744 rw ram:16M
blkload --verify --dev /dev/xvdc --span-mib 16 --ops 20 --seed 9 || fail "verification after re-attach"
detach0 xvdc 51744

step "an image given as ramdisk= is served in place (target=module)"
attach0 xvdf 51792 rw module
[ "$(xenstore-read "$(be 0 51792)/sectors")" = 8192 ] || fail "module disk: sectors != 8192"
[ "$(dd if=/dev/xvdf bs=1048576 count=4 iflag=direct 2>/dev/null | md5sum)" = "$(md5sum < /tmp/module.img)" ] ||
    fail "the module disk does not read back as the image"
dd if=/dev/urandom of=/tmp/patch bs=65536 count=1 2>/dev/null
dd if=/tmp/patch of=/dev/xvdf bs=65536 seek=10 oflag=direct 2>/dev/null || fail "write to the module disk"
detach0 xvdf 51792
attach0 xvdf 51792 rw module
[ "$(dd if=/dev/xvdf bs=65536 skip=10 count=1 iflag=direct 2>/dev/null | md5sum)" = "$(md5sum < /tmp/patch)" ] ||
    fail "a write to the module disk did not survive detach and re-attach"
detach0 xvdf 51792

step "a bad target= is refused with a message, not a hang"
( xl block-attach 0 "format=raw, vdev=xvde, access=rw, backend=$UK, target=bogus:1" >/tmp/bad-attach.log 2>&1; echo "rc=$?" >>/tmp/bad-attach.log ) &
wait_for 15 xenstore-exists "$(be 0 51776)/hotplug-error" || fail "no hotplug-error for a bad target"
info "hotplug-error: $(xenstore-read "$(be 0 51776)/hotplug-error")"
grep -q "target .bogus:1." "$LOG" || fail "the driver domain's console does not say why"
wait_for 40 grep -q "rc=" /tmp/bad-attach.log || fail "xl block-attach with a bad target hangs"
grep -q "rc=0" /tmp/bad-attach.log && fail "xl block-attach with a bad target succeeded"
info "xl said: $(tr '\n' ' ' </tmp/bad-attach.log)"
# libxl leaves the refused device for the admin to remove: detaching it must work.
xl block-detach 0 xvde || fail "xl block-detach of the refused device"
wait_for 15 xs_gone "$(be 0 51776)" || fail "the refused device's directory stayed: $(xenstore-ls "$(be 0 51776)" 2>&1 | tr '\n' ' ')"
test -b /dev/xvde && fail "/dev/xvde appeared for a refused target"

step "a Linux domU uses a disk of the unikernel"
fe_create $UK ram:64M "fe fe_loop=1"
fe_verdict 150

step "dom0 and the domU at once"
blkload --verify --dev /dev/xvdb --span-mib 32 --ops 60 --seed 13 || fail "dom0's disk while the domU writes to its own"

step "destroy the domU in the middle of its I/O"
wait_for 30 grep -q FE-LOOP "$FELOG" || fail "domU I/O loop did not start"
sleep 2
w0=$(stat "$FE" 51712 wr_req)
stats_settle
[ "$(stat "$FE" 51712 wr_req)" -gt "$w0" ] || fail "the domU was not doing I/O"
info "mapped grants with the domU busy: $(global mapped)"
xl destroy fe-linux || fail "xl destroy fe-linux"
wait_for 30 xs_gone "$(be "$FE" 51712)" || fail "the dead domU's backend directory was not removed"
blkload --verify --dev /dev/xvdb --span-mib 32 --ops 30 --seed 11 || fail "dom0's disk after the domU died"

step "every grant mapping released"
detach0 xvdb 51728
stats_settle
info "mapped=$(global mapped) map_calls=$(global map_calls) unmap_calls=$(global unmap_calls) safety_net_unmaps=$(global safety_net_unmaps)"
[ "$(global mapped)" = 0 ] || fail "$(global mapped) grants still mapped with no frontend left"
[ "$(global safety_net_unmaps)" = 0 ] || fail "mappings were dropped without a batched unmap"
grep -q -E "PANIC|CPU EXCEPTION" "$LOG" && fail "the driver domain crashed"
xl list $UK >/dev/null 2>&1 || fail "the driver domain is gone"

step "shut down"
xl destroy $UK || fail "xl destroy $UK"
pass
