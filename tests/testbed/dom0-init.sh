#!/bin/sh
# /init of dom0 in the nested test bed: no systemd, just what xl needs
# (docs/testbed.md "Dom0 start-up"), then the scenario in /scenario/run.sh.
. /lib/testbed/common.sh

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
# devtmpfs has no fd links; the hotplug scripts' locking loops forever without /dev/stdin.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /var/lib/xen /var/log/xen/console /run/xen /var/lib/xenstored /run/lock /run/xenstored
echo "INFO dom0 /init at $(cut -d' ' -f1 /proc/uptime)s"

for m in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xenfs; do
    load_mod $m || echo "INFO could not load $m"
done
mount -t xenfs xenfs /proc/xen

XENSTORED_ROOTDIR=/var/lib/xenstored xenstored --pid-file /run/xenstored.pid
wait_for 20 xenstore-read -s / || { echo "Test result: ERROR: xenstored did not start"; poweroff -f; }
xen-init-dom0 >/dev/null || echo "INFO xen-init-dom0 failed"
xenconsoled --log=guest --log-dir=/var/log/xen/console
echo "INFO dom0 ready at $(cut -d' ' -f1 /proc/uptime)s"

# Guests' consoles, live on the serial line as "[<name>] <line>" (xtask files them).
follow_console() {
    ( tail -n +1 -F "/var/log/xen/console/guest-$1.log" 2>/dev/null | while IFS= read -r l; do
        echo "[$1] $l"; done ) &
}

finish() {
    for d in $(xl list 2>/dev/null | awk 'NR > 2 { print $1 }'); do xl destroy "$d" 2>/dev/null; done
    sleep 1
    echo "INFO testbed-faults $(testbed_faults)"
    sync
    # The harness stops QEMU at this line: Xen's own ACPI S5 path takes 10+ s under TCG.
    echo "TESTBED-END"
    poweroff -f
}
pass() { echo "Test result: SUCCESS"; finish; }
fail() { echo "Test result: FAILURE: $CURRENT_STEP: $*"; finish; }
error() { echo "Test result: ERROR: $CURRENT_STEP: $*"; finish; }

# The scenarios' verbs (driver domains and guests from templates, counters).
. /lib/testbed/dom0.sh
. /scenario/run.sh
echo "Test result: ERROR: the scenario ended without a result"
finish
