# Helpers for tests/bats/net.bats. Load after test_helper.
#
# Every test works in network namespaces it creates (names banger-t-PID-TEST-ROLE):
#   H  the "host" banger manages (bridge, taps, table inet banger, the helper when used)
#   W  a "world" namespace behind H's uplink (veth up0 <-> w0, 198.51.100.0/24, TEST-NET-2),
#      H's default route points there, so NAT and forwards are tested without leaving the
#      test namespaces
#   G  a "guest": a veth pair with one end on H's bridge stands in for a VM's tap
# Nothing is created in the real host namespace; teardown checks that by comparing the
# host's `ip -j link` and `nft -j list ruleset` with a snapshot taken in setup.

host_snapshot() {
    ip -j link show | jq -S 'map(del(.operstate, .linkmode, .qdisc, .txqlen))'
    nft -j list ruleset 2>/dev/null | jq -S '.nftables | map(select(has("metainfo") | not))'
}

net_env() {
    HOST_BEFORE=""
    NS_G="" NS_W="" NS_H=""
    banger_env
    require_root
    command -v nft >/dev/null || skip "nft not installed"
    HOST_BEFORE="$(host_snapshot)"
    NS_PREFIX="banger-t-$$-${BATS_TEST_NUMBER}"
    NS_H="$NS_PREFIX-h"
    NS_W="$NS_PREFIX-w"
    NS_G="$NS_PREFIX-g"
    NET_PIDS=()
    ip netns add "$NS_H"
    ip -n "$NS_H" link set lo up
    # A new namespace copies IPv4 forwarding from the host's (net.core.devconf_inherit_init_net
    # 0): on a Docker or libvirt host it starts on. The tests' H starts off, as a fresh host
    # does, whatever the host runs; tests of a host with forwarding on set it themselves.
    ip netns exec "$NS_H" sh -c 'echo 0 >/proc/sys/net/ipv4/ip_forward'
}

# in_h CMD...: runs CMD inside the host namespace H.
in_h() { ip netns exec "$NS_H" "$@"; }
in_w() { ip netns exec "$NS_W" "$@"; }
in_g() { ip netns exec "$NS_G" "$@"; }

# net_world: namespace W behind H's uplink up0; H's default route goes there.
net_world() {
    ip netns add "$NS_W"
    ip -n "$NS_W" link set lo up
    ip -n "$NS_H" link add up0 type veth peer name w0 netns "$NS_W"
    ip -n "$NS_H" addr add 198.51.100.1/24 dev up0
    ip -n "$NS_H" link set up0 up
    ip -n "$NS_W" addr add 198.51.100.2/24 dev w0
    ip -n "$NS_W" link set w0 up
    ip -n "$NS_H" route add default via 198.51.100.2
}

# net_guest IP MAC: namespace G on H's bridge (a veth standing in for the VM's tap).
net_guest() {
    local ip=$1 mac=$2 bridge=${3:-banger0}
    ip netns add "$NS_G"
    ip -n "$NS_G" link set lo up
    ip -n "$NS_H" link add gv0 type veth peer name g0 netns "$NS_G"
    ip -n "$NS_H" link set gv0 master "$bridge" up
    ip -n "$NS_G" link set g0 address "$mac"
    ip -n "$NS_G" addr add "$ip/24" dev g0
    ip -n "$NS_G" link set g0 up
    ip -n "$NS_G" route add default via "${ip%.*}.1"
}

# mk_vm NAME...: VM records in the store (what banger-vm new would have written).
mk_vm() {
    local n
    for n in "$@"; do
        mkdir -p "$BANGER_STATE_DIR/vms/$n"
        printf '{"v":1,"type":"vm","name":"%s","spec":{"image":"x"}}\n' "$n" >"$BANGER_STATE_DIR/vms/$n/vm.json"
    done
}

# bg_in NS CMD...: starts CMD in namespace NS in the background; its PID is remembered.
bg_in() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@" >>"$BATS_TEST_TMPDIR/bg.log" 2>&1 &
    NET_PIDS+=($!)
}

# wait_listen NS PORT [tcp|udp]: until something listens on PORT in NS.
wait_listen() {
    local flag=-ltn
    [ "${3:-tcp}" = udp ] && flag=-lun
    for _ in $(seq 1 100); do
        ip netns exec "$1" ss -H "$flag" "sport = :$2" | grep -q . && return 0
        sleep 0.05
    done
    echo "nothing listens on $2 in $1" >&2
    return 1
}

# ping_in NS ADDR: one ICMP echo (ping when installed, else a raw-socket echo in python3).
ping_in() {
    if command -v ping >/dev/null; then
        ip netns exec "$1" ping -c 1 -W 2 "$2"
        return
    fi
    ip netns exec "$1" python3 - "$2" <<'PY'
import os, socket, struct, sys, time
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
ident = os.getpid() & 0xffff
hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"banger"
pkt = struct.pack("!BBHHH", 8, 0, csum(hdr), ident, 1) + b"banger"
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(2)
s.sendto(pkt, (sys.argv[1], 0))
end = time.time() + 2
while time.time() < end:
    data, addr = s.recvfrom(1500)
    icmp = data[(data[0] & 0xf) * 4:]
    if addr[0] == sys.argv[1] and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
        print("reply from", addr[0]); sys.exit(0)
sys.exit(1)
PY
}

# ns_state NS: the namespace's links and ruleset, for before/after comparisons.
ns_state() {
    ip netns exec "$1" ip -j link show | jq -S 'map(del(.operstate, .linkmode, .qdisc, .txqlen))'
    ip netns exec "$1" nft -j list ruleset | jq -S '.nftables | map(select(has("metainfo") | not))'
}

net_teardown() {
    local p ns
    for p in "${NET_PIDS[@]:-}"; do
        [ -n "$p" ] || continue
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    stop_helper
    for ns in "${NS_G:-}" "${NS_W:-}" "${NS_H:-}"; do
        [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
    done
    banger_teardown
    [ -n "${HOST_BEFORE:-}" ] || return 0
    local after
    after="$(host_snapshot)"
    if [ "$after" != "$HOST_BEFORE" ]; then
        echo "the host's links or ruleset changed:" >&2
        diff <(echo "$HOST_BEFORE") <(echo "$after") >&2 || true
        return 1
    fi
}

# start_helper_in NS [flags...]: a banger-helper inside namespace NS on this test's socket.
start_helper_in() {
    local ns=$1
    shift
    # One helper per test: one this test started before (in setup) is stopped first, or it
    # would answer the wait below and outlive the test.
    stop_helper
    ip netns exec "$ns" banger-helper --socket "$BANGER_HELPER_SOCKET" "$@" 2>>"$BATS_TEST_TMPDIR/helper.log" &
    HELPER_PID=$!
    for _ in $(seq 1 200); do
        helper_answers && return 0
        kill -0 "$HELPER_PID" 2>/dev/null || { cat "$BATS_TEST_TMPDIR/helper.log" >&2; return 1; }
        sleep 0.02
    done
    echo "helper did not come up" >&2
    return 1
}
