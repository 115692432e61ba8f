#!/bin/sh
# /init of a Linux PVH domU in the test bed; its role (dd = driver domain, fe =
# frontend) comes from the kernel command line as $role.
. /lib/testbed/common.sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mkdir -p /run && mount -t tmpfs tmpfs /run
# $role is set by the kernel from the command line (role=...), not by this script.
# shellcheck disable=SC2154
echo "INFO domU /init role=$role at $(cut -d' ' -f1 /proc/uptime)s"
if [ -f "/roles/$role.sh" ]; then
    # shellcheck source=/dev/null
    . "/roles/$role.sh"
else
    echo "INFO unknown role '$role'"
fi
sync
poweroff -f
