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
    sed -e "s/@CMDLINE@/crashtest=$how/" -e "s/@NAME@/$dom/" /etc/xen/testbed/uk-crash.cfg > /tmp/$dom.cfg
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
pass
