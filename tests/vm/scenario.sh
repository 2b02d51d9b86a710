#!/bin/bash
# Runs inside the IPVS test VM (see tests/tests/ipvs_vm.rs, which checks
# what this prints). Each step's output goes between `@@begin NAME` and
# `@@end NAME rc=N` on the console; `@@done` ends the run.
set -u
section() {
    local name=$1
    shift
    echo "@@begin $name"
    "$@" 2>&1
    echo "@@end $name rc=$?"
}
# Polls a command until it succeeds, at most $1 seconds; prints how long it took.
now_ms() { local us=${EPOCHREALTIME/./}; echo $(( us / 1000 )); }
wait_for() {
    local limit=$1 start
    start=$(now_ms)
    shift
    while ! "$@" >/dev/null 2>&1; do
        if (( $(now_ms) - start > limit * 1000 )); then
            echo "timeout after ${limit}s: $*"
            return 1
        fi
        sleep 0.1
    done
    echo "after_ms=$(( $(now_ms) - start ))"
}

ip link set lo up
# Real servers sit behind a dummy link: the test needs routes, not replies.
ip link add d0 type dummy
ip link set d0 up
ip addr add 10.1.0.1/24 dev d0
ip addr add 10.0.0.1/32 dev lo

# An XDP daemon that stopped leaves its program pinned and forwarding; the
# IPVS daemon started next must detach it rather than leave it in front of
# IPVS with maps nobody updates.
printf 'virtual_server 10.9.0.1 80 {\n lvs_sched wrr\n protocol TCP\n real_server 10.1.0.50 80 { }\n}\n' >/vm/x.conf
director -f /vm/x.conf --iface d0 --dataplane xdp --metrics-listen 127.0.0.1:9613 >/vm/director_xdp.log 2>&1 &
xdp_director=$!
section xdp_started wait_for 20 directorctl status
kill $xdp_director
wait $xdp_director
section xdp_pinned bash -c 'ip link show dev d0 | grep prog/xdp'
section xdp_log cat /vm/director_xdp.log

cp /vm/a.conf /vm/current.conf
director -f /vm/current.conf --dataplane ipvs --metrics-listen 127.0.0.1:9612 >/vm/director.log 2>&1 &
director=$!
section started wait_for 20 directorctl status
section xdp_retired bash -c '! ip link show dev d0 | grep prog/xdp'

section ipvsadm_ln ipvsadm -Ln
section ipvsadm_persistent ipvsadm -Ln --persistent-conn
section ipvsadm_timeout ipvsadm -L --timeout
section directorctl_list directorctl list --ipvsadm
section status directorctl status

# A connection entry: a local client's SYN to 10.0.0.1:1 (never answered).
bash -c 'exec 3<>/dev/tcp/10.0.0.1/1' 2>/dev/null &
client=$!
section conn_before wait_for 10 bash -c 'ipvsadm -Lnc | grep -q "10.0.0.1:1 "'
section conns_before ipvsadm -Lnc
cp /vm/b.conf /vm/current.conf
section reload directorctl reload
section conns_after ipvsadm -Lnc
section ipvsadm_reloaded ipvsadm -Ln

section disable directorctl rs disable 10.1.0.11
section ipvsadm_disabled ipvsadm -Ln
section list_disabled directorctl list --ipvsadm
section enable directorctl rs enable 10.1.0.11

section external_delete ipvsadm -d -t 10.0.0.2:80 -r 10.1.0.21:8080
section recovered wait_for 10 bash -c 'ipvsadm -Ln -t 10.0.0.2:80 | grep -q 10.1.0.21:8080'
section ipvsadm_final ipvsadm -Ln
section list_final directorctl list --ipvsadm
# Until here the client's SYN retries keep its entry (and ActiveConn) alive.
kill $client 2>/dev/null

# IPVS folds its per-CPU counters into what it reports every 2 s.
counted_conn() { wget -qO- http://127.0.0.1:9612/metrics | awk '/^director_vs_connections_total/ && /vip="10.0.0.1"/ && /port="1"/ && $NF > 0 { f = 1 } END { exit !f }'; }
section metrics_counted wait_for 10 bash -c "$(declare -f counted_conn); counted_conn"
section metrics wget -qO- http://127.0.0.1:9612/metrics
section director_log cat /vm/director.log

# A restart with the default --dataplane auto, where XDP cannot attach: it
# falls back to IPVS and adopts the table as it is.
kill $director
wait $director
director -f /vm/current.conf --iface nosuch0 --metrics-listen 127.0.0.1:9612 >/vm/director2.log 2>&1 &
section fallback wait_for 20 directorctl status
section ipvsadm_restarted ipvsadm -Ln
section fallback_log cat /vm/director2.log

# Real traffic: client namespace -> VIP on this VM -> IPVS -> real server
# namespace, by NAT (10.0.0.9) and by DR (10.0.0.10, the real holds the VIP).
echo 1 > /proc/sys/net/ipv4/ip_forward
mkdir -p /var && ln -s /run /var/run
# `ip netns exec` remounts /sys, which this initramfs cannot: enter the
# network namespace only.
in_ns() { local ns=$1; shift; nsenter --net=/run/netns/$ns "$@"; }
mkdir -p /www && echo hello-from-rs > /www/index.html
ip netns add rs
ip netns add cl
ip link add vrs type veth peer name eth0 netns rs
ip link add vcl type veth peer name eth0 netns cl
ip addr add 10.2.0.1/24 dev vrs && ip link set vrs up
ip addr add 10.3.0.1/24 dev vcl && ip link set vcl up
ip addr add 10.0.0.9/32 dev lo && ip addr add 10.0.0.10/32 dev lo
ip -n rs addr add 10.2.0.2/24 dev eth0 && ip -n rs link set eth0 up && ip -n rs link set lo up
ip -n rs addr add 10.0.0.10/32 dev lo && ip -n rs route add default via 10.2.0.1
ip -n cl addr add 10.3.0.2/24 dev eth0 && ip -n cl link set eth0 up && ip -n cl route add default via 10.3.0.1
# DR replies come from the VIP, which this VM holds too: they go straight
# to the client over a link of their own, as in any LVS-DR set-up.
ip link add eth1 netns rs type veth peer name eth1 netns cl
ip -n rs addr add 10.4.0.1/24 dev eth1 && ip -n rs link set eth1 up
ip -n cl addr add 10.4.0.2/24 dev eth1 && ip -n cl link set eth1 up
ip -n rs rule add from 10.0.0.10 table 100 && ip -n rs route add default via 10.4.0.2 table 100
in_ns rs busybox httpd -p 8080 -h /www
in_ns rs busybox httpd -p 80 -h /www
cp /vm/c.conf /vm/current.conf
section traffic_reload directorctl reload
# bash's /dev/tcp as the client: busybox's static wget crashes in a netns.
http_get() { timeout 5 bash -c "exec 3<>/dev/tcp/$1/80 && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && cat <&3"; }
section traffic_nat in_ns cl bash -c "$(declare -f http_get); http_get 10.0.0.9"
section traffic_dr in_ns cl bash -c "$(declare -f http_get); http_get 10.0.0.10"
counted() { ipvsadm -Ln --stats -t "$1" | awk '$1 == "->" && $3 > 0 { f = 1 } END { exit !f }'; }
section traffic_counted wait_for 10 bash -c "$(declare -f counted); counted 10.0.0.9:80 && counted 10.0.0.10:80"
# The failing TCP_CHECK first: the two listings below must see one table.
section health_down wait_for 20 bash -c '! ipvsadm -Ln -t 10.0.0.11:80 | grep -q 10.2.0.3:8080'
section health_ipvsadm ipvsadm -Ln -t 10.0.0.11:80
section traffic_stats ipvsadm -Ln --stats --exact
section traffic_list directorctl list --ipvsadm --stats --exact
echo "@@done"
