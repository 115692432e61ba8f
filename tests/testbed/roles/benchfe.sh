# Role "benchfe": the benchmark's frontend in a Linux PVH domU (`cargo xtask bench
# --frontend domu`). Runs each command dom0 writes to data/bench/cmd ("<seq> <command>")
# and answers with its output, exit code and seq in data/bench/{out,rc,done}. blkload comes
# in a second initramfs appended to this one.
load_mod xen-blkfront max_indirect_segments=256 || echo "INFO benchfe: no xen-blkfront"
D=data/bench
xenstore-write $D/cmd "0 true" $D/done 0
echo "INFO benchfe ready: $(command -v blkload || echo no blkload)"
xenstore-write $D/ready 1
last=0
while :; do
    c=$(xenstore-read $D/cmd 2>/dev/null) || { sleep 0.2; continue; }
    seq=${c%% *}
    if [ "$seq" = "$last" ]; then sleep 0.1; continue; fi
    sh -c "${c#* }" >/tmp/out 2>&1
    rc=$?
    xenstore-write $D/out "$(tail -c 3500 /tmp/out)" $D/rc "$rc" $D/done "$seq"
    last=$seq
done
