#!/usr/bin/env bash
# Benchmark: `banger up` next to a launch a user who knows Firecracker would script by hand.
# In one run, alternating, REPS times each:
#   (a) hand-rolled: a fresh 16 MiB ext4 disk by reflink on an XFS image, a tap on a bridge
#       made beforehand, the jailer, the API calls with curl, then the guest's READY line;
#   (b) `banger up NAME --wait-console READY` of the same guest on the same filesystem;
#   (c) `banger up NAME --wait-console READY` again after `banger down NAME` (disk kept);
# and prints the medians, the ratios b/a and c/a, and the median `banger down` (with the
# stand-in, whose guest honours Ctrl-Alt-Del at once; with the tiny guest, which ignores it,
# `--timeout 0`: Ctrl-Alt-Del, then the kill).
# With the Firecracker and jailer TEST STAND-INS (for (a) too) by default; with the real ones
# and the rig's tiny guest when BANGER_TEST_FIRECRACKER and BANGER_TEST_JAILER are set.
# Prints numbers; asserts nothing. Needs root.
#
#   sudo benches/up-vs-handrolled.sh          # REPS=10; BANGER_BIN=target/release by default
#   sudo BANGER_TEST_FIRECRACKER=... BANGER_TEST_JAILER=... benches/up-vs-handrolled.sh
#
# Runs in a network namespace and a private mount namespace of its own (an XFS image is
# loop-mounted there), through a real helper on a temp socket, everything under a temp dir
# removed on exit. banger's bridge is made beforehand too: a resident VM keeps its network
# up for the whole run, as any other VM on the host would.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# What bench_bin and bench_firecracker set (declared here so the script reads whole without
# following the source).
bin="" fc="" jailer="" standin=1 rig=""
# shellcheck source=benches/standin.bash
. "$here/benches/standin.bash"
bench_bin up-vs-handrolled.sh banger-vm banger-snap banger-net banger-jail banger-image banger-helper banger-console-keeper
for t in curl mkfs.xfs mkfs.ext4; do
    command -v "$t" >/dev/null || { echo "up-vs-handrolled.sh: needs $t" >&2; exit 1; }
done
bench_firecracker
bench_in_netns up-vs-handrolled.sh "$0" "$@"
reps=${REPS:-10}
uid=4343
tmp=$(mktemp -d /tmp/banger-hr-bench.XXXXXX)
chmod 0755 "$tmp"
x=$tmp/xfs
export PATH="$bin:$PATH"
export BANGER_STATE_DIR=$x/state BANGER_RUN_DIR=$tmp/run BANGER_CONFIG_DIR=$tmp/etc
export BANGER_ROOT_DIR=$tmp/root BANGER_JAIL_DIR=$x/jail BANGER_HELPER_SOCKET=$tmp/helper.sock
# The owner and its group, as `banger system install` records them (no passwd lookup per step).
export BANGER_FIRECRACKER=$fc BANGER_JAILER=$jailer BANGER_OWNER_UID=$uid BANGER_OWNER_GID=$uid
helper=""
hand_pid=""
cleanup() {
    local n
    [ -n "$hand_pid" ] && kill -9 "$hand_pid" 2>/dev/null
    for n in $(seq 1 "$reps"); do
        banger-vm kill "b$n" 2>/dev/null | banger-jail teardown 2>/dev/null | banger-net down >/dev/null 2>&1 || true
        banger-snap rm "b$n" >/dev/null 2>&1 || true
    done
    banger-net down keep >/dev/null 2>&1 || true
    [ -n "$helper" ] && kill "$helper" 2>/dev/null
    if mountpoint -q "$x" 2>/dev/null; then umount "$x" || umount -l "$x"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
truncate -s 1G "$tmp/xfs.img"
mkfs.xfs -q -m reflink=1 "$tmp/xfs.img"
mkdir -p "$x"
mount -o loop "$tmp/xfs.img" "$x"
chmod 0755 "$x"
mkdir -p "$BANGER_STATE_DIR" "$BANGER_RUN_DIR" "$tmp/tree/etc" "$x/hand"
banger-helper --socket "$BANGER_HELPER_SOCKET" --owner "$uid" 2>"$tmp/helper.log" &
helper=$!
for _ in $(seq 1 200); do [ -S "$BANGER_HELPER_SOCKET" ] && break; sleep 0.01; done

# The guest: a 16 MiB ext4 root disk (the tiny guest never reads it) and its kernel.
echo image >"$tmp/tree/etc/hostname"
mkfs.ext4 -q -F -d "$tmp/tree" "$x/hand/base.ext4" 16M >/dev/null 2>&1
down_timeout=1
if [ "$standin" -eq 1 ]; then
    ready=STANDIN_GUEST_READY
    kind="TEST STAND-IN firecracker/jailer"
    {
        printf '\177ELF\002\001\001\000\000\000\000\000\000\000\000\000\002\000\076\000\001\000\000\000'
        head -c 40 /dev/zero
    } >"$x/hand/vmlinux"
    truncate -s 4096 "$x/hand/vmlinux"
else
    ready=TINY_GUEST_READY
    kind="real Firecracker/jailer, tiny guest"
    # The tiny guest ignores Ctrl-Alt-Del: no stop timeout, so `banger down` measures banger's
    # own part (Ctrl-Alt-Del sent, then the kill, the jail and the network).
    down_timeout=0
    as "$rig/tiny-guest.S" -o "$tmp/tiny.o"
    ld -static -nostdlib -Ttext=0x1000000 -e _start "$tmp/tiny.o" -o "$x/hand/vmlinux"
fi
banger-image import default --rootfs "$x/hand/base.ext4" --kernel "$x/hand/vmlinux" >/dev/null
chmod -R a+rX "$BANGER_STATE_DIR"
boot_args="console=ttyS0 reboot=k panic=1 pci=off"

# The resident VM: banger's bridge and NAT exist before the first measured up, like the
# hand-rolled launch's bridge.
banger-vm new keep --image default | banger-net up >/dev/null
ip link add hr0 type bridge
ip addr add 10.201.0.1/24 dev hr0
ip link set hr0 up
exec {nap}<> <(:) # `read -t` on this never gets data: a sleep without a process

# now_us VAR: the time in microseconds into VAR, from bash's own clock (no process, not even
# a subshell: $(...) would fork one, 0.8 ms here, into every figure)
now_us() { printf -v "$1" '%s' "${EPOCHREALTIME/[.,]/}"; }

# (a) The hand-rolled launch, as a script would do it: reflink the disk into the chroot,
# link the kernel, make a tap, start the jailer (not daemonized: the console is its
# stdout, read here; Firecracker's own log to a file, as banger does), wait for the API socket, configure with curl, start, read the console
# up to the READY line.
sock=""
api() { curl -sf --unix-socket "$sock" -X PUT -H 'Content-Type: application/json' "http://localhost/$1" -d "$2" >/dev/null; }
hand() {
    local n=$1 id=hand$1 root line
    root=$x/hand/jail/$(basename "$(readlink -f "$fc")")/$id/root
    sock=$root/run/firecracker.socket
    mkdir -p "$root"
    cp --reflink=always "$x/hand/base.ext4" "$root/rootfs"
    ln "$x/hand/vmlinux" "$root/vmlinux"
    : >"$root/firecracker.log"
    chown "$uid:$uid" "$root/rootfs" "$root/firecracker.log"
    ip tuntap add dev "hrtap$n" mode tap user "$uid" group "$uid"
    ip link set "hrtap$n" master hr0 up
    coproc HAND { exec "$jailer" --id "$id" --exec-file "$fc" --uid "$uid" --gid "$uid" \
        --chroot-base-dir "$x/hand/jail" -- --api-sock /run/firecracker.socket \
        --log-path /firecracker.log 2>&1; }
    # shellcheck disable=SC2153 # HAND_PID is set by coproc
    hand_pid=$HAND_PID
    until [ -S "$sock" ]; do read -r -t 0.001 -u "$nap" || true; done
    api machine-config '{"vcpu_count": 1, "mem_size_mib": 512}'
    api boot-source "{\"kernel_image_path\": \"/vmlinux\", \"boot_args\": \"$boot_args\"}"
    api drives/rootfs '{"drive_id": "rootfs", "path_on_host": "/rootfs", "is_root_device": true, "is_read_only": false}'
    api network-interfaces/eth0 "{\"iface_id\": \"eth0\", \"host_dev_name\": \"hrtap$n\", \"guest_mac\": \"06:00:0a:c9:00:02\"}"
    api actions '{"action_type": "InstanceStart"}'
    local seen=""
    while IFS= read -r -t 10 line <&"${HAND[0]}"; do
        case $line in *"$ready"*) return 0 ;; esac
        seen+="$line"$'\n'
    done
    echo "up-vs-handrolled.sh: the hand-rolled guest never printed $ready; its output was:" >&2
    printf '%s' "$seen" >&2
    return 1
}

hand_clean() {
    local n=$1
    kill -9 "$hand_pid" 2>/dev/null || true
    wait "$hand_pid" 2>/dev/null || true
    hand_pid=""
    rm -rf "$x/hand/jail"
    ip link del "hrtap$n" 2>/dev/null || true
}

# TIMING=1: banger's per-step timing lines of the last (b) and (c), printed at the end.
timing=()
[ -z "${TIMING:-}" ] || timing=(--timing)
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
ta=() tb=() tc=() td=()
for n in $(seq 1 "$reps"); do
    now_us t0
    hand "$n"
    now_us t1
    ta+=($((t1 - t0)))
    hand_clean "$n"

    now_us t0
    banger up "b$n" --wait-console "$ready" "${timing[@]}" >/dev/null 2>"$tmp/up-b.err" || { cat "$tmp/up-b.err" >&2; exit 1; }
    now_us t1
    tb+=($((t1 - t0)))

    now_us t0
    banger down "b$n" --timeout "$down_timeout" "${timing[@]}" >/dev/null 2>"$tmp/down.err"
    now_us t1
    td+=($((t1 - t0)))
    banger up "b$n" --wait-console "$ready" "${timing[@]}" >/dev/null 2>"$tmp/up-c.err" || { cat "$tmp/up-c.err" >&2; exit 1; }
    now_us t2
    tc+=($((t2 - t1)))
    banger down "b$n" --timeout 0 >/dev/null 2>&1
    banger rm --yes "b$n" >/dev/null 2>&1
done
ma=$(printf '%s\n' "${ta[@]}" | median)
mb=$(printf '%s\n' "${tb[@]}" | median)
mc=$(printf '%s\n' "${tc[@]}" | median)
md=$(printf '%s\n' "${td[@]}" | median)
echo "to the guest's $ready line, $kind, median of $reps, $bin"
awk -v a="$ma" -v b="$mb" -v c="$mc" -v d="$md" -v t="$down_timeout" 'BEGIN {
    printf "  %-44s %8.1f ms\n", "(a) hand-rolled (jailer + curl)", a / 1000
    printf "  %-44s %8.1f ms   b/a %.2f\n", "(b) banger up --wait-console", b / 1000, b / a
    printf "  %-44s %8.1f ms   c/a %.2f\n", "(c) banger up --wait-console after down", c / 1000, c / a
    printf "  %-44s %8.1f ms\n", "banger down --timeout " t " (before c)", d / 1000
}'
if [ -n "${TIMING:-}" ]; then
    echo "where the time went in the last (b):"
    sed 's/^/  /' "$tmp/up-b.err"
    echo "and in the last (c):"
    sed 's/^/  /' "$tmp/up-c.err"
    echo "and in the last banger down:"
    sed 's/^/  /' "$tmp/down.err"
fi
if [ -n "${VERBOSE:-}" ]; then
    echo "  all (a): ${ta[*]}"
    echo "  all (b): ${tb[*]}"
    echo "  all (c): ${tc[*]}"
    echo "  all down: ${td[*]}"
fi
