# Role "dd": a Linux driver domain, the baseline the unikernel is compared with:
# xen-blkback over brd RAM disks, run as deployments run it, with the real `xl devd`
# (it watches this domain's backend directories, runs the `block` hotplug script that
# writes physical-device, and removes a backend directory after detach, which is what
# libxl in dom0 waits for; docs/testbed.md).
load_mod xen-blkback || echo "DD-ERROR xen-blkback"
load_mod brd rd_nr=${rd_nr:-4} rd_size=${rd_size_kib:-262144} || echo "DD-ERROR brd"
# libxl opens privcmd, evtchn and gntdev even in a domU.
for m in xen-evtchn xen-gntdev xen-privcmd; do load_mod "$m" || echo "DD-ERROR $m"; done
# devtmpfs has no fd links; the hotplug scripts' locking loops forever without /dev/stdin.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /var/lib/xen /var/log/xen /run/xen /run/lock
ln -sf /run /var/run
DOMID=$(xenstore-read domid)
# The network-storage baseline (`nbd_server=` on the command line): the disk this domain
# serves is an NBD export reached over its vif, the Linux way: nbd-client negotiates, then
# hands the socket to the kernel's nbd driver, and blkback serves /dev/nbd0.
if [ -n "$nbd_server" ]; then
    load_mod xen-netfront || echo "DD-ERROR xen-netfront"
    load_mod nbd nbds_max=2 || echo "DD-ERROR nbd"
    wait_for 20 test -d /sys/class/net/eth0 || echo "DD-ERROR no eth0"
    ip link set lo up
    ip link set eth0 up || echo "DD-ERROR eth0 up"
    ip addr add "${dd_ip:?dd_ip= is needed with nbd_server=}" dev eth0 || echo "DD-ERROR ip addr $dd_ip"
    wait_for 20 ping -c 1 -W 1 "$nbd_server" >/dev/null || echo "DD-ERROR $nbd_server unreachable"
    nbd-client -N "${nbd_export:-disk0}" "$nbd_server" /dev/nbd0 || echo "DD-ERROR nbd-client"
    wait_for 10 sh -c '[ "$(cat /sys/block/nbd0/size)" -gt 0 ]' || echo "DD-ERROR /dev/nbd0 has no size"
    echo "INFO /dev/nbd0: $(cat /sys/block/nbd0/size) sectors from $nbd_server/${nbd_export:-disk0}"
fi
# Supervised, as a service manager would: in one CI run `xl devd` (Xen 4.17) aborted with
# "free(): corrupted unsorted chunks" just after connecting a disk; the disk kept working
# (blkback is in the kernel) but without devd the domain ended and detach had nobody to
# remove the backend directory. A restart is logged as DD-WARN.
(
    while :; do
        xl devd -F
        echo "DD-WARN xl devd exited with $?: restarting it"
        sleep 0.5
    done
) &
sleep 1
ps | grep -q "[x]l devd" || echo "DD-ERROR xl devd is not running"
echo "DD-READY domid=$DOMID"
wait
