# Shared shell library of the test bed, sourced by dom0's and every domU's /init.
# Output protocol (read by `cargo xtask`):
#   STEP <name>                      a scenario step starts
#   INFO <text>                      information
#   METRIC <key> <value>             a figure the harness collects (bench)
#   Test result: SUCCESS | FAILURE: <what> | ERROR: <what>   (dom0 only, exactly once)

export PATH=/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Read by fail/error in dom0-init.sh (this file is sourced there and in every domU).
# shellcheck disable=SC2034
CURRENT_STEP=boot
# shellcheck disable=SC2034
step() { CURRENT_STEP="$*"; echo "STEP $*"; }
info() { echo "INFO $*"; }
metric() { echo "METRIC $1 $2"; }

# Milliseconds since boot (from /proc/uptime, 10 ms resolution).
now_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

# wait_for SECONDS COMMAND...: poll COMMAND every 100 ms until it succeeds.
wait_for() {
    _limit=$(($1 * 10)); shift
    _i=0
    while ! "$@" >/dev/null 2>&1; do
        _i=$((_i + 1))
        [ "$_i" -ge "$_limit" ] && return 1
        sleep 0.1
    done
    return 0
}

# xs_is PATH VALUE: the xenstore key PATH holds VALUE (re-read on every call, for wait_for).
xs_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
# xs_gone PATH: the xenstore node PATH does not exist.
xs_gone() { ! xenstore-exists "$1" 2>/dev/null; }

# load_mod NAME [PARAMS...]: insmod NAME's dependencies then NAME (lists made by xtask).
load_mod() {
    _m=$(echo "$1" | tr - _); shift
    [ -d "/sys/module/$_m" ] && [ -z "$*" ] && return 0
    _list=/lib/modules/load/$_m.list
    if [ ! -f "$_list" ]; then
        # Built into the kernel: nothing to load.
        grep -q "/$_m.ko\$" /lib/modules/builtin.txt 2>/dev/null && return 0
        echo "INFO module $_m is not in the image"; return 1
    fi
    _last=$(tail -n 1 "$_list")
    while read -r _ko; do
        _n=$(basename "$_ko" .ko | tr - _)
        [ -d "/sys/module/$_n" ] && continue
        if [ "$_ko" = "$_last" ]; then insmod "$_ko" "$@"; else insmod "$_ko"; fi || {
            echo "INFO insmod $_ko failed"; return 1; }
    done < "$_list"
    [ -d "/sys/module/$_m" ]
}

# verify_disk DEV MIB BS [CORRUPT]: write MIB MiB of random data to DEV with O_DIRECT in
# BS-byte blocks, read it back the same way and compare checksums. With CORRUPT=1 a 4 KiB
# block is zeroed between write and read (the harness's negative self-check).
verify_disk() {
    _dev=$1 _mib=$2 _bs=$3 _corrupt=${4:-0}
    _count=$((_mib * 1048576 / _bs))
    dd if=/dev/urandom of=/tmp/pattern bs=1048576 count="$_mib" 2>/dev/null || return 1
    _want=$(md5sum < /tmp/pattern | cut -d' ' -f1)
    dd if=/tmp/pattern of="$_dev" bs="$_bs" count="$_count" oflag=direct 2>/dev/null || {
        info "write to $_dev failed (bs=$_bs)"; return 1; }
    if [ "$_corrupt" = 1 ]; then
        dd if=/dev/zero of="$_dev" bs=4096 seek=3 count=1 oflag=direct 2>/dev/null
    fi
    _got=$(dd if="$_dev" bs="$_bs" count="$_count" iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
    rm -f /tmp/pattern
    info "verify $_dev ${_mib}MiB bs=$_bs want=$_want got=$_got"
    [ "$_want" = "$_got" ]
}

# Count of lines that mean the emulated machine, not the project, failed.
testbed_faults() {
    cat /var/log/xen/console/*.log 2>/dev/null | grep -c -E 'segfault|Segmentation fault|Triple fault'
}

# storage_bridge: dom0's side of the driver domains' vifs: netback, and the bridge xenbr0
# at 192.0.2.1/24 (TEST-NET-1) that Xen's vif-bridge script adds each vif to.
storage_bridge() {
    load_mod xen-netback || fail "xen-netback"
    load_mod bridge || fail "bridge"
    brctl addbr xenbr0 || fail "brctl addbr"
    ip addr add 192.0.2.1/24 dev xenbr0 || fail "ip addr"
    ip link set xenbr0 up || fail "ip link up"
}
