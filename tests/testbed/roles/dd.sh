# Role "dd": a Linux driver domain, the baseline the unikernel is compared with.
# xen-blkback over brd RAM disks; stands in for the hotplug script (`xl devd`) by writing
# physical-device for each new vbd, and removes the backend directory after detach
# (libxl waits for that, docs/testbed.md).
load_mod xen-blkback || echo "DD-ERROR xen-blkback"
load_mod brd rd_nr=${rd_nr:-4} rd_size=${rd_size_kib:-262144} || echo "DD-ERROR brd"
DOMID=$(xenstore-read domid)
BASE=/local/domain/$DOMID/backend/vbd
echo "DD-READY domid=$DOMID"
while :; do
    for fe in $(xenstore-list "$BASE" 2>/dev/null); do
        for dev in $(xenstore-list "$BASE/$fe" 2>/dev/null); do
            p=$BASE/$fe/$dev
            if ! xenstore-exists "$p/physical-device" 2>/dev/null; then
                params=$(xenstore-read "$p/params" 2>/dev/null) || continue
                blk=$(basename "$params")
                if [ -r "/sys/class/block/$blk/dev" ]; then
                    mm=$(cat "/sys/class/block/$blk/dev")
                    xenstore-write "$p/physical-device" "$(printf '%x:%x' "${mm%%:*}" "${mm##*:}")"
                    xenstore-write "$p/hotplug-status" connected
                    echo "DD-ATTACH $fe/$dev $params"
                else
                    xenstore-write "$p/hotplug-error" "no such device: $params"
                    xenstore-write "$p/hotplug-status" error
                fi
            fi
            if [ "$(xenstore-read "$p/online" 2>/dev/null)" = 0 ] &&
               [ "$(xenstore-read "$p/state" 2>/dev/null)" = 6 ]; then
                xenstore-rm "$p" && echo "DD-DETACH $fe/$dev"
            fi
        done
    done
    sleep 0.2
done
