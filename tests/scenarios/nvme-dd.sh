# Scenario nvme-dd: the unikernel as an HVM driver domain owns the test bed's NVMe
# controller (passed through, the emulated VT-d confining it) and serves its namespaces:
# dom0's disk on namespace 1 (512-byte blocks) and a Linux PVH domU's on namespace 2 (4 KiB
# blocks). Checks: the driver domain reads what dom0 wrote on the device before handing it
# over; data 512 B to 4 MiB; ext4 + fsck; flushes reach the device; the controller DMAs
# straight into the frontends' granted pages (0 bytes copied by the CPU); the IOMMU stops a
# DMA to an address nothing maps and the domain serves on; the driver domain destroyed and
# re-created with the files intact; nothing left mapped after detach. After the run the host
# checks both backing files (xtask/src/scenarios.rs, check_nvme_dd_files).
BDF=0000:00:04.0
UK=uk-nvme
LOG=/var/log/xen/console/guest-$UK.log

# create_dd WORDS: the driver domain from uk-hvm.cfg with the controller, its command-line
# words at data/cmdline (an HVM domain in hvmloader's place has no cmdline=): created
# paused, the words written, unpaused; returns once it serves (sets DD, CREATE_MS).
create_dd() {
    n0=$(grep -c "blkback: serving" "$LOG" 2>/dev/null || true)
    render uk-hvm /tmp/$UK.cfg NAME=$UK "+pci = [ '$BDF' ]" || fail "render uk-hvm"
    _t0=$(now_ms)
    xl create -p /tmp/$UK.cfg || fail "xl create $UK: $(tail -5 /var/log/xen/qemu-dm-$UK.log 2>/dev/null | tr '\n' ' ')"
    DD=$(xl domid $UK)
    [ -n "$1" ] && { xenstore-write "/local/domain/$DD/data/cmdline" "$1" || fail "write data/cmdline"; }
    xl unpause $UK || fail "xl unpause $UK"
    wait_for 120 sh -c "[ \$(grep -c 'blkback: serving' '$LOG') -gt ${n0:-0} ]" ||
        fail "the HVM driver domain never served: $(tail -3 "$LOG" | tr '\n' ' ')"
    CREATE_MS=$(($(now_ms) - _t0))
}
# attach_dom0: namespace 1 as dom0's xvdb.
attach_dom0() {
    xl block-attach 0 "format=raw, vdev=xvdb, access=rw, backend=$UK, target=nvme:0" || fail "xl block-attach"
    wait_for 60 xs_is /local/domain/0/device/vbd/51728/state 4 ||
        fail "dom0's disk not Connected: backend $(xenstore-read "$(be 0 51728)/state"), error $(xenstore-read "$(be 0 51728)/hotplug-error" 2>/dev/null)"
    wait_for 10 test -b /dev/xvdb || fail "/dev/xvdb did not appear"
}
detach_dom0() {
    xl block-detach 0 xvdb || fail "block-detach"
    wait_for 15 xs_gone "$(be 0 51728)" || fail "dom0's backend directory stayed after detach"
}

step "dom0 writes on namespace 1 through the IOMMU, then hands the controller to xen-pciback"
xl dmesg | grep -q "I/O virtualisation enabled" || fail "Xen did not enable the IOMMU"
load_mod nvme || fail "nvme module"
wait_for 30 test -b /dev/nvme0n2 || fail "/dev/nvme0n1 and n2 did not appear: $(ls /dev/nvme* 2>/dev/null | tr '\n' ' ')"
[ "$(cat /sys/block/nvme0n2/queue/logical_block_size)" = 4096 ] || fail "namespace 2 is not 4Kn"
yes "nvme-pt: written by dom0 through the emulated VT-d" | head -c 4194304 > /tmp/pattern
dd if=/tmp/pattern of=/dev/nvme0n1 bs=1048576 count=4 oflag=direct 2>/dev/null || fail "write to the controller"
want0=$(md5sum < /tmp/pattern | cut -d' ' -f1)
sync
echo "$BDF" > /sys/bus/pci/drivers/nvme/unbind || fail "unbind from nvme"
load_mod xen-pciback || fail "xen-pciback"
xl pci-assignable-add "$BDF" || fail "xl pci-assignable-add $BDF"

step "the HVM driver domain owns the controller (and proves the IOMMU confines it)"
follow_console $UK
create_dd "iommu-probe"
metric uk.nvme_create_to_serving_s "$(awk -v a="$CREATE_MS" 'BEGIN { printf "%.1f", a / 1000 }')"
xl list -l $UK | grep -q '"type": "hvm"' || fail "$UK is not an HVM domain"
grep -q "nvme0: .* BAR0 .* bus mastering on" "$LOG" || fail "no controller found: $(grep -m2 nvme "$LOG" | tr '\n' ' ')"
grep -q "nvme0: ready" "$LOG" || fail "the controller did not come up: $(grep nvme0 "$LOG" | tail -2 | tr '\n' ' ')"
info "$(grep -m1 'nvme0: ready' "$LOG" | sed 's/.*nvme0/nvme0/')"
grep -q "nvme0: namespace 2: 8192 blocks of 4096 bytes" "$LOG" || fail "namespace 2: $(grep 'namespace 2' "$LOG")"
# libxl passes an HVM guest SeaBIOS as a module for hvmloader: not a disk of ours.
grep -q "module 0: .*'firmware' (hvmloader's firmware: not served)" "$LOG" || fail "hvmloader's module: $(grep 'module' "$LOG" | head -2 | tr '\n' ' ')"

step "the IOMMU stopped a DMA to an address nothing maps, and Xen reported it"
probe=$(grep "IOMMU probe" "$LOG" | tail -1)
info "probe: ${probe#*IOMMU probe: }"
addr=$(echo "$probe" | sed -n "s/.*DMA'd to 0x\([0-9a-f]*\),.*/\1/p")
[ -n "$addr" ] || fail "IOMMU probe: ${probe:-no line}"
# The proof is Xen's: the emulated controller is not told of the refusal (docs/testbed.md).
wait_for 10 sh -c "xl dmesg | grep -q 'Request device \[0000:00:04.0\] fault addr $addr'" ||
    fail "Xen logged no IOMMU fault at $addr for the device: $(xl dmesg | grep -i -m3 'DMAR' | tr '\n' ' ')"
info "xen: $(xl dmesg | grep -m1 "fault addr $addr" | sed 's/.*\[VT-D\]//') / $(xl dmesg | grep -m1 -A1 "fault addr $addr" | tail -1 | sed 's/.*\[VT-D\]//')"
xl list $UK >/dev/null || fail "the driver domain died after the probe"

step "dom0's disk on namespace 1: the device's bytes, 512 B to 4 MiB, ext4 + fsck, flushes"
load_mod xen-blkfront max_indirect_segments=256 || fail "xen-blkfront"
attach_dom0
[ "$(xenstore-read "$(be 0 51728)/sectors")" = 131072 ] || fail "sectors $(xenstore-read "$(be 0 51728)/sectors"), not 131072"
[ "$(xenstore-read "$(be 0 51728)/feature-persistent")" = 0 ] || fail "persistent grants offered for an NVMe disk"
got0=$(dd if=/dev/xvdb bs=1048576 count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$got0" = "$want0" ] || fail "the driver domain reads $got0 where dom0 wrote $want0 on the device"
blkload --verify --dev /dev/xvdb --span-mib 16 --ops 60 --seed 31 || fail "data verification failed"
ext4_fill /dev/xvdb
stats_settle
[ "$(stat 0 51728 f_req)" -ge 1 ] || fail "no flush reached the backend"
# Linux blkfront drops flushes for the rest of the connection after one fails.
! dmesg | grep -q "xvdb: .*flush op failed" || fail "blkfront: $(dmesg | grep -m1 'flush op failed')"

step "zero copy: the controller moved every byte, the CPU none"
stats_settle
rd=$(stat 0 51728 rd_sect) wr=$(stat 0 51728 wr_sect) cpu=$(stat 0 51728 cpu_bytes)
dma=$(stat 0 51728 nvme_dma_bytes) cmds=$(stat 0 51728 nvme_commands) errs=$(stat 0 51728 errors)
info "dom0's disk: rd_sect=$rd wr_sect=$wr nvme_commands=$cmds nvme_dma_bytes=$dma cpu_bytes=$cpu errors=$errs map_ops=$(stat 0 51728 map_ops) copy_calls=$(stat 0 51728 copy_calls)"
metric nvme.dom0_dma_bytes "$dma"
metric nvme.dom0_cpu_bytes "$cpu"
[ "$cpu" = 0 ] || fail "the CPU copied $cpu bytes"
[ "$dma" -ge $(((rd + wr) * 512)) ] || fail "DMA'd $dma bytes for $(((rd + wr) * 512)) moved"
[ "$(stat 0 51728 copy_calls)" = 0 ] || fail "grant copies on the NVMe path"
[ "$errs" = 0 ] || fail "$errs errors on dom0's disk: $(for k in unsupported segments range read_only grant io nomem; do printf '%s=%s ' "$k" "$(stat 0 51728 err_$k)"; done) nvme_errors=$(stat 0 51728 nvme_errors) nvme_timeouts=$(stat 0 51728 nvme_timeouts) nvme_resets=$(stat 0 51728 nvme_resets) ds_req=$(stat 0 51728 ds_req) f_req=$(stat 0 51728 f_req); dom0: $(dmesg | grep -i -E 'error|xvdb' | tail -4 | tr '\n' ' ')"

step "a Linux PVH domU on namespace 2 (4 KiB blocks, 512-byte blkif sectors)"
fe_create $UK nvme:0/2
[ "$(xenstore-read "$(be "$FE" 51712)/sector-size")" = 4096 ] || fail "sector-size $(xenstore-read "$(be "$FE" 51712)/sector-size")"
[ "$(xenstore-read "$(be "$FE" 51712)/sectors")" = 65536 ] || fail "sectors $(xenstore-read "$(be "$FE" 51712)/sectors"), not 65536"
dma0=$(stat 0 51728 nvme_dma_bytes)
# The domU's counters go with its device when it powers off after its verdict: sample them
# while it runs.
fe_wr=0 fe_cpu=-1
for _ in $(seq 200); do
    grep -q FE-RESULT "$FELOG" && break
    w=$(stat "$FE" 51712 wr_sect)
    [ "$w" -gt 0 ] && { fe_wr=$w; fe_cpu=$(stat "$FE" 51712 cpu_bytes); }
    sleep 1
done
fe_verdict 10
stats_settle
dma=$(($(stat 0 51728 nvme_dma_bytes) - dma0))
info "domU's disk (last sample): wr_sect=$fe_wr cpu_bytes=$fe_cpu; the controller DMA'd $dma bytes meanwhile"
[ "$fe_wr" -gt 0 ] || fail "no sample of the domU's counters"
[ "$fe_cpu" = 0 ] || fail "the CPU copied $fe_cpu bytes of the domU's data"
# Three passes of 8 MiB written and read back: 48 MiB through the controller.
[ "$dma" -ge $((48 << 20)) ] || fail "the controller moved $dma bytes for the domU's 48 MiB"
# What the domU's last pass left on the namespace (the host compares the backing file).
ns2=$(grep "verify /dev/xvda 8MiB bs=1048576" "$FELOG" | tail -1 | sed 's/.*got=//')
metric nvme.ns2_md5 "$ns2"
xl destroy fe-linux >/dev/null 2>&1
wait_for 30 xs_gone "$(be "$FE" 51712)" || fail "the domU's backend directory was not removed"

step "destroy and re-create the driver domain: the files are there"
detach_dom0
stats_settle
[ "$(global mapped)" = 0 ] || fail "$(global mapped) pages still mapped after every disk was detached"
xl destroy $UK || fail "xl destroy"
xl pci-assignable-list | grep -q "00:04.0" || fail "the controller is no longer assignable"
create_dd ""
info "re-created: $CREATE_MS ms to serving"
attach_dom0
ext4_intact /dev/xvdb "after the driver domain was re-created"

step "dom0 leaves a pattern at 40 MiB for the host to find in the backing file"
yes "nvme-dd: written by dom0 through the Rust driver domain" | head -c 4194304 > /tmp/dd-pattern
dd if=/tmp/dd-pattern of=/dev/xvdb bs=1048576 seek=40 count=4 oflag=direct 2>/dev/null || fail "write at 40 MiB"
a=$(md5sum < /tmp/dd-pattern | cut -d' ' -f1)
b=$(dd if=/dev/xvdb bs=1048576 skip=40 count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$a" = "$b" ] || fail "read back $b at 40 MiB, wrote $a"
detach_dom0
stats_settle
[ "$(global mapped)" = 0 ] || fail "$(global mapped) pages still mapped after detach"
xl destroy $UK || fail "xl destroy"

step "the self test in HVM mode (its words at data/cmdline)"
SLOG=/var/log/xen/console/guest-uk-hvm.log
follow_console uk-hvm
render uk-hvm /tmp/uk-hvm.cfg || fail "render uk-hvm"
xl create -p /tmp/uk-hvm.cfg || fail "xl create uk-hvm"
xenstore-write "/local/domain/$(xl domid uk-hvm)/data/cmdline" selftest || fail "write data/cmdline"
xl unpause uk-hvm || fail "xl unpause uk-hvm"
wait_for 120 grep -q "Test result:" "$SLOG" || fail "the HVM self test printed no result: $(tail -3 "$SLOG" | tr '\n' ' ')"
grep -q "Test result: SUCCESS" "$SLOG" || fail "HVM self test: $(grep 'Test result:' "$SLOG" | tail -1)"
info "HVM self test: $(grep -c 'selftest: PASS' "$SLOG") checks passed"
xl destroy uk-hvm >/dev/null 2>&1
pass
