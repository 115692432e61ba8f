# Role "fe": a Linux PVH domU whose xvda is served by a driver domain; writes and reads
# it back with O_DIRECT, reports one FE-RESULT line on its console.
load_mod xen-blkfront || { echo "FE-RESULT: FAIL xen-blkfront"; return; }
if ! wait_for 30 test -b /dev/xvda; then echo "FE-RESULT: FAIL no /dev/xvda"; return; fi
ok=1
for bs in 4096 65536 1048576; do
    verify_disk /dev/xvda 8 $bs || ok=0
done
if [ $ok = 1 ]; then echo "FE-RESULT: PASS"; else echo "FE-RESULT: FAIL data mismatch"; fi
# fe_loop=1: keep writing until the domain is destroyed (the backend must survive that).
if [ "${fe_loop:-0}" = 1 ]; then
    echo "FE-LOOP started"
    while :; do dd if=/dev/urandom of=/dev/xvda bs=1048576 count=8 oflag=direct 2>/dev/null; done
fi
