#!/usr/bin/env bash
# Benchmark: the time banger adds on top of Firecracker. `banger up` up to the answer to
# InstanceStart, split by step: new | net up | snap create | jail launch | vm start --no-wait
# (then the same as one `banger up --no-wait` pipeline),
# on a loop-mounted XFS (the disks are reflinks; the jails hard-link them), with the bridge
# made beforehand by a resident VM.
# With the Firecracker and jailer TEST STAND-INS (whose API answers take microseconds) by
# default; with the real ones and the rig's tiny guest as kernel when BANGER_TEST_FIRECRACKER
# and BANGER_TEST_JAILER are set. Prints numbers; asserts nothing. Needs root.
#
#   sudo benches/up.sh            # REPS=10 VMs; BANGER_BIN=target/release by default
#   sudo BANGER_TEST_FIRECRACKER=... BANGER_TEST_JAILER=... benches/up.sh
#
# Runs in a network namespace and a private mount namespace of its own, through a real
# helper on a temp socket, with all state under a temp dir removed on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
# What bench_bin and bench_firecracker set (declared here so the script reads whole without
# following the source).
bin="" fc="" jailer="" standin=1 rig=""
# shellcheck source=benches/standin.bash
. "$here/benches/standin.bash"
bench_bin up.sh banger-vm banger-snap banger-net banger-jail banger-image banger-helper
bench_firecracker
kind="TEST STAND-IN firecracker/jailer"
[ "$standin" -eq 1 ] || kind="real Firecracker/jailer, tiny guest"
bench_in_netns up.sh "$0" "$@"
reps=${REPS:-10}
tmp=$(mktemp -d /tmp/banger-up-bench.XXXXXX)
chmod 0755 "$tmp"
x=$tmp/xfs
export PATH="$bin:$PATH"
export BANGER_STATE_DIR=$x/state BANGER_RUN_DIR=$tmp/run BANGER_CONFIG_DIR=$tmp/etc
export BANGER_ROOT_DIR=$tmp/root BANGER_JAIL_DIR=$x/jail BANGER_HELPER_SOCKET=$tmp/helper.sock
# The owner and its group, as `banger system install` records them (no passwd lookup per step).
export BANGER_FIRECRACKER=$fc BANGER_JAILER=$jailer BANGER_OWNER_UID=4343 BANGER_OWNER_GID=4343
helper=""
cleanup() {
    local n
    for n in $(seq 1 "$reps"); do
        banger-vm kill "u$n" 2>/dev/null | banger-jail teardown 2>/dev/null | banger-net down >/dev/null 2>&1 || true
        banger-snap rm "u$n" >/dev/null 2>&1 || true
        banger-vm kill "w$n" 2>/dev/null | banger-jail teardown 2>/dev/null | banger-net down >/dev/null 2>&1 || true
        banger-snap rm "w$n" >/dev/null 2>&1 || true
    done
    banger-net down keep >/dev/null 2>&1 || true
    [ -n "$helper" ] && kill "$helper" 2>/dev/null
    if mountpoint -q "$x" 2>/dev/null; then umount "$x" || umount -l "$x"; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
truncate -s 2G "$tmp/xfs.img"
mkfs.xfs -q -m reflink=1 "$tmp/xfs.img"
mkdir -p "$x"
mount -o loop "$tmp/xfs.img" "$x"
chmod 0755 "$x"
mkdir -p "$BANGER_STATE_DIR" "$BANGER_RUN_DIR" "$tmp/img/etc"
banger-helper --socket "$BANGER_HELPER_SOCKET" --owner 4343 2>/dev/null &
helper=$!
for _ in $(seq 1 200); do [ -S "$BANGER_HELPER_SOCKET" ] && break; sleep 0.01; done
echo image >"$tmp/img/etc/hostname"
mkfs.ext4 -q -F -d "$tmp/img" "$tmp/rootfs.ext4" 64M >/dev/null 2>&1
if [ "$kind" = "TEST STAND-IN firecracker/jailer" ]; then
    {
        printf '\177ELF\002\001\001\000\000\000\000\000\000\000\000\000\002\000\076\000\001\000\000\000'
        head -c 40 /dev/zero
    } >"$tmp/vmlinux"
    truncate -s 4096 "$tmp/vmlinux"
else
    as "$rig/tiny-guest.S" -o "$tmp/tiny.o"
    ld -static -nostdlib -Ttext=0x1000000 -e _start "$tmp/tiny.o" -o "$tmp/vmlinux"
fi
banger-image import default --rootfs "$tmp/rootfs.ext4" --kernel "$tmp/vmlinux" >/dev/null
chmod -R a+rX "$BANGER_STATE_DIR"
# The resident VM: the bridge and NAT exist before the first measured up.
banger-vm new keep --image default | banger-net up >/dev/null

# The owner runs the steps, as people do once `banger system install` made them the owner
# (root running a step also switches to the owner for the owner's files); the helper does
# the privileged parts. The owner's state, run dir and a samples dir of its own:
chown -R 4343:4343 "$BANGER_STATE_DIR" "$BANGER_RUN_DIR"
mkdir -m 0755 "$tmp/m" && chown 4343:4343 "$tmp/m"

# now_us VAR: the time in microseconds into VAR, from bash's own clock (no process, not even
# a subshell: $(...) would fork one, 0.8 ms here, into every figure)
now_us() { printf -v "$1" '%s' "${EPOCHREALTIME/[.,]/}"; }
# measure: every figure as a line "KEY MICROSECONDS" in $tmp/m/samples (run as the owner).
measure() {
    local n t0 t1 t2 t3 t4 t5 own s=$tmp/m
    for n in $(seq 1 "$reps"); do
        now_us t0
        banger-vm new "u$n" --image default >"$s/r0"
        now_us t1
        banger-net up <"$s/r0" >"$s/r1"
        now_us t2
        banger-snap create <"$s/r1" >"$s/r2" 2>/dev/null
        now_us t3
        BANGER_TIMING=1 banger-jail launch <"$s/r2" >"$s/r3" 2>"$s/e3"
        now_us t4
        BANGER_TIMING=1 banger-vm start --no-wait <"$s/r3" >"$s/r4" 2>"$s/e4"
        now_us t5
        # Firecracker's own part, from the timing lines: the jailer until its pidfile,
        # Firecracker until its API answers, and the InstanceStart call. A hand-rolled launch
        # waits for them too.
        own=$(cat "$s/e3" "$s/e4" | grep -oE '(jailer|pidfile|api-wait|InstanceStart) [0-9.]+' \
            | awk '{ t += $2 } END { print t * 1000 }')
        {
            echo "new $((t1 - t0))"
            echo "net $((t2 - t1))"
            echo "snap $((t3 - t2))"
            echo "jail $((t4 - t3))"
            echo "start $((t5 - t4))"
            echo "total $((t5 - t0))"
            jq -r '"instance_start \(.vm.instance_start_ms * 1000)"' "$s/r4"
            echo "firecracker $own"
            awk -v t="$((t5 - t0))" -v f="$own" 'BEGIN { print "banger", t - f }'
        } >>"$s/samples"
    done
    # The same first up as one `banger up --no-wait` (the steps start together and wait on
    # the pipe, as people run them): its wall time, and what of it is Firecracker's.
    for n in $(seq 1 "$reps"); do
        now_us t0
        banger up "w$n" --image default --no-wait --timing >/dev/null 2>"$s/ep"
        now_us t1
        own=$(grep -oE '(jailer|pidfile|api-wait|InstanceStart) [0-9.]+' "$s/ep" \
            | awk '{ t += $2 } END { print t * 1000 }')
        echo "pipe_total $((t1 - t0))" >>"$s/samples"
        awk -v t="$((t1 - t0))" -v f="$own" 'BEGIN { print "pipe_banger", t - f }' >>"$s/samples"
    done
    # Again after `banger down` (the disk stays; jail and network go): what a restart costs.
    for n in $(seq 1 "$reps"); do
        now_us t0
        banger down "u$n" --timeout "$down_timeout" >/dev/null 2>&1
        now_us t1
        banger up "u$n" --no-wait >/dev/null 2>&1
        now_us t2
        echo "down $((t1 - t0))" >>"$s/samples"
        echo "restart $((t2 - t1))" >>"$s/samples"
    done
}
# The tiny guest ignores Ctrl-Alt-Del: with it, --timeout 0 (Ctrl-Alt-Del, then the kill)
# rather than a second's wait; the stand-in's guest honours it at once.
down_timeout=1
[ "$kind" = "TEST STAND-IN firecracker/jailer" ] || down_timeout=0
export tmp reps down_timeout
export -f measure now_us
setpriv --reuid=4343 --regid=4343 --clear-groups -- bash -c 'set -euo pipefail; measure'

# mean_median KEY: "MEAN MEDIAN" in ms of KEY's samples.
mean_median() {
    awk -v k="$1" '$1 == k { print $2 }' "$tmp/m/samples" | sort -n | awk '
        { v[NR] = $1; t += $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              printf "%8.1f ms %8.1f ms", t / NR / 1000, m / 1000 }'
}
row() { printf '  %-28s %s\n' "$1" "$(mean_median "$2")"; }
echo "banger up to InstanceStart, $kind, $reps VMs, 64 MiB image reflinked on XFS, $bin"
echo "(the steps run as the owner, uid 4343; the helper as root)"
printf '  %-28s %8s    %8s\n' "" mean median
for s in new net snap jail start total; do row "$s" "$s"; done
row "(the InstanceStart call)" instance_start
row "of which the jailer," firecracker
printf '  %-28s\n' "  Firecracker start, InstanceStart"
row "and banger itself" banger
echo "the same as one pipeline, banger up --no-wait:"
row "total" pipe_total
row "banger itself" pipe_banger
echo "then, per VM:"
row "banger down --timeout $down_timeout" down
row "banger up again (disk kept)" restart
