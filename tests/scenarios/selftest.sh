# Scenario selftest: the unikernel boots from `xl create` and exercises xenstore, event
# channels and grant tables against Xen itself; its console must end with
# "Test result: SUCCESS".
LOG=/var/log/xen/console/guest-uk-selftest.log
step "create the unikernel in self-test mode"
follow_console uk-selftest
t0=$(now_ms)
xl create /etc/xen/testbed/uk-selftest.cfg || fail "xl create uk-selftest"
t_created=$(now_ms)
wait_for 30 grep -q "xen-blkback-rs" "$LOG" || fail "no banner on the unikernel's console"
t_banner=$(now_ms)
metric uk.xl_create_s "$(awk -v a="$t0" -v b="$t_created" 'BEGIN { printf "%.2f", (b - a) / 1000 }')"
metric uk.create_to_banner_s "$(awk -v a="$t0" -v b="$t_banner" 'BEGIN { printf "%.2f", (b - a) / 1000 }')"
info "memory of the unikernel: $(xl list uk-selftest 2>/dev/null | awk 'NR == 2 { print $3 }') MiB"

step "self tests on real Xen"
wait_for 120 grep -q "Test result:" "$LOG" || fail "the unikernel printed no result"
sleep 0.5
grep -q "Test result: SUCCESS" "$LOG" || fail "unikernel: $(grep 'Test result:' "$LOG" | tail -n 1)"
for c in "xenstore read/write" "xenstore watch fires" "xenstore transactions" "event channel to self" \
         "grant own page to self" "grant copy both ways" "batch map with one bad ref"; do
    grep -q "selftest: PASS $c" "$LOG" || fail "check '$c' did not pass"
done

step "the unikernel powers off"
wait_for 20 sh -c '! xl list uk-selftest >/dev/null 2>&1' || fail "uk-selftest still running after its result"

# A CPU exception and a panic each end on the console with the reason, and the domain is
# reported crashed (state "c" in xl list) rather than powered off or hung.
for how in ud2 panic; do
    step "crash path: $how"
    dom=uk-crash-$how
    log=/var/log/xen/console/guest-$dom.log
    follow_console "$dom"
    render uk-crash "/tmp/$dom.cfg" NAME="$dom" CMDLINE="crashtest=$how" || fail "render uk-crash"
    xl create /tmp/$dom.cfg || fail "xl create $dom"
    wait_for 30 sh -c "xl list $dom 2>/dev/null | awk 'NR == 2 { exit !(\$5 ~ /c/) }'" ||
        fail "the domain was not reported crashed after $how: $(xl list $dom 2>&1 | tail -n 1)"
    sleep 0.5
    case $how in
        ud2)
            grep -q "CPU EXCEPTION 6 (#UD invalid opcode)" "$log" || fail "no #UD report on the console"
            grep -q "rip=0x" "$log" || fail "no register dump on the console" ;;
        panic)
            grep -q "PANIC: panicked at" "$log" || fail "no panic report on the console"
            grep -q "crashtest: deliberate panic" "$log" || fail "the panic message is missing" ;;
    esac
    xl destroy "$dom" || fail "xl destroy $dom"
done

# The image built without the `net` feature (`cargo xtask build --no-net`): it boots, serves
# a RAM disk, and refuses an nbd:// disk with the reason instead of failing later.
step "the image without networking serves a RAM disk and refuses nbd://"
dom=uk-nonet
uk_create $dom uk-dd KERNEL=/boot/xen-blkback-rs-nonet MEMORY=48
log=$LOG
grep -q "network:" "$log" && fail "the image without networking brought up a network"
load_mod xen-blkfront || fail "xen-blkfront"
xl block-attach 0 "format=raw, vdev=xvdb, access=rw, backend=$dom, target=ram:8M" || fail "attach a RAM disk"
wait_for 30 xs_is /local/domain/0/device/vbd/51728/state 4 || fail "the RAM disk did not connect"
wait_for 10 test -b /dev/xvdb || fail "/dev/xvdb did not appear"
blkload --verify --dev /dev/xvdb --span-mib 8 --ops 20 --seed 5 || fail "the RAM disk does not verify"
# Refused before InitWait, so xl itself reports the failure (and removes the device).
if xl block-attach 0 "format=raw, vdev=xvdc, access=rw, backend=$dom, target=nbd://192.0.2.1/disk0" >/tmp/xl.out 2>&1; then
    fail "xl block-attach of an nbd:// disk succeeded without networking"
fi
info "xl block-attach: $(tail -1 /tmp/xl.out)"
grep -q "51744: Initialising -> Closed (target .nbd://192.0.2.1/disk0.: the driver domain has no network" "$log" ||
    fail "no console line with the reason: $(grep 51744 "$log" | tail -2)"
xl block-detach 0 xvdc >/dev/null 2>&1
xl block-detach 0 xvdb || fail "detach the RAM disk"
xl destroy $dom || fail "xl destroy $dom"
pass
