#!/usr/bin/env bats
# banger-net as a user runs it, as root, inside network namespaces the tests create
# (see net_helper.bash). The step runs in process as root in the namespace (no helper
# answers), except where a test starts a real banger-helper inside the namespace.

load test_helper
load net_helper

setup() {
    net_env
}

teardown() {
    net_teardown
}

@test "net up: makes bridge banger0 with the gateway address, a tap owned by the owner uid on it, and table inet banger" {
    export BANGER_OWNER_UID=$OWNER_UID
    mk_vm a
    run in_h banger-net up a
    assert_success
    echo "$output" | jq -e '.name == "a" and .spec.image == "x"'
    echo "$output" | jq -e '.net | .bridge == "banger0" and .tap == "bgr0ac80002" and .mac == "06:00:0a:c8:00:02"
        and .ip == "10.200.0.2" and .prefix == 24 and .gateway == "10.200.0.1" and (.dns | type == "array") and .forwards == []'
    # Saved to the store too.
    jq -e '.net.ip == "10.200.0.2"' "$BANGER_STATE_DIR/vms/a/vm.json"
    in_h ip -j -4 addr show dev banger0 | jq -e '.[0].addr_info[0] | .local == "10.200.0.1" and .prefixlen == 24'
    in_h ip -j link show dev banger0 | jq -e '.[0].address == "06:00:0a:c8:00:01" and (.[0].flags | index("UP"))'
    in_h ip -j -d link show dev bgr0ac80002 | jq -e --argjson u "$OWNER_UID" \
        '.[0].master == "banger0" and .[0].linkinfo.info_data.type == "tap" and .[0].linkinfo.info_data.user == $u and .[0].linkinfo.info_data.group == $u'
    in_h nft -j list tables | jq -e '[.nftables[] | select(.table) | .table | "\(.family) \(.name)"] == ["inet banger"]'
    in_h nft list table inet banger | grep -F 'ip saddr 10.200.0.0/24 ip daddr != 10.200.0.0/24 oifname != "banger0" masquerade'
    [ "$(in_h cat /proc/sys/net/ipv4/ip_forward)" = 1 ]
    # The ledger has every resource.
    ledger_jq -e '[.entries[] | "\(.vm) \(.kind) \(.id)"] | sort == ["- bridge banger0", "- nft-table inet banger", "- sysctl net.ipv4.ip_forward", "a addr 10.200.0.2", "a tap bgr0ac80002"]'
    # The hosts file resolves the name.
    run cat "$BANGER_RUN_DIR/hosts"
    assert_line $'10.200.0.2\ta a.banger'
}

@test "net up: uses the default route's interface as the NAT uplink" {
    net_world
    mk_vm a
    in_h banger-net up a >/dev/null
    in_h nft list table inet banger | grep -F 'oifname "up0" masquerade'
}

@test "net up: the NAT is left alone when it is in place, and put back when its rule, a chain or the table went missing" {
    net_world
    mk_vm a b
    in_h banger-net up a >/dev/null
    local before
    before=$(in_h nft -j -a list table inet banger)
    # In place: a second VM changes nothing in the table (same handles).
    in_h banger-net up b >/dev/null
    [ "$(in_h nft -j -a list table inet banger)" = "$before" ]
    # The masquerade rule deleted by hand: up puts it back.
    local h
    h=$(in_h nft -j -a list chain inet banger postrouting | jq '.nftables[] | select(.rule) | .rule.handle')
    in_h nft delete rule inet banger postrouting handle "$h"
    in_h banger-net up a >/dev/null
    in_h nft list chain inet banger postrouting | grep -F 'oifname "up0" masquerade comment "banger-nat"'
    # A chain deleted: back too.
    in_h nft delete chain inet banger prerouting
    in_h banger-net up a >/dev/null
    in_h nft list chain inet banger prerouting >/dev/null
    # The whole table: back, and still banger's (the ledger has it).
    in_h nft delete table inet banger
    in_h banger-net up b >/dev/null
    in_h nft list chain inet banger postrouting | grep -F 'masquerade comment "banger-nat"'
    # The uplink changed: the rule follows it.
    in_h ip link add up9 type veth peer name up8
    in_h ip link set up9 up
    in_h ip route replace default dev up9
    in_h banger-net up a >/dev/null
    in_h nft list chain inet banger postrouting | grep -F 'oifname "up9" masquerade'
}

@test "net up: two VMs get different addresses, MACs and taps; up again allocates nothing new" {
    mk_vm a b
    run in_h banger-net up a b
    assert_success
    [ "$(echo "$output" | jq -r .net.ip | sort -u | wc -l)" -eq 2 ]
    [ "$(echo "$output" | jq -r .net.mac | sort -u | wc -l)" -eq 2 ]
    [ "$(echo "$output" | jq -r .net.tap | sort -u | wc -l)" -eq 2 ]
    first="$output"
    run in_h banger-net up a b
    assert_success
    [ "$(echo "$output" | jq -cS .net)" = "$(echo "$first" | jq -cS .net)" ]
    [ "$(ledger_jq '[.entries[] | select(.kind == "addr")] | length')" -eq 2 ]
    # A tap removed behind banger's back is put back by up.
    in_h ip link del bgr0ac80003
    run in_h banger-net up b
    assert_success
    in_h ip -j link show dev bgr0ac80003 | jq -e '.[0].master == "banger0"'
}

@test "net up: 30 parallel ups through a helper inside the namespace give 30 distinct addresses" {
    start_helper_in "$NS_H"
    local i pids=()
    for i in $(seq 1 30); do mk_vm "v$i"; done
    for i in $(seq 1 30); do
        banger-net up "v$i" >"$BATS_TEST_TMPDIR/up.$i" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
    cat "$BATS_TEST_TMPDIR"/up.* | jq -r .net.ip | sort -u >"$BATS_TEST_TMPDIR/ips"
    [ "$(wc -l <"$BATS_TEST_TMPDIR/ips")" -eq 30 ]
    [ "$(cat "$BATS_TEST_TMPDIR"/up.* | jq -r .net.tap | sort -u | wc -l)" -eq 30 ]
    [ "$(in_h ip -j link show master banger0 | jq length)" -eq 30 ]
    run banger-net list
    assert_success
    [ "$(echo "$output" | jq -r 'select(.type == "net") | .ip' | sort -u | wc -l)" -eq 30 ]
    [ "$(grep -c '\.banger$' "$BANGER_RUN_DIR/hosts")" -eq 30 ]
    # And 30 parallel downs leave nothing.
    pids=()
    for i in $(seq 1 30); do banger-net down "v$i" >/dev/null & pids+=($!); done
    for i in "${pids[@]}"; do wait "$i"; done
    run in_h ip -j link show
    refute_output --partial bgr
    refute_output --partial banger0
    run in_h nft list tables
    assert_output ""
}

@test "net: a veth guest on the bridge pings the gateway and reaches a listener in another namespace through NAT" {
    net_world
    mk_vm a
    rec=$(in_h banger-net up a)
    net_guest "$(jq -r .net.ip <<<"$rec")" "$(jq -r .net.mac <<<"$rec")"
    run ping_in "$NS_G" 10.200.0.1
    assert_success
    bg_in "$NS_W" socat TCP-LISTEN:9000,reuseaddr,fork SYSTEM:'echo peer=$SOCAT_PEERADDR'
    wait_listen "$NS_W" 9000
    # W has no route to 10.200.0.0/24: only the masquerade makes this work.
    run in_g socat -T 3 - TCP:198.51.100.2:9000 </dev/null
    assert_success
    assert_output "peer=198.51.100.1"
}

@test "net forward: a forwarded host port reaches a listener behind the bridge; --remove takes it away" {
    net_world
    mk_vm a
    rec=$(in_h banger-net up a)
    net_guest "$(jq -r .net.ip <<<"$rec")" "$(jq -r .net.mac <<<"$rec")"
    bg_in "$NS_G" socat TCP-LISTEN:80,reuseaddr,fork SYSTEM:'echo hello from the guest'
    wait_listen "$NS_G" 80
    run in_h banger-net forward a 8080:80 5353:53/udp
    assert_success
    echo "$output" | jq -e '.net.forwards == [{"host_port":8080,"guest_port":80,"proto":"tcp"},{"host_port":5353,"guest_port":53,"proto":"udp"}]'
    jq -e '.net.forwards | length == 2' "$BANGER_STATE_DIR/vms/a/vm.json"
    ledger_jq -e '[.entries[] | select(.kind == "nft-rule") | .id] | sort == ["tcp/8080", "udp/5353"]'
    run in_w socat -T 3 - TCP:198.51.100.1:8080 </dev/null
    assert_success
    assert_output "hello from the guest"
    # Idempotent: the same forward again changes nothing.
    run in_h banger-net forward a 8080:80
    assert_success
    [ "$(in_h nft -a list table inet banger | grep -c 'tcp/8080')" -eq 2 ]
    run in_h banger-net list --table
    assert_line --regexp '^a +10\.200\.0\.2 .* 8080:80/tcp,5353:53/udp$'
    run in_h banger-net forward --remove a 8080
    assert_success
    echo "$output" | jq -e '.net.forwards == [{"host_port":5353,"guest_port":53,"proto":"udp"}]'
    run in_w socat -T 2 - TCP:198.51.100.1:8080,connect-timeout=2 </dev/null
    assert_failure
    run in_h banger-net forward --remove a 8080
    assert_failure 1
    assert_output --partial "a has no forward of tcp/8080"
}

@test "net down: removes exactly what up and forward made (ip -j link and nft -j ruleset equal before and after)" {
    net_world
    before=$(ns_state "$NS_H")
    fwd_before=$(in_h cat /proc/sys/net/ipv4/ip_forward)
    mk_vm a b
    in_h banger-net up a b >/dev/null
    in_h banger-net forward a 2222:22 >/dev/null
    in_h banger-net forward b 8443:443 >/dev/null
    run in_h banger-net down a
    assert_success
    echo "$output" | jq -e 'has("net") | not'
    jq -e 'has("net") | not' "$BANGER_STATE_DIR/vms/a/vm.json"
    # b still has its network, so the bridge and the table stay; a's pieces are gone.
    in_h ip link show banger0 >/dev/null
    run in_h ip -j link show
    refute_output --partial bgr0ac80002
    run in_h nft list table inet banger
    refute_output --partial 2222
    assert_output --partial 8443
    run in_h banger-net down b
    assert_success
    [ "$(ns_state "$NS_H")" = "$before" ]
    [ "$(in_h cat /proc/sys/net/ipv4/ip_forward)" = "$fwd_before" ]
    ledger_jq -e '.entries == []'
    run cat "$BANGER_RUN_DIR/hosts"
    refute_output --partial a.banger
    # down again is a no-op that succeeds.
    run in_h banger-net down a
    assert_success
}

@test "net down --keep-bridge: the bridge and table stay until a plain down" {
    before=$(ns_state "$NS_H")
    mk_vm a
    in_h banger-net up a >/dev/null
    run in_h banger-net down --keep-bridge a
    assert_success
    in_h ip link show banger0 >/dev/null
    in_h nft list table inet banger >/dev/null
    run in_h ip -j link show
    refute_output --partial bgr
    # The next up reuses the kept bridge; a plain down removes everything.
    in_h banger-net up a >/dev/null
    in_h banger-net down a >/dev/null
    [ "$(ns_state "$NS_H")" = "$before" ]
}

@test "net down: takes records on stdin (the banger down pipeline) and forwards failed records" {
    mk_vm a
    in_h banger-net up a >/dev/null
    run in_h bash -c 'banger-vm status a | banger-net down'
    assert_success
    echo "$output" | jq -e '.name == "a" and (has("net") | not)'
    run in_h bash -c "printf '%s\n' '{\"v\":1,\"type\":\"vm\",\"name\":\"a\",\"error\":{\"step\":\"jail\",\"code\":\"x\",\"message\":\"m\"}}' | banger-net down"
    assert_failure 1
    echo "$output" | jq -e '.error.step == "jail"'
}

@test "net up: an overlapping subnet is refused with a clear error and leaves nothing behind" {
    ip -n "$NS_H" link add dummy0 type bridge
    ip -n "$NS_H" addr add 10.200.0.77/16 dev dummy0
    before=$(ns_state "$NS_H")
    mk_vm a
    run in_h banger-net up a
    assert_failure 1
    assert_output --partial "subnet 10.200.0.0/24 overlaps address 10.200.0.77/16 on dummy0"
    assert_output --partial "BANGER_SUBNET"
    echo "$output" | grep '^{' | jq -e '.error.step == "net" and .error.code == "subnet_overlap"'
    [ "$(ns_state "$NS_H")" = "$before" ]
    jq -e 'has("net") | not' "$BANGER_STATE_DIR/vms/a/vm.json"
    ledger_jq -e '.entries == []'
    # A route overlaps too; another subnet works.
    ip -n "$NS_H" addr flush dev dummy0
    ip -n "$NS_H" link set dummy0 up
    ip -n "$NS_H" route add 10.200.0.0/20 dev dummy0
    run in_h banger-net up a
    assert_failure 1
    assert_output --partial "overlaps route 10.200.0.0/20"
    BANGER_SUBNET=10.201.0.0/24 run in_h banger-net up a
    assert_success
    echo "$output" | jq -e '.net.ip == "10.201.0.2" and .net.gateway == "10.201.0.1"'
    BANGER_SUBNET=10.201.0.0/24 in_h banger-net down a >/dev/null
    # A malformed subnet is a clear error too.
    BANGER_SUBNET=10.201.0.1/24 run in_h banger-net up a
    assert_failure 1
    assert_output --partial "host bits are set (did you mean 10.201.0.0/24?)"
}

@test "net up: a tap name collision with an interface banger did not make is refused and leaves nothing behind" {
    ip -n "$NS_H" link add bgr0ac80002 type bridge
    before=$(ns_state "$NS_H")
    mk_vm a
    run in_h banger-net up a
    assert_failure 1
    assert_output --partial "interface bgr0ac80002 already exists and banger did not create it"
    assert_output --partial "ip link del bgr0ac80002"
    [ "$(ns_state "$NS_H")" = "$before" ]
    # Refused before anything was recorded: no entry (not even a ledger file).
    [ ! -e "$BANGER_ROOT_DIR/ledger.json" ] || ledger_jq -e '.entries == []'
    # down never touches it either.
    run in_h banger-net down a
    assert_success
    in_h ip link show bgr0ac80002 >/dev/null
}

@test "net: a bridge or an nft table banger did not make is never adopted or deleted" {
    mk_vm a
    ip -n "$NS_H" link add banger0 type bridge
    run in_h banger-net up a
    assert_failure 1
    assert_output --partial "bridge banger0 exists but banger did not create it"
    ip -n "$NS_H" link del banger0
    in_h nft add table inet banger
    run in_h banger-net up a
    assert_failure 1
    assert_output --partial "nft delete table inet banger"
    in_h nft list table inet banger >/dev/null
    run in_h ip -j link show
    refute_output --partial banger0
}

@test "net forward: a host port in use, already forwarded, or a VM without a network is refused" {
    mk_vm a b c
    in_h banger-net up a b >/dev/null
    bg_in "$NS_H" socat TCP-LISTEN:7000,reuseaddr SYSTEM:true
    wait_listen "$NS_H" 7000
    run in_h banger-net forward a 7000:80
    assert_failure 1
    assert_output --partial "host port tcp/7000 is in use by a socket on this host"
    echo "$output" | grep '^{' | jq -e '.error.code == "port_in_use"'
    in_h banger-net forward a 7001:80 >/dev/null
    run in_h banger-net forward b 7001:80
    assert_failure 1
    assert_output --partial "host port tcp/7001 is already forwarded to a"
    run in_h banger-net forward c 7002:80
    assert_failure 1
    assert_output --partial "c has no network: run 'banger up c'"
    run in_h banger-net forward a 70000:80
    assert_failure 2
}

@test "net up: a VM without a record is a clear error" {
    run in_h banger-net up ghost
    assert_failure 1
    assert_output --partial 'no VM named "ghost"'
    echo "$output" | grep '^{' | jq -e '.name == "ghost" and .error.code == "not_found"'
    run in_h ip -j link show
    refute_output --partial banger0
}

@test "net up: an address still held by a record is never handed out, even when the ledger lost it" {
    mk_vm a b
    jq '. + {"net": {"ip": "10.200.0.2"}}' "$BANGER_STATE_DIR/vms/a/vm.json" >"$BATS_TEST_TMPDIR/a.json"
    mv "$BATS_TEST_TMPDIR/a.json" "$BANGER_STATE_DIR/vms/a/vm.json"
    run in_h banger-net up b
    assert_success
    echo "$output" | jq -e '.net.ip == "10.200.0.3"'
    # a's record asks for its address back and gets it.
    run in_h banger-net up a
    assert_success
    echo "$output" | jq -e '.net.ip == "10.200.0.2"'
}

@test "net up: guests get the host's upstream resolvers, or --dns" {
    mk_vm a b
    want=$(awk '$1 == "nameserver" && $2 ~ /^[0-9.]+$/ && $2 !~ /^127\./ {print $2}' /etc/resolv.conf | jq -R . | jq -sc .)
    run in_h banger-net up a
    assert_success
    [ "$(echo "$output" | jq -c .net.dns)" = "$want" ]
    run in_h banger-net up --dns 192.0.2.53 --dns 192.0.2.54 b
    assert_success
    echo "$output" | jq -e '.net.dns == ["192.0.2.53", "192.0.2.54"]'
    run in_h banger-net up --dns nope b
    assert_failure 2
}

@test "net helper ops: names, ports, protocols and addresses are validated" {
    start_helper_in "$NS_H"
    run helper_call '{"op":"net.up","args":{"vm":"../etc"}}'
    assert_output --partial '"code":"invalid_name"'
    run helper_call '{"op":"net.up","args":{"vm":"a","ip":"192.0.2.9"}}'
    assert_output --partial '"code":"invalid_args"'
    run helper_call '{"op":"net.up","args":{"vm":"a","dev":"eth0"}}'
    assert_output --partial '"code":"invalid_args"'
    run helper_call '{"op":"net.forward","args":{"vm":"a","host_port":0,"guest_port":80}}'
    assert_output --partial 'out of range'
    run helper_call '{"op":"net.forward","args":{"vm":"a","host_port":80,"guest_port":80,"proto":"icmp"}}'
    assert_output --partial '"code":"invalid_args"'
    run helper_call '{"op":"net.forward","args":{"vm":"a","host_port":80,"guest_port":80}}'
    assert_output --partial '"code":"not_found"'
    run helper_call '{"op":"net.down","args":{"vm":"nobody"}}'
    assert_output --partial '"ok":true'
    run helper_call '{"op":"net.list"}'
    assert_output '{"ok":true,"result":{"bridge":null,"nat":false,"vms":[]}}'
    run in_h ip -j link show
    refute_output --partial banger0
}

@test "banger-net: --help lists the commands; unknown flags, commands and bad specs exit 2" {
    run banger-net --help
    assert_success
    assert_output --partial "banger-net up [NAME...]"
    assert_output --partial "--keep-bridge"
    run banger-net --bogus
    assert_failure 2
    run banger-net frobnicate
    assert_failure 2
    assert_output --partial "unknown command"
    run banger-net list --dns 1.2.3.4
    assert_failure 2
    run banger-net forward a
    assert_failure 2
    run banger-net forward a 80:80/sctp
    assert_failure 2
    assert_output --partial "not tcp or udp"
}

@test "net up/down on a host with ip_forward=1 (a Docker or libvirt host): left on, no sysctl in the ledger (issue 13, item 3)" {
    net_world
    in_h sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'
    mk_vm a
    run in_h banger-net up a
    assert_success
    ledger_jq -e '[.entries[] | select(.kind == "sysctl")] == []'
    [ "$(in_h cat /proc/sys/net/ipv4/ip_forward)" = 1 ]
    run in_h banger-net down a
    assert_success
    # Down leaves forwarding as the host had it: on.
    [ "$(in_h cat /proc/sys/net/ipv4/ip_forward)" = 1 ]
    ledger_jq -e '.entries == []'
}

@test "net up/down next to another tool's bridge, NAT table and forwarding (a Docker host): theirs untouched (issue 13, item 3)" {
    net_world
    in_h sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'
    # What Docker makes: docker0 with 172.17.0.1/16, its own NAT table and a forward chain.
    in_h ip link add docker0 type bridge
    in_h ip addr add 172.17.0.1/16 dev docker0
    in_h ip link set docker0 up
    in_h nft -f - <<'NFT'
table ip nat {
    chain POSTROUTING { type nat hook postrouting priority srcnat; policy accept; ip saddr 172.17.0.0/16 oifname != "docker0" masquerade; }
}
table ip filter {
    chain FORWARD { type filter hook forward priority filter; policy drop; iifname "docker0" accept; }
}
NFT
    local theirs
    theirs=$(in_h nft -j list table ip nat; in_h nft -j list table ip filter; in_h ip -j addr show dev docker0)
    mk_vm a
    run in_h banger-net up a
    assert_success
    echo "$output" | jq -e '.net.ip == "10.200.0.2"'
    run in_h banger-net down a
    assert_success
    [ "$(in_h nft -j list table ip nat; in_h nft -j list table ip filter; in_h ip -j addr show dev docker0)" = "$theirs" ]
    [ "$(in_h cat /proc/sys/net/ipv4/ip_forward)" = 1 ]
    run in_h ip link show banger0
    assert_failure
}

@test "net forward on a terminal: the VM's forwards for people, not the record; --json gives it (issue 13, item 9)" {
    command -v script >/dev/null || skip "script (util-linux) is not installed"
    net_world
    mk_vm a
    in_h banger-net up a >/dev/null
    run script -qec "ip netns exec $NS_H banger-net forward a 8080:80" /dev/null
    assert_success
    assert_output --partial "a (10.200.0.2): host port 8080 -> 80/tcp"
    refute_output --partial '{"v":1'
    run script -qec "ip netns exec $NS_H banger-net forward a 5353:53/udp --json" /dev/null
    assert_output --partial '"forwards":['
}

# wait_no_link NS PATTERN: until no link of NS matches PATTERN (5 s at most).
wait_no_link() {
    for _ in $(seq 1 250); do
        ip netns exec "$1" ip -o link show | grep -q "$2" || return 0
        sleep 0.02
    done
    ip netns exec "$1" ip -o link show >&2
    return 1
}

@test "net down through the helper: the tap is retired (renamed, off the bridge) and removed after the answer; an up right after makes a fresh one (issue 14)" {
    before=$(ns_state "$NS_H")
    start_helper_in "$NS_H"
    mk_vm a b
    banger-net up a b >/dev/null
    tap=$(jq -r .net.tap "$BANGER_STATE_DIR/vms/a/vm.json")
    [[ "$tap" == bgr* ]]
    BANGER_TIMING=1 run banger-net down a
    assert_success
    assert_output --partial "tap-retire"
    refute_output --partial "tap-del"
    # While the retired tap exists, the ledger holds it (as a shared entry, off the bridge).
    ledger_jq -e --arg t "$tap" 'all(.entries[]; .id != $t)'
    # The same address again at once: a fresh tap of the same name, on the bridge.
    banger-net up a >/dev/null
    [ "$(jq -r .net.tap "$BANGER_STATE_DIR/vms/a/vm.json")" = "$tap" ]
    in_h ip -j link show dev "$tap" | jq -e '.[0].master == "banger0"'
    # The retired one goes, and so does its entry.
    wait_no_link "$NS_H" bgz
    for _ in $(seq 1 100); do
        ledger_jq -e 'all(.entries[]; .vm != "-" or .kind != "tap")' >/dev/null && break
        sleep 0.05
    done
    ledger_jq -e 'all(.entries[]; .vm != "-" or .kind != "tap")'
    # A retirement that finds its name taken (down, up, down within the kernel's removal,
    # here an interface of someone else's) removes the tap at once, and never touches theirs.
    in_h ip tuntap add dev "bgz${tap#bgr}" mode tap
    BANGER_TIMING=1 run banger-net down a
    assert_success
    assert_output --partial "tap-del"
    in_h ip link show dev "bgz${tap#bgr}" >/dev/null
    in_h ip link del "bgz${tap#bgr}"
    banger-net down b >/dev/null
    wait_no_link "$NS_H" bgz
    [ "$(ns_state "$NS_H")" = "$before" ]
    for _ in $(seq 1 100); do
        ledger_jq -e '.entries == []' >/dev/null && break
        sleep 0.05
    done
    ledger_jq -e '.entries == []'
}

@test "net down: a helper that dies between the ledger write and the retirement leaks nothing: the next helper removes the tap (issue 14)" {
    before=$(ns_state "$NS_H")
    BANGER_TEST_CRASH_AT=net.down:retire start_helper_in "$NS_H"
    mk_vm a b
    banger-net up a b >/dev/null
    tap=$(jq -r .net.tap "$BANGER_STATE_DIR/vms/a/vm.json")
    run banger-net down a
    assert_failure
    wait "$HELPER_PID" || true
    HELPER_PID=""
    # The ledger names the tap as retired; the tap still has its old name.
    ledger_jq -e --arg t "$tap" 'any(.entries[]; .vm == "-" and .kind == "tap" and .data.retired == $t)'
    in_h ip link show dev "$tap" >/dev/null
    # The next helper removes it (under its old name) and the entry; b's tap stays.
    start_helper_in "$NS_H"
    wait_no_link "$NS_H" "$tap"
    for _ in $(seq 1 100); do
        ledger_jq -e 'all(.entries[]; .vm != "-" or .kind != "tap")' >/dev/null && break
        sleep 0.05
    done
    ledger_jq -e 'all(.entries[]; .vm != "-" or .kind != "tap")'
    grep -q "removed 1 tap(s) an earlier helper had retired" "$BATS_TEST_TMPDIR/helper.log"
    tap_b=$(jq -r .net.tap "$BANGER_STATE_DIR/vms/b/vm.json")
    in_h ip link show dev "$tap_b" >/dev/null
    # a is down as far as the helper knows: its record is put right by a down again.
    banger-net down a b >/dev/null
    wait_no_link "$NS_H" bgz
    [ "$(ns_state "$NS_H")" = "$before" ]
}
