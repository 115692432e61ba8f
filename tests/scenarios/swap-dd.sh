# Scenarios swap-dd (patched hypervisor) and swap-dd-stock (the packaged one): the
# GNTTABOP_swap_frame flow (docs/grant-swap.md). The unikernel serves disks with
# target=ram:<size>:swap; a Linux PVH domU's disk is served by frame exchange where the
# hypervisor has the op, dom0's (PV: Xen refuses it) falls back to copying, and on the
# stock hypervisor the probe fails and everything is copied. Data, ext4 and the domU's own
# memory are checked from the frontends' side, the path taken from the backend's counters.
UK=uk-dd
read -r HV SUFFIX < /etc/testbed-hypervisor

step "the hypervisor is the $HV one"
banner=$(xl dmesg | grep -m1 "Xen version")
extra=$(xl info | awk -F': ' '/^xen_extra/ { print $2 }')
info "banner: $banner; xen_extra: $extra"
if [ "$HV" = patched ]; then
    case "$extra" in *"$SUFFIX") ;; *) fail "xen_extra '$extra' is not the patched build ($SUFFIX)";; esac
    echo "$banner" | grep -q -- "$SUFFIX" || fail "the boot banner does not name the patched build"
else
    case "$extra" in *+swap*) fail "the stock run booted a patched hypervisor ($extra)";; esac
fi

step "the unikernel's self tests, with the exchange refusals"
STLOG=/var/log/xen/console/guest-uk-selftest.log
follow_console uk-selftest
xl create /etc/xen/testbed/uk-selftest.cfg || fail "xl create uk-selftest"
wait_for 120 grep -q "Test result:" "$STLOG" || fail "the self test printed no result"
sleep 0.5
grep -q "Test result: SUCCESS" "$STLOG" || fail "self test: $(grep 'Test result:' "$STLOG" | tail -n 1)"
grep -q "selftest: PASS frame exchange refuses" "$STLOG" || fail "the exchange check did not pass"
if [ "$HV" = patched ]; then
    grep -q "swap_frame not available" "$STLOG" && fail "the self test found no op on the patched hypervisor"
else
    grep -q "swap_frame not available" "$STLOG" || fail "the self test did not see the op missing"
fi
wait_for 20 sh -c '! xl list uk-selftest >/dev/null 2>&1' || fail "uk-selftest still running"

step "create the unikernel driver domain"
uk_create $UK uk-dd CMDLINE="path=map persistent=1 indirect=256"
grep "GNTTABOP_swap_frame" "$LOG" | head -n 1 | sed 's/^/INFO console: /'
if [ "$HV" = patched ]; then
    grep -q "GNTTABOP_swap_frame: available" "$LOG" || fail "the unikernel did not find the op on the patched hypervisor"
else
    grep -q "GNTTABOP_swap_frame: not available" "$LOG" || fail "the unikernel did not report the op missing on stock Xen"
fi

step "dom0 (PV) on a swap disk: served by copying"
load_mod xen-blkfront max_indirect_segments=256 || fail "xen-blkfront"
xl block-attach 0 "format=raw, vdev=xvdb, access=rw, backend=$UK, target=ram:64M:swap" || fail "xl block-attach"
wait_for 30 xs_is /local/domain/0/device/vbd/51728/state 4 || fail "dom0 frontend never Connected"
wait_for 10 test -b /dev/xvdb || fail "/dev/xvdb did not appear"
adv=$(xenstore-read "$(be 0 51728)/feature-grant-swap" 2>/dev/null || echo absent)
info "backend feature-grant-swap: $adv"
if [ "$HV" = patched ]; then [ "$adv" = 3 ] || fail "feature-grant-swap not advertised"; else [ "$adv" = absent ] || fail "feature-grant-swap advertised without the op"; fi
blkload --verify --dev /dev/xvdb --span-mib 64 --ops 80 --seed 21 || fail "dom0's data on the swap disk"
stats_settle
m0=$(stat 0 51728 swap_mode) s0=$(stat 0 51728 swapped) f0=$(stat 0 51728 swap_fallbacks) c0=$(stat 0 51728 copy_ops)
info "dom0 disk: swap_mode=$m0 swapped=$s0 swap_fallbacks=$f0 swap_calls=$(stat 0 51728 swap_calls) copy_ops=$c0"
[ "$s0" = 0 ] || fail "segments of PV dom0 were exchanged"
[ "$c0" -gt 0 ] || fail "dom0's disk was not served by copying"
if [ "$HV" = patched ]; then
    [ "$m0" = 4 ] || fail "dom0's connection: swap_mode $m0, expected 4 (refused: bad_domain)"
    [ "$f0" -ge 1 ] || fail "no refused exchange counted for dom0"
else
    [ "$m0" = 2 ] || fail "dom0's connection: swap_mode $m0, expected 2 (no hypervisor op)"
fi

step "a Linux PVH domU on a swap disk: 512 B to 4 MiB, ext4 + fsck, its own memory intact"
fe_create $UK ram:64M:swap swapfe
fe_verdict 300
stats_settle
m1=$(stat "$FE" 51712 swap_mode) s1=$(stat "$FE" 51712 swapped) f1=$(stat "$FE" 51712 swap_fallbacks)
z1=$(stat "$FE" 51712 swap_zeroed) k1=$(stat "$FE" 51712 swap_calls) d1=$(stat "$FE" 51712 swap_direct)
info "domU disk: swap_mode=$m1 swapped=$s1 swap_direct=$d1 swap_fallbacks=$f1 swap_zeroed=$z1 swap_calls=$k1 copy_ops=$(stat "$FE" 51712 copy_ops) rd_req=$(stat "$FE" 51712 rd_req) wr_req=$(stat "$FE" 51712 wr_req) persistent=$(xenstore-read /local/domain/$FE/device/vbd/51712/feature-persistent)"
metric swap.domu_swapped "$s1"
metric swap.domu_fallbacks "$f1"
if [ "$HV" = patched ]; then
    [ "$m1" = 1 ] || fail "the domU's connection: swap_mode $m1, expected 1 (exchanging)"
    [ "$s1" -gt 1000 ] || fail "only $s1 segments exchanged for the domU"
    [ "$d1" -gt 0 ] || fail "no whole-page write went straight into the disk's frames"
else
    [ "$m1" = 2 ] || fail "the domU's connection: swap_mode $m1, expected 2 (no hypervisor op)"
    [ "$s1" = 0 ] || fail "segments exchanged on the stock hypervisor"
fi

step "dom0's disk still right while the domU's is served"
blkload --verify --dev /dev/xvdb --span-mib 32 --ops 30 --seed 22 || fail "dom0's data after the domU's run"

step "destroy the domU; nothing left mapped; the driver domain alive"
xl destroy fe-linux || fail "xl destroy fe-linux"
wait_for 30 xs_gone "$(be "$FE" 51712)" || fail "the dead domU's backend directory was not removed"
xl block-detach 0 xvdb || fail "xl block-detach xvdb"
wait_for 15 xs_gone "$(be 0 51728)" || fail "dom0's backend directory stayed"
stats_settle
info "mapped=$(global mapped) hc_gnttab=$(global hc_gnttab)"
[ "$(global mapped)" = 0 ] || fail "$(global mapped) grants still mapped"
grep -q -E "PANIC|CPU EXCEPTION" "$LOG" && fail "the driver domain crashed"
xl list $UK >/dev/null 2>&1 || fail "the driver domain is gone"
if [ "$HV" = patched ]; then
    xl dmesg | grep -i -E "swap|grant" | tail -n 5 | sed 's/^/INFO xen: /'
fi
xl destroy $UK || fail "xl destroy $UK"
pass
