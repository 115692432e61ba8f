# Scenario bench: the workload matrix from dom0 (CPU 0) against each backend in
# $BACKENDS (a driver domain alone on CPU 1), all in one boot so figures compare.
# Settings come from /scenario/bench.env, written by `cargo xtask bench`.
. /scenario/bench.env

xl_cpu() { xl list "$1" 2>/dev/null | awk 'NR == 2 { print $6 }'; }
# xs_at_least PATH N: the xenbus state at PATH is N or a later one up to Connected.
xs_at_least() { _v=$(xenstore-read "$1" 2>/dev/null) && [ "$_v" -ge "$2" ] 2>/dev/null && [ "$_v" -le 4 ]; }
elapsed_s() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1000 }'; }

# Both sides allow indirect requests of 256 segments (1 MiB).
load_mod xen-blkfront max_indirect_segments=256 || error "xen-blkfront"

bench_backend() {
    b=$1 cfg=$2 dom=$3 ready=$4 target=$5
    step "$b: create the driver domain"
    follow_console "$dom"
    log="/var/log/xen/console/guest-$dom.log"
    # A domain of the same name may have run before: count only new ready lines.
    n0=$(grep -c "$ready" "$log" 2>/dev/null || true)
    t0=$(now_ms)
    xl create "$cfg" || fail "xl create $dom"
    t_created=$(now_ms)
    wait_for 120 sh -c "[ \$(grep -c '$ready' '$log' 2>/dev/null || echo 0) -gt ${n0:-0} ]" || fail "$dom never became ready"
    t_ready=$(now_ms)
    DD=$(xl domid "$dom")

    step "$b: attach a disk to dom0"
    xl block-attach 0 "format=raw, vdev=xvdb, access=rw, backend=$dom, target=$target" &
    attach_pid=$!
    # InitWait or beyond: a fast backend is Connected before a poll sees InitWait (seen: the
    # unikernel went InitWait -> Connected in 0.13 s, and a wait for exactly 2 timed out).
    wait_for 30 xs_at_least "/local/domain/$DD/backend/vbd/0/51728/state" 2 ||
        fail "backend never reached InitWait"
    t_initwait=$(now_ms)
    wait $attach_pid || fail "xl block-attach to $dom"
    wait_for 30 xs_is /local/domain/0/device/vbd/51728/state 4 || fail "dom0 frontend not Connected"
    wait_for 10 test -b /dev/xvdb || fail "/dev/xvdb did not appear"
    metric "$b.xl_create_s" "$(elapsed_s "$t0" "$t_created")"
    # xl create includes Xen scrubbing memory freed by earlier domains (slow under TCG);
    # the guest's own start-up is measured from xl create returning.
    metric "$b.boot_to_ready_s" "$(elapsed_s "$t_created" "$t_ready")"
    metric "$b.attach_to_initwait_s" "$(elapsed_s "$t_ready" "$t_initwait")"
    metric "$b.memory_mib" "$(xl list "$dom" | awk 'NR == 2 { print $3 }')"

    step "$b: fill the disk"
    # Reads of never-written RAM-disk pages would measure a shortcut, not the data path.
    dd if=/dev/zero of=/dev/xvdb bs=1048576 count="$SPAN_MIB" oflag=direct 2>/dev/null || fail "fill"

    step "$b: idle CPU of the driver domain"
    # xl list counts CPU time in 0.1 s steps: 10 s of idling resolves 0.01 s/s.
    c0=$(xl_cpu "$dom"); sleep 10
    metric "$b.idle_cpu_s_per_s" "$(awk -v a="$c0" -v b="$(xl_cpu "$dom")" 'BEGIN { printf "%.3f", (b - a) / 10 }')"

    step "$b: sanity check against dd"
    t=$(now_ms)
    dd if=/dev/xvdb of=/dev/null bs=1048576 count="$SPAN_MIB" iflag=direct 2>/dev/null || fail "dd read"
    metric "$b.dd_read_1m_mib_s" "$(awk -v n="$SPAN_MIB" -v a="$t" -v b="$(now_ms)" 'BEGIN { printf "%.1f", n * 1000 / (b - a) }')"

    for w in $WORKLOADS; do
        rw=${w%%:*} rest=${w#*:}; bs=${rest%%:*}; qd=${rest#*:}
        step "$b: $rw bs=$bs qd=$qd"
        c0=$(xl_cpu "$dom") z0=$(xl_cpu Domain-0)
        blkload --dev /dev/xvdb --rw "$rw" --bs "$bs" --qd "$qd" --seconds "$SECONDS_PER" \
            --span-mib "$SPAN_MIB" --label "$b.$rw.$bs.$qd" || fail "blkload $rw $bs $qd"
        metric "$b.$rw.$bs.$qd.dd_cpu_s" "$(awk -v a="$c0" -v b="$(xl_cpu "$dom")" 'BEGIN { printf "%.2f", b - a }')"
        # dom0 is the frontend (blkfront and the load): its CPU says when it is the bottleneck.
        metric "$b.$rw.$bs.$qd.dom0_cpu_s" "$(awk -v a="$z0" -v b="$(xl_cpu Domain-0)" 'BEGIN { printf "%.2f", b - a }')"
    done

    for k in loops polls heap_used_kib hc_sched hc_evtchn hc_gnttab; do
        v=$(xenstore-read "/local/domain/$DD/data/blkback/$k" 2>/dev/null) && info "$b profile $k=$v"
    done
    step "$b: detach and destroy"
    xl block-detach 0 xvdb || fail "block-detach from $dom"
    xl destroy "$dom" || fail "destroy $dom"
    # Xen scrubs the freed memory in its idle loop, on the CPUs the next backend uses:
    # let it finish before measuring anything else (seen: QD1 latency 5x worse without).
    step "$b: let Xen scrub the freed memory"
    sleep "${SETTLE_S:-20}"
}

# Network storage (the `*-nbd` backends): one nbdkit in dom0 serving a file in dom0's RAM
# over the bridge xenbr0; each driver domain reaches it through its own vif and dom0's
# netback. Set up once, when the first such backend runs.
NBD_UP=
nbd_server() {
    [ -n "$NBD_UP" ] && return 0
    step "dom0: netback, a bridge, nbdkit for the NBD backends"
    storage_bridge
    # Sparse: the fill step writes every block the workloads touch.
    truncate -s "$((SPAN_MIB + 32))M" /tmp/nbd-bench.img || fail "disk image"
    nbdkit --exit-with-parent -f -i 192.0.2.1 -p 10809 file file=/tmp/nbd-bench.img >/tmp/nbdkit.out 2>&1 &
    wait_for 10 grep -q . /proc/$!/status || fail "nbdkit did not start: $(cat /tmp/nbdkit.out)"
    NBD_UP=1
}

# The unikernel: one configuration, the data path chosen per disk by its target.
sed -e "s/@CMDLINE@/path=map persistent=1 indirect=256/" -e "s/^memory = .*/memory = $((SPAN_MIB + 96))/" \
    /etc/xen/testbed/uk-dd.cfg > /tmp/uk-bench.cfg
UKT="ram:$((SPAN_MIB + 32))M"
for b in $BACKENDS; do
    case $b in
        linux) bench_backend linux /etc/xen/testbed/linux-dd.cfg linux-dd DD-READY /dev/ram0 ;;
        uk-persistent) bench_backend "$b" /tmp/uk-bench.cfg uk-dd "blkback: serving" "$UKT" ;;
        uk-map) bench_backend "$b" /tmp/uk-bench.cfg uk-dd "blkback: serving" "$UKT:nopersist" ;;
        uk-copy) bench_backend "$b" /tmp/uk-bench.cfg uk-dd "blkback: serving" "$UKT:copy:nopersist" ;;
        uk-null) bench_backend "$b" /tmp/uk-bench.cfg uk-dd "blkback: serving" "null:$((SPAN_MIB + 32))M" ;;
        linux-nbd) nbd_server; bench_backend "$b" /etc/xen/testbed/linux-nbd.cfg linux-nbd DD-READY /dev/nbd0 ;;
        uk-nbd)
            nbd_server
            # The NBD test config with the bench's engine settings and the default fail window.
            sed -e 's/^cmdline = .*/cmdline = "ip=192.0.2.2\/24 path=map persistent=1 indirect=256"/' \
                /etc/xen/testbed/uk-nbd.cfg > /tmp/uk-nbd-bench.cfg
            bench_backend "$b" /tmp/uk-nbd-bench.cfg uk-nbd "blkback: serving" "nbd://192.0.2.1/disk0" ;;
        *) error "unknown backend $b" ;;
    esac
done
pass
