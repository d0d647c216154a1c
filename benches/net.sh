#!/usr/bin/env bash
# Benchmark of banger-net: prints numbers, asserts nothing.
#
#   sudo benches/net.sh            # N=200 VMs, release binaries if built, else debug
#   sudo BENCH_VMS=50 BENCH_HELPER=1 benches/net.sh
#
# Everything runs inside a network namespace this script creates (and deletes on exit):
# the bridge, taps and `table inet banger` never touch the host. State, run and ledger
# dirs are a temp dir, removed on exit. With BENCH_HELPER=1 the steps go through a
# banger-helper started inside the namespace; otherwise they run in process as root.
#
# Prints:
#   1. one VM's `up` + `down` on an empty host (bridge and table made and removed each time),
#      and with the bridge kept (--keep-bridge), as the mean of BENCH_REPEAT runs;
#   2. how `up` and `down` grow as VMs accumulate on one bridge, from 1 to BENCH_VMS.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "${BANGER_BIN:-}" ]; then
    if [ -x "$REPO/target/release/banger-net" ]; then BANGER_BIN="$REPO/target/release"; else BANGER_BIN="$REPO/target/debug"; fi
fi
N=${BENCH_VMS:-200}
REPEAT=${BENCH_REPEAT:-20}
[ "$(id -u)" -eq 0 ] || { echo "benches/net.sh: needs root (network namespaces, nftables)" >&2; exit 1; }
[ -x "$BANGER_BIN/banger-net" ] || { echo "benches/net.sh: no $BANGER_BIN/banger-net: run cargo build --release first" >&2; exit 1; }

NS="banger-bench-$$"
TMP="$(mktemp -d /tmp/banger-bench.XXXXXX)"
HELPER_PID=""
cleanup() {
    [ -n "$HELPER_PID" ] && kill "$HELPER_PID" 2>/dev/null && wait "$HELPER_PID" 2>/dev/null
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

export PATH="$BANGER_BIN:$PATH"
export BANGER_STATE_DIR="$TMP/state" BANGER_RUN_DIR="$TMP/run" BANGER_ROOT_DIR="$TMP/root"
export BANGER_CONFIG_DIR="$TMP/etc" BANGER_HELPER_SOCKET="$TMP/helper.sock"
unset BANGER_SUBNET BANGER_BRIDGE
# A /16 so 200+ VMs fit on one bridge.
export BANGER_SUBNET=10.200.0.0/16
mkdir -p "$BANGER_STATE_DIR/vms" "$BANGER_RUN_DIR"

ip netns add "$NS"
ip -n "$NS" link set lo up
if [ "${BENCH_HELPER:-0}" = 1 ]; then
    ip netns exec "$NS" banger-helper --socket "$BANGER_HELPER_SOCKET" 2>"$TMP/helper.log" &
    HELPER_PID=$!
    for _ in $(seq 1 200); do [ -S "$BANGER_HELPER_SOCKET" ] && break; sleep 0.02; done
    MODE="through banger-helper"
else
    MODE="in process (root, no helper)"
fi

for i in $(seq 1 "$N"); do
    mkdir -p "$BANGER_STATE_DIR/vms/v$i"
    printf '{"v":1,"type":"vm","name":"v%s"}\n' "$i" >"$BANGER_STATE_DIR/vms/v$i/vm.json"
done

now() { date +%s%N; }
ms() { awk -v ns="$1" -v n="${2:-1}" 'BEGIN { printf "%.1f", ns / n / 1e6 }'; }
net() { ip netns exec "$NS" banger-net "$@" >/dev/null; }

echo "banger-net benchmark: $MODE, binaries $BANGER_BIN, $(nproc) cpus"
echo

# 1. One VM, empty host.
up_ns=0 down_ns=0
for _ in $(seq 1 "$REPEAT"); do
    t0=$(now); net up v1; t1=$(now); net down v1; t2=$(now)
    up_ns=$((up_ns + t1 - t0)); down_ns=$((down_ns + t2 - t1))
done
echo "one VM, bridge made and removed each time (mean of $REPEAT):"
echo "  up $(ms $up_ns "$REPEAT") ms   down $(ms $down_ns "$REPEAT") ms   up+down $(ms $((up_ns + down_ns)) "$REPEAT") ms"
up_ns=0 down_ns=0
for _ in $(seq 1 "$REPEAT"); do
    t0=$(now); net up v1; t1=$(now); net down --keep-bridge v1; t2=$(now)
    up_ns=$((up_ns + t1 - t0)); down_ns=$((down_ns + t2 - t1))
done
net down v1
echo "one VM, bridge kept (mean of $REPEAT):"
echo "  up $(ms $up_ns "$REPEAT") ms   down $(ms $down_ns "$REPEAT") ms   up+down $(ms $((up_ns + down_ns)) "$REPEAT") ms"
echo

# 2. Growth: VMs accumulate on one bridge.
declare -a UP DOWN
for i in $(seq 1 "$N"); do
    t0=$(now); net up "v$i"; t1=$(now)
    UP[i]=$((t1 - t0))
done
ip netns exec "$NS" ip -j link show master banger0 | jq length >"$TMP/count"
for i in $(seq "$N" -1 1); do
    t0=$(now); net down "v$i"; t1=$(now)
    DOWN[i]=$((t1 - t0))
done
echo "growth on one bridge ($(cat "$TMP/count") taps at the peak); ms for the VM joining (up) or leaving (down) as the Nth:"
printf '  %6s  %8s  %8s  %8s\n' N up down up+down
for n in 1 2 5 10 25 50 100 150 200 300 500; do
    [ "$n" -le "$N" ] || continue
    # Mean over a small window ending at n, to smooth noise.
    lo=$((n > 4 ? n - 4 : 1)) u=0 d=0 k=0
    for j in $(seq "$lo" "$n"); do u=$((u + UP[j])); d=$((d + DOWN[j])); k=$((k + 1)); done
    printf '  %6s  %8s  %8s  %8s\n' "$n" "$(ms $u $k)" "$(ms $d $k)" "$(ms $((u + d)) $k)"
done
total_up=0 total_down=0
for i in $(seq 1 "$N"); do total_up=$((total_up + UP[i])); total_down=$((total_down + DOWN[i])); done
secs() { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e9 }'; }
echo "  all $N one after another: up $(secs $total_up) s, down $(secs $total_down) s"
