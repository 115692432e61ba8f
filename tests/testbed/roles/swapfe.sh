# Role "swapfe": a Linux PVH domU whose xvda is served on the swap path (frame exchange
# where the hypervisor has it). Checks its data from 512 B to 4 MiB, ext4 with fsck, and that
# a buffer it keeps outside its I/O is untouched (an exchange must move only the frames of
# granted pages). Reports one FE-RESULT line, then waits to be destroyed (the scenario
# reads the backend's counters first).
load_mod xen-blkfront || { echo "FE-RESULT: FAIL xen-blkfront"; return; }
if ! wait_for 30 test -b /dev/xvda; then echo "FE-RESULT: FAIL no /dev/xvda"; return; fi
# 16 MiB kept in tmpfs (the guest's own RAM) for the whole run.
dd if=/dev/urandom of=/tmp/keep bs=1048576 count=16 2>/dev/null
keep=$(md5sum < /tmp/keep)
ok=1 why=""
for bs in 512 4096 65536 1048576 4194304; do
    verify_disk /dev/xvda 8 $bs || { ok=0; why="$why data(bs=$bs)"; }
done
load_mod crc32c_generic && load_mod ext4 || { ok=0; why="$why ext4-modules"; }
if [ $ok = 1 ]; then
    mkfs.ext4 -q -F /dev/xvda >/dev/null 2>&1 || { ok=0; why="$why mkfs"; }
    mkdir -p /mnt/x
    if mount -t ext4 /dev/xvda /mnt/x; then
        dd if=/dev/urandom of=/mnt/x/f1 bs=1048576 count=6 2>/dev/null
        cp /bin/busybox /mnt/x/ && cp -r /lib/modules /mnt/x/mods
        want=$(cd /mnt/x && md5sum f1 busybox | md5sum)
        sync
        umount /mnt/x || { ok=0; why="$why umount"; }
        e2fsck -fn /dev/xvda >/tmp/fsck.log 2>&1 || { ok=0; why="$why fsck"; cat /tmp/fsck.log; }
        mount -t ext4 -o ro /dev/xvda /mnt/x || { ok=0; why="$why remount"; }
        got=$(cd /mnt/x && md5sum f1 busybox | md5sum)
        umount /mnt/x
        [ "$want" = "$got" ] || { ok=0; why="$why files-changed"; }
    else
        ok=0 why="$why mount"
    fi
fi
[ "$(md5sum < /tmp/keep)" = "$keep" ] || { ok=0; why="$why KEPT-BUFFER-CORRUPTED"; }
if [ $ok = 1 ]; then echo "FE-RESULT: PASS"; else echo "FE-RESULT: FAIL$why"; fi
echo "FE-HOLD"
while :; do sleep 5; done
