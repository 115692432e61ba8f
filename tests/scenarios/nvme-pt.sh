# Scenario nvme-pt: the passthrough test bed, the ground the NVMe driver domain stands on.
# QEMU gives the machine an emulated Intel VT-d and an NVMe controller at 00:04.0 backed by
# target/testbed/nvme0.img (docs/testbed.md, "PCI passthrough"). Checks: Xen found the
# IOMMU and enabled it; dom0 sees the controller; dom0's nvme driver writes a pattern
# through the IOMMU and reads it back (the host checks the backing file after the run);
# the controller goes to xen-pciback and xl lists it as assignable to a driver domain.
BDF=0000:00:04.0

step "Xen enabled the IOMMU"
xl dmesg > /tmp/xen.log
grep -q "Intel VT-d iommu" /tmp/xen.log ||
    fail "Xen found no VT-d: $(grep -i -m3 -E 'iommu|vt-d|dmar' /tmp/xen.log | tr '\n' ' ')"
grep -q "I/O virtualisation enabled" /tmp/xen.log || fail "Xen did not enable I/O virtualisation"
info "xen: $(grep -m1 -o 'Intel VT-d iommu.*' /tmp/xen.log)"
for f in "Queued Invalidation enabled" "Interrupt remapping enabled" "Shared EPT tables enabled" "Snoop Control not enabled"; do
    grep -q "$f" /tmp/xen.log && info "xen: $f"
done
info "virt_caps: $(xl info | awk -F': ' '/^virt_caps/ { print $2 }')"

step "dom0 sees the NVMe controller"
[ -d "/sys/bus/pci/devices/$BDF" ] || fail "no device at $BDF: $(ls /sys/bus/pci/devices | tr '\n' ' ')"
class=$(cat "/sys/bus/pci/devices/$BDF/class")
[ "$class" = 0x010802 ] || fail "class $class at $BDF, not an NVMe controller"
info "$BDF: vendor $(cat "/sys/bus/pci/devices/$BDF/vendor") class $class"

step "dom0's nvme driver writes through the IOMMU and reads back"
load_mod nvme || fail "nvme module"
wait_for 30 test -b /dev/nvme0n1 || fail "/dev/nvme0n1 did not appear"
# The pattern the host checks afterwards (xtask/src/scenarios.rs, NVME_PATTERN): 4 MiB.
yes "nvme-pt: written by dom0 through the emulated VT-d" | head -c 4194304 > /tmp/pattern
dd if=/tmp/pattern of=/dev/nvme0n1 bs=1048576 count=4 oflag=direct 2>/dev/null || fail "write to the controller"
want=$(md5sum < /tmp/pattern | cut -d' ' -f1)
got=$(dd if=/dev/nvme0n1 bs=1048576 count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "read back $got, wrote $want"
sync

step "the controller goes to xen-pciback and is assignable"
echo "$BDF" > /sys/bus/pci/drivers/nvme/unbind || fail "unbind from nvme"
load_mod xen-pciback || fail "xen-pciback"
xl pci-assignable-add "$BDF" || fail "xl pci-assignable-add $BDF"
xl pci-assignable-list > /tmp/assignable 2>&1
grep -q "00:04.0" /tmp/assignable || fail "not assignable: $(cat /tmp/assignable)"
info "assignable: $(tr '\n' ' ' < /tmp/assignable)"

step "the unikernel as an HVM driver domain (in hvmloader's place) serves a verified disk"
render uk-hvm /tmp/uk-hvm.cfg || fail "render uk-hvm"
follow_console uk-hvm
LOG=/var/log/xen/console/guest-uk-hvm.log
t0=$(now_ms)
xl create /tmp/uk-hvm.cfg || fail "xl create uk-hvm: $(tail -5 /var/log/xen/qemu-dm-uk-hvm.log 2>/dev/null | tr '\n' ' ')"
wait_for 120 grep -q "blkback: serving" "$LOG" || fail "the HVM unikernel never served: $(tail -3 "$LOG" | tr '\n' ' ')"
metric uk.hvm_create_to_serving_s "$(awk -v a="$t0" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }')"
# shellcheck disable=SC2034 # read by be/stat/global (tests/testbed/dom0.sh)
DD=$(xl domid uk-hvm)
xl list -l uk-hvm | grep -q '"type": "hvm"' || fail "uk-hvm is not an HVM domain"
load_mod xen-blkfront || fail "xen-blkfront"
xl block-attach 0 "format=raw, vdev=xvdb, access=rw, backend=uk-hvm, target=ram:16M" || fail "attach to the HVM driver domain"
wait_for 30 xs_is /local/domain/0/device/vbd/51728/state 4 || fail "dom0's disk from the HVM driver domain not Connected: backend $(xenstore-read "$(be 0 51728)/state")"
wait_for 10 test -b /dev/xvdb || fail "/dev/xvdb did not appear"
blkload --verify --dev /dev/xvdb --span-mib 8 --ops 40 --seed 21 || fail "the HVM driver domain's disk does not verify"
xl block-detach 0 xvdb || fail "detach"
wait_for 15 xs_gone "$(be 0 51728)" || fail "backend directory stayed after detach"
xl destroy uk-hvm || fail "xl destroy uk-hvm"

step "a Linux HVM domU owns the controller: it reads dom0's bytes and writes its own"
render fe-hvm /tmp/fe-hvm.cfg ROLE=nvmefe BDF="$BDF" || fail "render fe-hvm"
follow_console fe-hvm
FELOG=/var/log/xen/console/guest-fe-hvm.log
t0=$(now_ms)
xl create /tmp/fe-hvm.cfg || fail "xl create fe-hvm: $(tail -5 /var/log/xen/qemu-dm-fe-hvm.log 2>/dev/null | tr '\n' ' ')"
wait_for 240 grep -q FE-RESULT "$FELOG" || fail "the HVM domU gave no FE-RESULT: $(tail -3 "$FELOG" 2>/dev/null | tr '\n' ' ')"
metric nvme.hvm_create_to_result_s "$(awk -v a="$t0" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }')"
grep -q "FE-RESULT: PASS" "$FELOG" || fail "HVM domU: $(grep FE-RESULT "$FELOG")"
# The domU powers itself off after its verdict; destroy it if it has not yet.
xl destroy fe-hvm >/dev/null 2>&1
wait_for 30 sh -c '! xl list fe-hvm >/dev/null 2>&1' || fail "fe-hvm still there"
pass
