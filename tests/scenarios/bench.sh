# Scenario bench: the workload matrix from dom0 (CPU 0) against each backend in
# $BACKENDS (driver domains on CPU 1), all in one boot so figures compare.
# Settings come from /scenario/bench.env, written by `cargo xtask bench`.
#
# Method (docs/benchmarks.md): every driver domain of a group is created and its disk
# attached first (the unikernel serves its four RAM-disk variants as four disks of one
# domain); then each workload runs $REPEATS times, the backends in a different order each
# time (rotated), so drift and Xen's scrubbing of freed memory do not always favour the
# same one. A driver domain not being measured is paused (`xl pause`): nothing of it runs
# on CPU 1 while another one is measured. Load: blkload's io_uring engine at true queue
# depth (and its psync threads once per backend as a cross-check of the load tool).
. /scenario/bench.env

xl_cpu() { xl list "$1" 2>/dev/null | awk 'NR == 2 { print $6 }'; }
# xs_at_least PATH N: the xenbus state at PATH is N or a later one up to Connected.
xs_at_least() { _v=$(xenstore-read "$1" 2>/dev/null) && [ "$_v" -ge "$2" ] 2>/dev/null && [ "$_v" -le 4 ]; }
elapsed_s() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1000 }'; }
delta() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# Both sides allow indirect requests of 256 segments (1 MiB).
load_mod xen-blkfront max_indirect_segments=256 || error "xen-blkfront"

# FRONTEND=domu: the disks are a Linux PVH domU's (role benchfe, on CPU 0 like dom0's
# load otherwise) and every load command runs there, through xenstore (fe_run).
FE_DOM=0 FE_NAME=Domain-0
SEQ=0
fe_run() {
    if [ "$FRONTEND" != domu ]; then sh -c "$*"; return; fi
    SEQ=$((SEQ + 1))
    _p=/local/domain/$FE_DOM/data/bench
    xenstore-write "$_p/cmd" "$SEQ $*"
    # Polled every 0.5 s: dom0 shares CPU 0 with the domU and must stay out of its way.
    _n=0
    until xs_is "$_p/done" "$SEQ"; do
        _n=$((_n + 1)); [ "$_n" -gt 1800 ] && fail "the frontend domU did not run: $*"
        sleep 0.5
    done
    xenstore-read "$_p/out"
    [ "$(xenstore-read "$_p/rc")" = 0 ]
}
if [ "$FRONTEND" = domu ]; then
    step "the frontend: a Linux PVH domU (CPU 0)"
    cat /boot/domu.cpio /boot/fe-extra.cpio > /tmp/domu-bench.cpio
    # The domU template without its disk (the bench attaches disks itself).
    render fe-linux /tmp/bench-fe.cfg NAME=bench-fe CPUS=0 RAMDISK=/tmp/domu-bench.cpio ROLE=benchfe \
        BACKEND=none TARGET=none || fail "render bench-fe"
    sed -i '/^disk/d' /tmp/bench-fe.cfg
    follow_console bench-fe
    xl create /tmp/bench-fe.cfg || fail "xl create bench-fe"
    FE_NAME=bench-fe FE_DOM=$(xl domid bench-fe)
    wait_for 90 xs_is "/local/domain/$FE_DOM/data/bench/ready" 1 || fail "the frontend domU never became ready"
    grep -m1 "benchfe ready" /var/log/xen/console/guest-bench-fe.log | sed 's/^/  /'
fi

# The backends, from xtask's typed table (bench.rs `BACKENDS`), one line each: name, driver
# domain (- for none), vdev and device id in the frontend, target.
TABLE=/scenario/backends.tsv
col_of() { awk -v b="$1" -v f="$2" '$1 == b { print $f }' "$TABLE"; }
dom_of() { col_of "$1" 2; }
vdev_of() { col_of "$1" 3; }
devid_of() { col_of "$1" 4; }
target_of() { col_of "$1" 5; }
# Both driver domains get the same tsc_mode (the test bed's QEMU has no invariant TSC: with
# "default" Xen emulates the TSC of PVH guests and every rdtsc is a world switch).
with_tsc() { sed -e '/^tsc_mode/d' "$1"; echo "tsc_mode = \"$TSC_MODE\""; }

create_dd() {
    dom=$1 cfg=$2 ready=$3
    step "$dom: create the driver domain (tsc_mode $TSC_MODE)"
    follow_console "$dom"
    log="/var/log/xen/console/guest-$dom.log"
    t0=$(now_ms)
    xl create "$cfg" || fail "xl create $dom"
    t_created=$(now_ms)
    wait_for 120 grep -q "$ready" "$log" || fail "$dom never became ready"
    t_ready=$(now_ms)
    metric "$dom.xl_create_s" "$(elapsed_s "$t0" "$t_created")"
    # xl create includes Xen scrubbing memory freed by earlier domains (slow under TCG);
    # the guest's own start-up is measured from xl create returning.
    metric "$dom.boot_to_ready_s" "$(elapsed_s "$t_created" "$t_ready")"
    metric "$dom.memory_mib" "$(xl list "$dom" | awk 'NR == 2 { print $3 }')"
    grep -m1 "TSC:" "$log" | sed 's/^/  /'
    probe=$(grep -m1 "world switch probe" "$log") && info "$dom ${probe#*INFO }"
}

attach() {
    b=$1 target=$2
    dom=$(dom_of "$b") vdev=$(vdev_of "$b") devid=$(devid_of "$b")
    DD=$(xl domid "$dom")
    step "$b: attach $target as $vdev of $FE_NAME"
    t0=$(now_ms)
    xl block-attach "$FE_NAME" "format=raw, vdev=$vdev, access=rw, backend=$dom, target=$target" &
    attach_pid=$!
    # InitWait or beyond: a fast backend is Connected before a poll sees InitWait.
    wait_for 30 xs_at_least "/local/domain/$DD/backend/vbd/$FE_DOM/$devid/state" 2 || fail "$b: backend never reached InitWait"
    metric "$b.attach_to_initwait_s" "$(elapsed_s "$t0" "$(now_ms)")"
    wait $attach_pid || fail "xl block-attach to $dom"
    wait_for 30 xs_is "/local/domain/$FE_DOM/device/vbd/$devid/state" 4 || fail "$b: frontend not Connected"
    fe_run "i=0; while [ ! -b /dev/$vdev ] && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i + 1)); done; test -b /dev/$vdev" ||
        fail "/dev/$vdev did not appear"
    # Reads of never-written RAM-disk pages would measure a shortcut, not the data path.
    fe_run dd if=/dev/zero of="/dev/$vdev" bs=1048576 count="$SPAN_MIB" oflag=direct || fail "fill $vdev"
    t=$(now_ms)
    fe_run dd if="/dev/$vdev" of=/dev/null bs=1048576 count="$SPAN_MIB" iflag=direct >/dev/null || fail "dd read $vdev"
    metric "$b.dd_read_1m_mib_s" "$(awk -v n="$SPAN_MIB" -v a="$t" -v b="$(now_ms)" 'BEGIN { printf "%.1f", n * 1000 / (b - a) }')"
}

# Only the driver domain of backend $1 runs. (Shell variables are global: helpers use
# names of their own, `_x`.)
RUNNING=
only() {
    _want=$(dom_of "$1")
    # `--no-pause`: every driver domain stays running (their idle CPU is measured above).
    for _d in $([ "$PAUSE" = 0 ] || echo $DOMS); do
        if [ "$_d" = "$_want" ]; then xl unpause "$_d" 2>/dev/null; else xl pause "$_d" 2>/dev/null; fi
    done
    RUNNING=$_want
}

# One measurement: backend $1, workload $2, label suffix $3, engine $4.
measure() {
    b=$1 w=$2 sfx=$3 engine=$4
    rw=${w%%:*} rest=${w#*:}; bs=${rest%%:*}; qd=${rest#*:}
    dom=$(dom_of "$b") dev="/dev/$(vdev_of "$b")"
    # dom0-null: the driver domains stay as they are (two runs with every one of them
    # paused for it hung at the next unpause; not understood).
    [ "$b" = dom0-null ] && dev=/dev/nullb0
    [ "$RUNNING" = "$dom" ] || [ "$dom" = - ] || only "$b"
    c0=$(xl_cpu "$dom") z0=$(xl_cpu "$FE_NAME")
    fe_run blkload --engine "$engine" --dev "$dev" --rw "$rw" --bs "$bs" --qd "$qd" --seconds "$SECONDS_PER" \
        --span-mib "$SPAN_MIB" --label "$b.$rw.$bs.$qd.$sfx" || fail "blkload $b $rw $bs $qd"
    # (No driver domain for dom0-null: no figure.)
    [ "$dom" = - ] || metric "$b.$rw.$bs.$qd.$sfx.dd_cpu_s" "$(delta "$c0" "$(xl_cpu "$dom")")"
    # The frontend (blkfront and the load; dom0, or the domU with FRONTEND=domu): its CPU
    # says when it is the bottleneck. Reported as dom0_cpu_s either way.
    metric "$b.$rw.$bs.$qd.$sfx.dom0_cpu_s" "$(delta "$z0" "$(xl_cpu "$FE_NAME")")"
}

# The load tool cross-checked against fio (`--fio`): Debian's fio, io_uring at iodepth N,
# same device, size and duration; its IOPS from the terse output (v3: field 8 read, 49
# write).
fio_measure() {
    b=$1 w=$2
    rw=${w%%:*} rest=${w#*:}; bs=${rest%%:*}; qd=${rest#*:}
    dom=$(dom_of "$b") dev="/dev/$(vdev_of "$b")"
    [ "$b" = dom0-null ] && dev=/dev/nullb0
    [ "$RUNNING" = "$dom" ] || [ "$dom" = - ] || only "$b"
    out=$(fio --name=xcheck --filename="$dev" --direct=1 --rw="$rw" --bs="$bs" --iodepth="$qd" \
        --ioengine=io_uring --size="${SPAN_MIB}M" --runtime="$SECONDS_PER" --time_based \
        --output-format=terse --terse-version=3 2>/tmp/fio.err) || fail "fio $b $w: $(tail -3 /tmp/fio.err)"
    metric "fio.$b.$rw.$bs.$qd" "$(echo "$out" | awk -F';' '{ printf "%.0f", $8 + $49 }')"
}

run_group() {
    group=$1
    step "$group: idle CPU of each driver domain (the others paused)"
    for b in $group; do
        d=$(dom_of "$b")
        case " $idled " in *" $d "*) continue ;; esac
        [ "$d" = - ] && continue
        idled="$idled $d"
        only "$b"
        # xl list counts CPU time in 0.1 s steps: 10 s of idling resolves 0.01 s/s.
        c0=$(xl_cpu "$d"); sleep 10
        metric "$d.idle_cpu_s_per_s" "$(awk -v a="$c0" -v b="$(xl_cpu "$d")" 'BEGIN { printf "%.3f", (b - a) / 10 }')"
    done
    n=$(echo $group | wc -w)
    r=0
    while [ "$r" -lt "$REPEATS" ]; do
        r=$((r + 1))
        wi=0
        for w in $WORKLOADS; do
            wi=$((wi + 1))
            # A different backend first in each repeat and workload.
            k=$(((r + wi) % n))
            order=$(echo $group | awk -v k="$k" '{ for (i = 0; i < NF; i++) printf "%s ", $(((i + k) % NF) + 1) }')
            step "repeat $r/$REPEATS: $w: $order"
            for b in $order; do measure "$b" "$w" "r$r" uring; done
        done
    done
    # The load tool cross-checked: N threads of psync I/O instead of io_uring at depth N.
    for b in $group; do
        for w in $CROSSCHECK; do
            measure "$b" "$w" psync psync
            [ "$FIO" = 1 ] && fio_measure "$b" "$w"
        done
    done
    for b in $group; do
        d=$(dom_of "$b")
        case $d in uk-*)
            for k in loops polls heap_used_kib hc_sched hc_evtchn hc_gnttab xs_turn_max_us probe_hypercall_ns probe_rdtsc_ns probe_copy4k_ns probe_copy4k_loop_ns; do
                v=$(xenstore-read "/local/domain/$(xl domid "$d")/data/blkback/$k" 2>/dev/null) && info "$d profile $k=$v"
            done ;;
        esac
        # The swap path's own counters (frame exchanges, refusals copied).
        if [ "$b" = uk-swap ]; then
            _s=/local/domain/$(xl domid uk-dd)/data/blkback/vbd/$FE_DOM/$(devid_of uk-swap)
            for k in swap_mode swapped swap_direct swap_fallbacks swap_zeroed swap_calls copy_ops; do
                info "uk-swap $k=$(xenstore-read "$_s/$k" 2>/dev/null)"
            done
            metric uk-swap.swapped "$(xenstore-read "$_s/swapped" 2>/dev/null)"
            metric uk-swap.swap_fallbacks "$(xenstore-read "$_s/swap_fallbacks" 2>/dev/null)"
        fi
    done
}

teardown() {
    step "detach and destroy: $DOMS"
    for d in $DOMS; do xl unpause "$d" 2>/dev/null; done
    for b in $1; do [ "$b" = dom0-null ] || xl block-detach "$FE_NAME" "$(vdev_of "$b")" || fail "block-detach $b"; done
    for d in $DOMS; do xl destroy "$d" || fail "destroy $d"; done
    # Xen scrubs the freed memory in its idle loop, on the CPUs the next group uses.
    sleep "${SETTLE_S:-20}"
}

RAM='' NBD=''
for b in $BACKENDS; do
    case $b in *-nbd) NBD="$NBD $b" ;; *) RAM="$RAM $b" ;; esac
done

if [ -n "$RAM" ]; then
    DOMS=
    # Disks of the PVH unikernel, and RAM disks of each unikernel (each needs its memory).
    uk_disks=0 uk_ram=0 hvm_ram=0
    for b in $RAM; do
        case $(dom_of "$b"):$(target_of "$b") in
            uk-dd:ram:*) uk_disks=$((uk_disks + 1)) uk_ram=$((uk_ram + 1)) ;;
            uk-dd:*) uk_disks=$((uk_disks + 1)) ;;
            uk-hvm:ram:*) hvm_ram=$((hvm_ram + 1)) ;;
        esac
    done
    case " $RAM " in *" dom0-null "*)
        # The frontend alone: the same load on null_blk in dom0 (blk-mq, no memory behind
        # it, completions inline), no driver domain.
        load_mod null_blk queue_mode=2 irqmode=0 memory_backed=0 gb=1 nr_devices=1 || fail "null_blk"
        wait_for 10 test -b /dev/nullb0 || fail "/dev/nullb0 missing" ;;
    esac
    if [ "$uk_disks" -gt 0 ]; then
        # One unikernel, a disk per data path: memory for each RAM disk plus its own 96 MiB.
        render uk-dd /tmp/uk.cfg CMDLINE="path=map persistent=1 indirect=256" \
            MEMORY=$((96 + uk_ram * (SPAN_MIB + 32))) || fail "render uk-dd"
        with_tsc /tmp/uk.cfg > /tmp/uk-bench.cfg
        create_dd uk-dd /tmp/uk-bench.cfg "blkback: serving"
        DOMS="$DOMS uk-dd"
    fi
    if [ "$hvm_ram" -gt 0 ]; then
        # The same image as an HVM driver domain, in hvmloader's place: no cmdline, and its
        # defaults are the words uk-dd is given (path=map persistent=1 indirect=256).
        render uk-hvm /tmp/ukh.cfg NAME=uk-hvm MEMORY=$((96 + hvm_ram * (SPAN_MIB + 32))) || fail "render uk-hvm"
        with_tsc /tmp/ukh.cfg > /tmp/uk-hvm-bench.cfg
        create_dd uk-hvm /tmp/uk-hvm-bench.cfg "blkback: serving"
        DOMS="$DOMS uk-hvm"
    fi
    case " $RAM " in *" linux "*)
        with_tsc /etc/xen/testbed/linux-dd.cfg > /tmp/linux-bench.cfg
        create_dd linux-dd /tmp/linux-bench.cfg DD-READY
        DOMS="$DOMS linux-dd" ;;
    esac
    for b in $RAM; do
        [ "$(dom_of "$b")" = - ] || attach "$b" "$(target_of "$b")"
    done
    run_group "$RAM"
    teardown "$RAM"
fi
[ "$FRONTEND" = domu ] && xl destroy bench-fe

# Network storage: one nbdkit in dom0 serving a file in dom0's RAM over the bridge xenbr0;
# each driver domain reaches it through its own vif and dom0's netback.
if [ -n "$NBD" ]; then
    DOMS=
    step "dom0: netback, a bridge, nbdkit for the NBD backends"
    storage_bridge
    # Sparse: the fill step writes every block the workloads touch.
    truncate -s "$((SPAN_MIB + 32))M" /tmp/nbd-bench.img || fail "disk image"
    nbdkit --exit-with-parent -f -i 192.0.2.1 -p 10809 file file=/tmp/nbd-bench.img >/tmp/nbdkit.out 2>&1 &
    wait_for 10 grep -q . /proc/$!/status || fail "nbdkit did not start: $(cat /tmp/nbdkit.out)"
    for b in $NBD; do
        case $b in
            linux-nbd)
                with_tsc /etc/xen/testbed/linux-nbd.cfg > /tmp/linux-nbd-bench.cfg
                create_dd linux-nbd /tmp/linux-nbd-bench.cfg DD-READY ;;
            uk-nbd)
                # The NBD test config with the bench's engine settings and the default window.
                render uk-nbd /tmp/uk-nbd.cfg CMDLINE="ip=192.0.2.2/24 path=map persistent=1 indirect=256" ||
                    fail "render uk-nbd"
                with_tsc /tmp/uk-nbd.cfg > /tmp/uk-nbd-bench.cfg
                create_dd uk-nbd /tmp/uk-nbd-bench.cfg "blkback: serving" ;;
        esac
        DOMS="$DOMS $b"
    done
    for b in $NBD; do attach "$b" "$(target_of "$b")"; done
    run_group "$NBD"
    teardown "$NBD"
fi
pass
