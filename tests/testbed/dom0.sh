# Verbs of dom0's scenarios, sourced by dom0's /init after common.sh (XTF's way: configs
# are templates, every variable a placeholder, and the verbs live once here).
#
#   render TEMPLATE OUT [KEY=VALUE | +LINE]...   an xl config from /etc/xen/testbed/
#   uk_create NAME [TEMPLATE [KEY=VALUE | +LINE]...]   the unikernel driver domain: DD, LOG
#   fe_create BACKEND TARGET [ROLE]              the Linux PVH domU fe-linux: FE, FELOG
#   fe_verdict SECONDS                           its FE-RESULT must be PASS
#   be FE DEVID / stat FE DEVID KEY / global KEY / stats_settle   the unikernel's xenstore

# render TEMPLATE OUT [KEY=VALUE | +LINE]...: /etc/xen/testbed/TEMPLATE.cfg with each @KEY@
# or @KEY:default@ replaced by VALUE, else by its default; each +LINE appended. Fails if a
# placeholder is left with no value. (Values are plain words, paths and URIs: no `|`, `&`.)
render() {
    _src=/etc/xen/testbed/$1.cfg _out=$2
    shift 2
    cp "$_src" "$_out" || return 1
    for _kv in "$@"; do
        case $_kv in
            +*) echo "${_kv#+}" >> "$_out" ;;
            *=*)
                _k=${_kv%%=*} _v=${_kv#*=}
                sed -i -e "s|@$_k@|$_v|g" -e "s|@$_k:[^@]*@|$_v|g" "$_out" || return 1 ;;
            *) info "render: '$_kv' is neither KEY=VALUE nor +LINE"; return 1 ;;
        esac
    done
    sed -i 's|@[A-Z_]*:\([^@]*\)@|\1|g' "$_out"
    if grep -q '@[A-Z_]*@' "$_out"; then
        info "render $_src: no value for $(grep -o '@[A-Z_]*@' "$_out" | sort -u | tr '\n' ' ')"
        return 1
    fi
}

# uk_create NAME [TEMPLATE [KEY=VALUE | +LINE]...]: creates the unikernel driver domain
# NAME from TEMPLATE (uk-dd by default; NAME is its @NAME@), follows its console, and waits
# until it serves vbds. Sets DD (its domid), LOG (its console log) and CREATE_MS (how long
# from `xl create` to serving).
uk_create() {
    _name=$1 _tpl=${2:-uk-dd}
    shift
    [ $# -gt 0 ] && shift
    LOG=/var/log/xen/console/guest-$_name.log
    follow_console "$_name"
    render "$_tpl" "/tmp/$_name.cfg" NAME="$_name" "$@" || fail "render $_tpl for $_name"
    _t0=$(now_ms)
    xl create "/tmp/$_name.cfg" || fail "xl create $_name"
    wait_for 60 grep -q "blkback: serving" "$LOG" || fail "$_name never started serving"
    # shellcheck disable=SC2034 # read by the scenarios
    CREATE_MS=$(($(now_ms) - _t0))
    DD=$(xl domid "$_name")
}

# fe_create BACKEND TARGET [ROLE]: creates fe-linux, a Linux PVH domU whose disk xvda is
# TARGET served by BACKEND, running ROLE (fe by default: tests/testbed/roles/), and waits
# until its frontend is Connected. Sets FE (its domid) and FELOG.
fe_create() {
    FELOG=/var/log/xen/console/guest-fe-linux.log
    follow_console fe-linux
    render fe-linux /tmp/fe.cfg BACKEND="$1" TARGET="$2" ROLE="${3:-fe}" || fail "render fe-linux"
    xl create /tmp/fe.cfg || fail "xl create fe-linux"
    FE=$(xl domid fe-linux)
    wait_for 90 xs_is "/local/domain/$FE/device/vbd/51712/state" 4 || fail "domU frontend never Connected"
}

# fe_verdict SECONDS: waits for fe-linux's FE-RESULT line; it must say PASS.
fe_verdict() {
    wait_for "$1" grep -q FE-RESULT "$FELOG" || fail "domU gave no FE-RESULT"
    grep -q "FE-RESULT: PASS" "$FELOG" || fail "domU: $(grep FE-RESULT "$FELOG")"
}

# be FE DEVID: the unikernel's backend directory of that vbd.
be() { echo "/local/domain/$DD/backend/vbd/$1/$2"; }
# stat FE DEVID KEY: a counter the backend publishes (every second) for that vbd; 0 if none.
stat() { xenstore-read "/local/domain/$DD/data/blkback/vbd/$1/$2/$3" 2>/dev/null || echo 0; }
# global KEY: a domain-wide counter of the unikernel; -1 if none.
global() { xenstore-read "/local/domain/$DD/data/blkback/$1" 2>/dev/null || echo -1; }
# stats_settle: long enough for the next publish (once a second, a few writes a turn).
stats_settle() { sleep 1.3; }

# ext4_fill DEV: mkfs.ext4 on DEV, Xen's tools copied onto it (their sums in /tmp/sums),
# unmounted, fsck clean.
ext4_fill() {
    load_mod crc32c_generic || fail "crc32c module"
    load_mod ext4 || fail "ext4 module"
    mkfs.ext4 -q -F "$1" >/dev/null 2>&1 || fail "mkfs.ext4"
    mkdir -p /mnt/x && mount "$1" /mnt/x || fail "mount"
    cp -r /usr/lib/xen-4.17/bin /mnt/x/bin && sync || fail "copy"
    ( cd /usr/lib/xen-4.17/bin && md5sum ./* ) > /tmp/sums
    umount /mnt/x || fail "umount"
    e2fsck -fn "$1" >/dev/null 2>&1 || fail "e2fsck found errors"
}

# ext4_intact DEV WHEN: what ext4_fill copied is still there, and fsck is clean.
ext4_intact() {
    mount "$1" /mnt/x || fail "mount $2"
    ( cd /mnt/x/bin && md5sum -c /tmp/sums >/dev/null ) || fail "files differ $2"
    umount /mnt/x
    e2fsck -fn "$1" >/dev/null 2>&1 || fail "e2fsck $2"
}
