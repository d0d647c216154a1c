# shellcheck shell=bash disable=SC2034  # variables here are used by security.bats
# Helpers for tests/bats/security.bats: a real owner and a real stranger (users made for the
# suite's duration), a real banger-helper per test in a private mount and network namespace,
# root-only decoy files, and the checks every attack ends with. Load after test_helper.
#
# The owner's side of each attack is tests/attack (sec-attack), run with the owner's uid,
# primary group and supplementary groups (setpriv --init-groups) inside the test's namespace.

ATTACK="$BIN/sec-attack"

# ---------------------------------------------------------------------------------------------
# The suite's users (setup_file / teardown_file).

# sec_free_id DB START: the first number from START that DB (passwd or group) does not use.
sec_free_id() {
    local db=$1 id=$2
    while getent "$db" "$id" >/dev/null; do id=$((id + 1)); done
    echo "$id"
}

# sec_retry CMD...: useradd and friends refuse while another process holds /etc/passwd's lock.
sec_retry() {
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        "$@" && return 0
        sleep 0.5
    done
    return 1
}

# sec_users_create: the owner (primary group != uid, one supplementary group) and a stranger.
sec_users_create() {
    local tag=$$
    SEC_CREATED="$BATS_FILE_TMPDIR/created-ids"
    : >"$SEC_CREATED"
    export SEC_OWNER="bgr-sec-owner-$tag" SEC_STRANGER="bgr-sec-stranger-$tag"
    local og="bgr-sec-og-$tag" ox="bgr-sec-ox-$tag" sg="bgr-sec-sg-$tag"
    local ogid oxgid sgid ouid suid
    ogid=$(sec_free_id group 46100)
    sec_retry groupadd -g "$ogid" "$og" && echo "group $og" >>"$SEC_CREATED"
    oxgid=$(sec_free_id group $((ogid + 1)))
    sec_retry groupadd -g "$oxgid" "$ox" && echo "group $ox" >>"$SEC_CREATED"
    sgid=$(sec_free_id group $((oxgid + 1)))
    sec_retry groupadd -g "$sgid" "$sg" && echo "group $sg" >>"$SEC_CREATED"
    ouid=$(sec_free_id passwd 45100)
    sec_retry useradd -u "$ouid" -g "$og" -G "$ox" -m -d "$BATS_FILE_TMPDIR/home-owner" \
        -s /usr/sbin/nologin "$SEC_OWNER" && echo "user $SEC_OWNER" >>"$SEC_CREATED"
    suid=$(sec_free_id passwd $((ouid + 1)))
    sec_retry useradd -u "$suid" -g "$sg" -m -d "$BATS_FILE_TMPDIR/home-stranger" \
        -s /usr/sbin/nologin "$SEC_STRANGER" && echo "user $SEC_STRANGER" >>"$SEC_CREATED"
    export SEC_OWNER_UID SEC_OWNER_GID SEC_OWNER_XGID SEC_STRANGER_UID SEC_STRANGER_GID SEC_CREATED
    SEC_OWNER_UID=$(id -u "$SEC_OWNER")
    SEC_OWNER_GID=$(id -g "$SEC_OWNER")
    SEC_OWNER_XGID=$oxgid
    SEC_STRANGER_UID=$(id -u "$SEC_STRANGER")
    SEC_STRANGER_GID=$(id -g "$SEC_STRANGER")
    [ "$SEC_OWNER_UID" != "$SEC_OWNER_GID" ] || { echo "owner uid == gid" >&2; return 1; }
}

# sec_users_remove: removes exactly the users and groups sec_users_create made.
sec_users_remove() {
    local kind name
    [ -f "${SEC_CREATED:-/nonexistent}" ] || return 0
    # Users first (their primary groups cannot go while they exist).
    while read -r kind name; do
        [ "$kind" = user ] && { sec_retry userdel -r "$name" 2>/dev/null || sec_retry userdel "$name" || true; }
    done <"$SEC_CREATED"
    while read -r kind name; do
        [ "$kind" = group ] && { sec_retry groupdel "$name" || true; }
    done <"$SEC_CREATED"
    return 0
}

# ---------------------------------------------------------------------------------------------
# Per test: state, namespace, helper.

# sec_setup: a world-traversable temp dir (the owner must reach its files), the owner's state
# dir with an image, root's dirs, a private mount+network namespace and a helper inside it.
sec_setup() {
    banger_env
    require_root
    [ -n "${SEC_OWNER_UID:-}" ] || skip "the suite's users were not made (setup_file failed)"
    [ -x "$STANDIN_FIRECRACKER" ] && [ -x "$STANDIN_JAILER" ] && [ -x "$ATTACK" ] ||
        skip "stand-ins or sec-attack not built (cargo build --workspace)"
    NS_PID="" SEC_WATCHERS=() SEC_CGROUP=""
    SEC_TMP="$(mktemp -d /tmp/banger-sec.XXXXXX)"
    chmod 0755 "$SEC_TMP"
    export BANGER_STATE_DIR="$SEC_TMP/state" BANGER_RUN_DIR="$SEC_TMP/run"
    export BANGER_JAIL_DIR="$SEC_TMP/jail" BANGER_ROOT_DIR="$SEC_TMP/root"
    export BANGER_CONFIG_DIR="$SEC_TMP/etc" BANGER_HELPER_SOCKET="$SEC_TMP/helper.sock"
    export BANGER_FIRECRACKER="$STANDIN_FIRECRACKER" BANGER_JAILER="$STANDIN_JAILER"
    mkdir -p "$BANGER_STATE_DIR/images/tiny" "$BANGER_STATE_DIR/vms" "$BANGER_RUN_DIR" \
        "$BANGER_CONFIG_DIR" "$SEC_TMP/decoys" "$SEC_TMP/owner"
    mkdir -m 1777 "$SEC_TMP/tmp"
    printf 'not really a kernel\n' >"$BANGER_STATE_DIR/images/tiny/vmlinux"
    mkfs.ext4 -q -F "$BANGER_STATE_DIR/images/tiny/rootfs.ext4" 8M >/dev/null
    echo '{"name":"tiny","boot_args":"console=ttyS0"}' >"$BANGER_STATE_DIR/images/tiny/image.json"
    # The owner's own things: its state (records, VM dirs, images), its run dir, a scratch dir.
    chown -R "$SEC_OWNER_UID:$SEC_OWNER_GID" "$BANGER_STATE_DIR" "$BANGER_RUN_DIR" "$SEC_TMP/owner"
    chmod -R u+rwX,go+rX "$BANGER_STATE_DIR"
    touch "$SEC_TMP/owner/answers" "$SEC_TMP/owner/watch.log"
    chown "$SEC_OWNER_UID:$SEC_OWNER_GID" "$SEC_TMP/owner/answers" "$SEC_TMP/owner/watch.log"
    : >"$SEC_TMP/decoys.reg"
    : >"$SEC_TMP/tokens"
    : >"$SEC_TMP/trees.reg"
    touch "$SEC_TMP/go"
    VM="s$$-${BATS_TEST_NUMBER}v"
    sec_ns_start
    sec_start_helper
    sec_mark
}

sec_ns_start() {
    unshare -m -n --propagation private sleep 100000 3>&- &
    NS_PID=$!
    local _
    for _ in $(seq 1 100); do
        if [ "$(readlink /proc/$NS_PID/ns/mnt)" != "$(readlink /proc/self/ns/mnt)" ] &&
            [ "$(readlink /proc/$NS_PID/ns/net)" != "$(readlink /proc/self/ns/net)" ]; then
            in_ns ip link set lo up
            return 0
        fi
        sleep 0.01
    done
    echo "namespaces did not come up" >&2
    return 1
}

# in_ns CMD...: CMD as root in the test's namespaces.
in_ns() {
    nsenter -t "$NS_PID" -m -n -- "$@"
}

# as_owner CMD...: CMD as the owner (uid, primary group, supplementary groups) in the test's
# namespaces.
as_owner() {
    nsenter -t "$NS_PID" -m -n -- setpriv --reuid="$SEC_OWNER_UID" --regid="$SEC_OWNER_GID" \
        --init-groups -- "$ATTACK" run "$@"
}

# sec_start_helper [banger-helper flags]: the helper in the test's namespaces, owner by name,
# TMPDIR of its own. Redirections on the call (e.g. 7<file) reach the helper.
# shellcheck disable=SC2120  # flags are passed by some tests only
sec_start_helper() {
    nsenter -t "$NS_PID" -m -n -- env TMPDIR="$SEC_TMP/tmp" banger-helper \
        --socket "$BANGER_HELPER_SOCKET" --owner "$SEC_OWNER" "$@" \
        2>>"$BATS_TEST_TMPDIR/helper.log" 3>&- &
    HELPER_PID=$!
    local _
    for _ in $(seq 1 250); do
        [ -S "$BANGER_HELPER_SOCKET" ] && root_call '{"op":"ping"}' 2>/dev/null | grep -q '"ok":true' && return 0
        kill -0 "$HELPER_PID" 2>/dev/null || { cat "$BATS_TEST_TMPDIR/helper.log" >&2; return 1; }
        sleep 0.02
    done
    echo "helper did not come up" >&2
    return 1
}

# root_call JSON: one request as root; prints the answer.
root_call() {
    printf '%s\n' "$1" | socat -t 60 - "UNIX-CONNECT:$BANGER_HELPER_SOCKET"
}

# owner_call JSON: one request as the owner; prints the answer and keeps it in the answers log
# (checked for decoy content at the end).
owner_call() {
    printf '%s\n' "$1" | as_owner socat -t 60 - "UNIX-CONNECT:$BANGER_HELPER_SOCKET" |
        tee -a "$SEC_TMP/owner/answers"
}

# owner_call_within SECS JSON: owner_call that gives up after SECS (prints nothing then).
owner_call_within() {
    printf '%s\n' "$2" | timeout "$1" nsenter -t "$NS_PID" -m -n -- setpriv --reuid="$SEC_OWNER_UID" \
        --regid="$SEC_OWNER_GID" --init-groups -- "$ATTACK" run socat -t "$1" - \
        "UNIX-CONNECT:$BANGER_HELPER_SOCKET" |
        tee -a "$SEC_TMP/owner/answers"
}

# answer_ok ANSWER: fails, printing the answer, unless it is ok:true.
answer_ok() {
    echo "$1" | jq -e '.ok == true' >/dev/null 2>&1 || { echo "expected ok, got: $1" >&2; return 1; }
}

# answer_code ANSWER CODE...: fails unless the answer is an error with one of the codes.
answer_code() {
    local a=$1 c got
    shift
    got=$(echo "$a" | jq -r 'if .ok == false then .error.code else "ok" end' 2>/dev/null)
    for c in "$@"; do [ "$got" = "$c" ] && return 0; done
    echo "expected code $* , got: $a" >&2
    return 1
}

# ---------------------------------------------------------------------------------------------
# Decoys: root-only files the owner must never gain anything from.

sec_token() {
    head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# sec_register FILE [TOKEN]: remembers FILE's owner, group, mode, type and content; TOKEN (a
# text inside it) must never reach the owner.
sec_register() {
    local f=$1 tok=${2:-}
    printf '%s\t%s\t%s\n' "$f" "$(stat -c '%u:%g:%a:%F' "$f")" "$(sha256sum <"$f" | cut -d' ' -f1)" >>"$SEC_TMP/decoys.reg"
    [ -z "$tok" ] || echo "$tok" >>"$SEC_TMP/tokens"
}

# sec_decoy NAME [UID:GID [MODE [DIR]]]: a decoy file (default root:root 0600 in the decoy
# dir, which only root can write); prints its path.
sec_decoy() {
    local name=$1 own=${2:-0:0} mode=${3:-0600} dir=${4:-$SEC_TMP/decoys} tok
    tok="BGR-SEC-SECRET-$(sec_token)"
    mkdir -p "$dir"
    printf '%s %s\nroot only: the owner must not read, write, own or mount over this file\n' "$tok" "$name" >"$dir/$name"
    chown "$own" "$dir/$name"
    chmod "$mode" "$dir/$name"
    sec_register "$dir/$name" "$tok"
    echo "$dir/$name"
}

# sec_tree DIR: remembers every path below DIR with its owner and mode (nothing may appear,
# vanish or change there).
sec_tree() {
    echo "$1" >>"$SEC_TMP/trees.reg"
    find "$1" -printf '%p %u:%g %m %y\n' | sort >"$SEC_TMP/tree.$(echo "$1" | tr / _)"
}

# sec_mark: the mounts of the test's namespace now (compared at the end).
sec_mark() {
    cat "/proc/$NS_PID/mountinfo" >"$SEC_TMP/mounts.before"
}

# ---------------------------------------------------------------------------------------------
# The checks every attack ends with.

sec_check_decoys() {
    local f want sha now nsha bad=0
    while IFS=$'\t' read -r f want sha; do
        if ! in_ns test -e "$f"; then
            echo "DECOY GONE: $f (was $want)" >&2
            bad=1
            continue
        fi
        now=$(in_ns stat -c '%u:%g:%a:%F' "$f")
        nsha=$(in_ns sha256sum "$f" | cut -d' ' -f1)
        if [ "$now" != "$want" ]; then
            echo "DECOY CHANGED: $f owner:group:mode:type was $want, now $now" >&2
            bad=1
        fi
        if [ "$nsha" != "$sha" ]; then
            echo "DECOY CHANGED: $f content differs; now begins: $(in_ns head -c 100 "$f" | tr -c '[:print:]' '.')" >&2
            echo "  and ends: $(in_ns tail -c 200 "$f" | tr -c '[:print:]' '.')" >&2
            bad=1
        fi
    done <"$SEC_TMP/decoys.reg"
    local d now_t
    while read -r d; do
        now_t=$(in_ns find "$d" -printf '%p %u:%g %m %y\n' 2>/dev/null | sort)
        if [ "$now_t" != "$(cat "$SEC_TMP/tree.$(echo "$d" | tr / _)")" ]; then
            echo "TREE CHANGED: $d" >&2
            diff <(cat "$SEC_TMP/tree.$(echo "$d" | tr / _)") <(echo "$now_t") >&2 || true
            bad=1
        fi
    done <"$SEC_TMP/trees.reg"
    return $bad
}

# No process of the owner holds a descriptor on a decoy.
sec_check_fds() {
    local p fd link f bad=0
    for p in /proc/[0-9]*; do
        [ "$(stat -c %u "$p" 2>/dev/null)" = "$SEC_OWNER_UID" ] || continue
        for fd in "$p"/fd/*; do
            link=$(readlink "$fd" 2>/dev/null) || continue
            while IFS=$'\t' read -r f _ _; do
                if [ "${link% (deleted)}" = "$f" ]; then
                    echo "OWNER HOLDS A DECOY: pid ${p#/proc/} ($(cat "$p/comm" 2>/dev/null)) fd ${fd##*/} -> $link" >&2
                    bad=1
                fi
            done <"$SEC_TMP/decoys.reg"
        done
    done
    return $bad
}

# No decoy's secret text reached the owner: not in an answer, not in a file the owner owns.
sec_check_leaks() {
    local tok bad=0 f
    while read -r tok; do
        [ -n "$tok" ] || continue
        if grep -qF "$tok" "$SEC_TMP/owner/answers" 2>/dev/null; then
            echo "LEAKED IN AN ANSWER: $(grep -F "$tok" "$SEC_TMP/owner/answers" | head -1 | cut -c1-400)" >&2
            bad=1
        fi
        while read -r f; do
            echo "LEAKED INTO THE OWNER'S FILE: $f" >&2
            bad=1
        done < <(in_ns find "$BANGER_STATE_DIR" "$SEC_TMP/owner" "$BANGER_JAIL_DIR" -xdev -type f \
            -user "$SEC_OWNER_UID" ! -path "$SEC_TMP/owner/answers" -exec grep -laF -- "$tok" {} + 2>/dev/null)
    done <"$SEC_TMP/tokens"
    return $bad
}

# No mount appeared in the test's namespace, and none of the test's own went away. (Mounts
# outside the test's dirs may vanish: a private copy of another test's `ip netns` mount is
# removed when that namespace goes, which is no business of this test.)
sec_check_mounts() {
    local bad=0 line
    while read -r line; do
        echo "MOUNT APPEARED in the test's namespace: $line" >&2
        bad=1
    done < <(grep -vxF -f "$SEC_TMP/mounts.before" "/proc/$NS_PID/mountinfo")
    while read -r line; do
        case "$(echo "$line" | cut -d' ' -f5)" in
        "$SEC_TMP"/*)
            echo "MOUNT WENT AWAY in the test's namespace: $line" >&2
            bad=1
            ;;
        esac
    done < <(grep -vxF -f "/proc/$NS_PID/mountinfo" "$SEC_TMP/mounts.before")
    return $bad
}

# The helper lives and answers root's ping within 1 s.
sec_check_ping() {
    local t0 t1 out ms
    kill -0 "$HELPER_PID" 2>/dev/null || { echo "HELPER DIED" >&2; return 1; }
    t0=$(date +%s%N)
    out=$(printf '{"op":"ping"}\n' | timeout 2 socat -t 2 - "UNIX-CONNECT:$BANGER_HELPER_SOCKET" 2>"$SEC_TMP/ping.err")
    [ -n "$out" ] || out=$(cat "$SEC_TMP/ping.err")
    t1=$(date +%s%N)
    ms=$(((t1 - t0) / 1000000))
    if [[ "$out" != *'"ok":true'* ]] || [ "$ms" -ge 1000 ]; then
        echo "ROOT'S PING: ${out:-no answer} after $ms ms (want ok within 1000 ms)" >&2
        return 1
    fi
}

# sec_assert_invariants: every check, all reported, fails if any failed.
sec_assert_invariants() {
    local bad=0
    sec_check_decoys || bad=1
    sec_check_fds || bad=1
    sec_check_leaks || bad=1
    sec_check_mounts || bad=1
    sec_check_ping || bad=1
    return $bad
}

# held_decoys PID...: the descriptors these processes hold on a decoy.
held_decoys() {
    local p fd l
    for p in "$@"; do
        for fd in /proc/"$p"/fd/*; do
            l=$(readlink "$fd" 2>/dev/null) || continue
            if cut -f1 "$SEC_TMP/decoys.reg" | grep -qxF -- "${l% (deleted)}"; then
                echo "pid $p ($(cat "/proc/$p/comm" 2>/dev/null)) fd ${fd##*/} -> $l"
            fi
        done
    done
}

# ---------------------------------------------------------------------------------------------
# The owner's tools.

# sec_steal ARGS...: `sec-attack steal --loop` as the owner in the background until
# sec_watch_stop.
sec_steal() {
    as_owner "$ATTACK" steal --loop --while "$SEC_TMP/go" "$@" >>"$SEC_TMP/owner/watch.log" 2>&1 3>&- &
    SEC_WATCHERS+=($!)
}

# sec_watch ARGS...: `sec-attack swap` as the owner in the background until sec_watch_stop.
sec_watch() {
    as_owner "$ATTACK" swap --while "$SEC_TMP/go" "$@" >>"$SEC_TMP/owner/watch.log" 2>&1 3>&- &
    SEC_WATCHERS+=($!)
}

# sec_flip ARGS...: `sec-attack flip` as the owner in the background until sec_watch_stop.
sec_flip() {
    as_owner "$ATTACK" flip --while "$SEC_TMP/go" "$@" >>"$SEC_TMP/owner/watch.log" 2>&1 3>&- &
    SEC_WATCHERS+=($!)
}

sec_watch_stop() {
    rm -f "$SEC_TMP/go"
    local p
    for p in "${SEC_WATCHERS[@]}"; do wait "$p" 2>/dev/null || true; done
    SEC_WATCHERS=()
    touch "$SEC_TMP/go"
    if [ -n "${SEC_DEBUG:-}" ]; then
        echo "--- the owner's tools said (last lines):" >&2
        tail -n "${SEC_DEBUG_LINES:-8}" "$SEC_TMP/owner/watch.log" >&2
        echo "--- answers by code:" >&2
        jq -r 'if .ok then "ok" else .error.code + ": " + (.error.message | .[0:160]) end' \
            "$SEC_TMP/owner/answers" 2>/dev/null | sed "s|$SEC_TMP|T|g; s|s[0-9]*-[0-9]*v|VM|g" | sort | uniq -c | sort -rn | head >&2
    fi
}

# sec_loop COUNT ARGS...: `sec-attack loop` as the owner; prints its summary line.
sec_loop() {
    local n=$1
    shift
    as_owner "$ATTACK" loop --count "$n" --socket "$BANGER_HELPER_SOCKET" \
        --answers "$SEC_TMP/owner/answers" "$@"
}

# launch_json NAME LAUNCHER [EXTRA]: a jail.launch request for the owner's VM NAME.
launch_json() {
    printf '{"op":"jail.launch","args":{"name":"%s","launcher":"%s","kernel":"%s","rootfs":"%s","vcpus":1,"mem_mib":128%s}}' \
        "$1" "$2" "$BANGER_STATE_DIR/images/tiny/vmlinux" "$BANGER_STATE_DIR/vms/$1/disk.ext4" "${3:-}"
}

teardown_json() {
    printf '{"op":"jail.teardown","args":{"name":"%s"}}' "$1"
}

# owner_vm NAME: the owner's VM dir with a disk of its own (what banger-vm new and a copy of
# the image would give).
owner_vm() {
    as_owner mkdir -p "$BANGER_STATE_DIR/vms/$1"
    as_owner cp "$BANGER_STATE_DIR/images/tiny/rootfs.ext4" "$BANGER_STATE_DIR/vms/$1/disk.ext4"
}

# sec_layout NAME LAUNCHER: launches the owner's VM once, reads where the helper put things
# (L_DIR, L_ROOT, L_PIDFILE, L_SOCKET, L_LOG, L_ROOTFS, L_CONSOLE) from its answer, and tears
# it down again. The attacks then target those paths, so they follow any layout.
sec_layout() {
    local a
    a=$(owner_call "$(launch_json "$1" "$2")")
    answer_ok "$a" || return 1
    L_DIR=$(echo "$a" | jq -r '.result.dir')
    L_ROOT=$(echo "$a" | jq -r '.result.chroot // .result.dir')
    L_PIDFILE=$(echo "$a" | jq -r '.result.pidfile // empty')
    L_SOCKET=$(echo "$a" | jq -r '.result.socket // empty')
    L_LOG=$(echo "$a" | jq -r --arg r "$L_ROOT" '.result.log // ($r + "/firecracker.log")')
    L_CONSOLE=$(echo "$a" | jq -r --arg r "$L_ROOT" '.result.console // ($r + "/console.log")')
    L_ROOTFS=$(echo "$a" | jq -r --arg r "$L_ROOT" '.result.rootfs // "/rootfs" | if startswith($r) then . else $r + . end')
    a=$(owner_call "$(teardown_json "$1")")
    answer_ok "$a" || return 1
}

# rel PATH: PATH relative to L_ROOT.
rel() {
    echo "${1#"$L_ROOT"/}"
}

# ---------------------------------------------------------------------------------------------

sec_teardown() {
    [ -n "${SEC_TMP:-}" ] && rm -f "$SEC_TMP/go"
    local p _ left
    # Every process of the owner is this test's (the owner exists only for this suite).
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        left=0
        for p in /proc/[0-9]*; do
            [ "$(stat -c %u "$p" 2>/dev/null)" = "${SEC_OWNER_UID:-none}" ] || continue
            kill -9 "${p#/proc/}" 2>/dev/null || true
            left=1
        done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    stop_helper
    if [ -n "${NS_PID:-}" ]; then
        kill "$NS_PID" 2>/dev/null || true
        wait "$NS_PID" 2>/dev/null || true
    fi
    if [ -n "${SEC_CGROUP:-}" ] && [ -d "$SEC_CGROUP" ]; then
        rmdir "$SEC_CGROUP" 2>/dev/null || true
    fi
    # cgroup v2 hosts: the jailer's per-VM cgroups of this test's VMs.
    for p in /sys/fs/cgroup/banger/"s$$-${BATS_TEST_NUMBER}"*; do
        [ -d "$p" ] && rmdir "$p" 2>/dev/null
    done
    if [ -n "${SEC_TMP:-}" ] && ! grep -qF " $SEC_TMP" /proc/self/mountinfo; then
        rm -rf "$SEC_TMP"
    fi
    banger_teardown
}
