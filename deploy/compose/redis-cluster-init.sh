#!/bin/sh
# Builds the Redis Cluster of compose.cluster.yaml once: 3 primaries, 3 replicas.
# Idempotent: a cluster that already exists (every later `docker compose up`, the
# nodes keep nodes.conf in their volumes) is left alone; nodes that already know
# each other but are not "ok" yet (a restart still converging) are waited for,
# never re-created. Only when every node is blank does it run --cluster create.
#
#   REDIS_CLUSTER_NODES="ip:port ip:port ..."   (IP addresses: CLUSTER MEET takes no names)
set -eu

NODES=${REDIS_CLUSTER_NODES:?set REDIS_CLUSTER_NODES to the nodes, ip:port each}
WAIT_S=${REDIS_CLUSTER_WAIT_S:-60}

info() { # node field
	redis-cli -h "${1%:*}" -p "${1##*:}" cluster info | tr -d '\r' | sed -n "s/^$2://p"
}

blank=yes
for node in $NODES; do
	if [ "$(info "$node" cluster_known_nodes)" != "1" ] ||
		[ "$(info "$node" cluster_slots_assigned)" != "0" ]; then
		blank=no
	fi
done

first=${NODES%% *}
if [ "$blank" = yes ]; then
	echo "creating the cluster on $NODES"
	# shellcheck disable=SC2086  # one argument per node
	redis-cli --cluster create $NODES --cluster-replicas 1 --cluster-yes
else
	echo "the nodes already form a cluster: not creating it again"
fi

waited=0
until [ "$(info "$first" cluster_state)" = ok ]; do
	if [ "$waited" -ge "$WAIT_S" ]; then
		echo "cluster_state is not ok after ${WAIT_S} s:" >&2
		redis-cli -h "${first%:*}" -p "${first##*:}" cluster info >&2
		exit 1
	fi
	sleep 1
	waited=$((waited + 1))
done
echo "cluster_state:ok"
