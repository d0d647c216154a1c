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
export BANGER_FIRECRACKER=$fc BANGER_JAILER=$jailer BANGER_OWNER_UID=4343
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

now_us() { echo "${EPOCHREALTIME/[.,]/}"; } # bash's own clock: no process in the figures
declare -A sum
steps=(new net snap jail start)
for s in "${steps[@]}" total; do sum[$s]=0; done
for n in $(seq 1 "$reps"); do
    t0=$(now_us)
    banger-vm new "u$n" --image default >"$tmp/r0"
    t1=$(now_us)
    banger-net up <"$tmp/r0" >"$tmp/r1"
    t2=$(now_us)
    banger-snap create <"$tmp/r1" >"$tmp/r2" 2>/dev/null
    t3=$(now_us)
    BANGER_TIMING=1 banger-jail launch <"$tmp/r2" >"$tmp/r3" 2>"$tmp/e3"
    t4=$(now_us)
    BANGER_TIMING=1 banger-vm start --no-wait <"$tmp/r3" >"$tmp/r4" 2>"$tmp/e4"
    t5=$(now_us)
    sum[new]=$((sum[new] + t1 - t0))
    sum[net]=$((sum[net] + t2 - t1))
    sum[snap]=$((sum[snap] + t3 - t2))
    sum[jail]=$((sum[jail] + t4 - t3))
    sum[start]=$((sum[start] + t5 - t4))
    sum[total]=$((sum[total] + t5 - t0))
    fc_ms=$(jq -r .vm.instance_start_ms "$tmp/r4")
    sum[fc]=$(awk -v a="${sum[fc]:-0}" -v b="$fc_ms" 'BEGIN {print a + b * 1000}')
    # Firecracker's own part, from the timing lines: the jailer until its pidfile, Firecracker
    # until its API answers, and the InstanceStart call. A hand-rolled launch waits for them too.
    own=$(cat "$tmp/e3" "$tmp/e4" | grep -oE '(jailer|pidfile|api-wait|InstanceStart) [0-9.]+' \
        | awk '{ t += $2 } END { print t * 1000 }')
    sum[firecracker]=$(awk -v a="${sum[firecracker]:-0}" -v b="$own" 'BEGIN {print a + b}')
    {
        echo "new $((t1 - t0))"
        echo "net $((t2 - t1))"
        echo "snap $((t3 - t2))"
        echo "jail $((t4 - t3))"
        echo "start $((t5 - t4))"
        echo "total $((t5 - t0))"
        echo "firecracker $own"
        awk -v t="$((t5 - t0))" -v f="$own" 'BEGIN { print "banger", t - f }'
    } >>"$tmp/samples"
done
# The same first up as one `banger up --no-wait` (the steps start together and wait on the
# pipe, as people run them): its wall time, and what of it is Firecracker's (the same
# timing lines).
pipe_total=()
pipe_own=()
for n in $(seq 1 "$reps"); do
    t0=$(now_us)
    banger up "w$n" --image default --no-wait --timing >/dev/null 2>"$tmp/ep"
    t1=$(now_us)
    own=$(grep -oE '(jailer|pidfile|api-wait|InstanceStart) [0-9.]+' "$tmp/ep" \
        | awk '{ t += $2 } END { print t * 1000 }')
    pipe_total+=($((t1 - t0)))
    pipe_own+=("$own")
done
# Again after `banger down` (the disk stays; jail and network go): what a restart costs.
# The tiny guest ignores Ctrl-Alt-Del: with it, --timeout 0 (Ctrl-Alt-Del, then the kill)
# rather than a second's wait; the stand-in's guest honours it at once.
down_timeout=1
[ "$kind" = "TEST STAND-IN firecracker/jailer" ] || down_timeout=0
down_sum=0
up_sum=0
for n in $(seq 1 "$reps"); do
    t0=$(now_us)
    banger down "u$n" --timeout "$down_timeout" >/dev/null 2>&1
    t1=$(now_us)
    banger up "u$n" --no-wait >/dev/null 2>&1
    t2=$(now_us)
    down_sum=$((down_sum + t1 - t0))
    up_sum=$((up_sum + t2 - t1))
done
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
med_of() { awk -v k="$1" '$1 == k { print $2 }' "$tmp/samples" | median; }
echo "banger up to InstanceStart, $kind, $reps VMs, 64 MiB image reflinked on XFS, $bin"
printf '  %-28s %8s    %8s\n' "" mean median
for s in "${steps[@]}"; do
    awk -v s="$s" -v t="${sum[$s]}" -v n="$reps" -v m="$(med_of "$s")" \
        'BEGIN {printf "  %-28s %8.1f ms %8.1f ms\n", s, t / n / 1000, m / 1000}'
done
awk -v t="${sum[total]}" -v n="$reps" -v m="$(med_of total)" \
    'BEGIN {printf "  %-28s %8.1f ms %8.1f ms\n", "total", t / n / 1000, m / 1000}'
awk -v t="${sum[fc]}" -v n="$reps" 'BEGIN {printf "  %-28s %8.3f ms\n", "(the InstanceStart call)", t / n / 1000}'
awk -v t="${sum[total]}" -v f="${sum[firecracker]}" -v n="$reps" \
    -v mf="$(med_of firecracker)" -v mb="$(med_of banger)" 'BEGIN {
    printf "  %-28s %8.1f ms %8.1f ms\n", "of which the jailer,", f / n / 1000, mf / 1000
    printf "  %-28s\n", "  Firecracker start, InstanceStart"
    printf "  %-28s %8.1f ms %8.1f ms\n", "and banger itself", (t - f) / n / 1000, mb / 1000 }'
pt=$(printf '%s\n' "${pipe_total[@]}" | median)
pb=$(for i in "${!pipe_total[@]}"; do awk -v t="${pipe_total[$i]}" -v f="${pipe_own[$i]}" 'BEGIN { print t - f }'; done | median)
awk -v t="$pt" -v b="$pb" 'BEGIN {
    printf "the same as one pipeline, banger up --no-wait (median of the VMs):\n"
    printf "  %-28s %8.1f ms\n  %-28s %8.1f ms\n", "total", t / 1000, "banger itself", b / 1000 }'
awk -v d="$down_sum" -v u="$up_sum" -v n="$reps" -v to="$down_timeout" 'BEGIN {
    printf "then, per VM:\n  %-28s %8.1f ms\n  %-28s %8.1f ms\n", "banger down --timeout " to, d / n / 1000, "banger up again (disk kept)", u / n / 1000 }'
