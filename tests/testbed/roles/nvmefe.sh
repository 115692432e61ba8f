# Role "nvmefe": a Linux HVM domU that owns the test bed's NVMe controller (passed through):
# reads what dom0 wrote at 0 (the same pattern, computed here), writes its own at 8 MiB and
# reads it back; the host checks both in the controller's backing file. One FE-RESULT line.
load_mod nvme || { echo "FE-RESULT: FAIL nvme module"; return; }
if ! wait_for 60 test -b /dev/nvme0n1; then echo "FE-RESULT: FAIL no /dev/nvme0n1"; return; fi
echo "INFO nvmefe: $(cat /sys/class/nvme/nvme0/model 2>/dev/null) at $(basename "$(readlink /sys/class/nvme/nvme0/device)")"
yes "nvme-pt: written by dom0 through the emulated VT-d" | head -c 4194304 | md5sum | cut -d' ' -f1 > /tmp/want0
dd if=/dev/nvme0n1 bs=1048576 count=4 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1 > /tmp/got0
if ! cmp -s /tmp/want0 /tmp/got0; then echo "FE-RESULT: FAIL dom0's bytes not on the controller"; return; fi
yes "nvme-pt: written by the HVM domU" | head -c 4194304 > /tmp/mine
dd if=/tmp/mine of=/dev/nvme0n1 bs=1048576 count=4 seek=8 oflag=direct 2>/dev/null || { echo "FE-RESULT: FAIL write"; return; }
want=$(md5sum < /tmp/mine | cut -d' ' -f1)
got=$(dd if=/dev/nvme0n1 bs=1048576 count=4 skip=8 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
if [ "$want" = "$got" ]; then echo "FE-RESULT: PASS"; else echo "FE-RESULT: FAIL read back $got, wrote $want"; fi
sync
