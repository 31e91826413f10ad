#!/usr/bin/env bash
# Smoke test of the node image, runnable without clustering: builds riffle:dev
# (make docker-image), runs one node in a container with no join list, and
# checks from the host, with the host's bin/riffle, that
#
#   1. the container becomes healthy (its HEALTHCHECK runs `riffle health`),
#   2. stream create, put and get work through the published gRPC port,
#   3. the admin HTTP port answers /healthz and /readyz,
#   4. the node runs as an unprivileged user and can write its /data volume,
#   5. after `docker restart` (SIGTERM to PID 1, then a fresh start on the
#      same volume) every record is still there with the same sequence number.
#
# The container and its volume are removed on exit, whether the script passes
# or fails; on failure the container's log is printed first.
#
# Usage: deploy/smoke.sh            (from anywhere; needs docker, go, make)
# Env:   SMOKE_GRPC_PORT (17450), SMOKE_ADMIN_PORT (17452): host ports;
#        SMOKE_IMAGE (riffle:dev); SMOKE_SKIP_BUILD=1 uses the image as is.
# Not run in CI: `make e2e` covers the three-node cluster.
set -euo pipefail

cd "$(dirname "$0")/.."
image=${SMOKE_IMAGE:-riffle:dev}
grpc_port=${SMOKE_GRPC_PORT:-17450}
admin_port=${SMOKE_ADMIN_PORT:-17452}
addr=127.0.0.1:$grpc_port
name=riffle-smoke-$$
riffle=bin/riffle
records=200

log() { printf 'smoke: %s\n' "$*"; }
fail() { printf 'smoke: FAIL: %s\n' "$*" >&2; exit 1; }

cleanup() {
	local rc=$?
	trap - EXIT
	if docker inspect "$name" >/dev/null 2>&1; then
		if [ "$rc" -ne 0 ]; then
			log "container log:"
			docker logs "$name" 2>&1 | tail -n 100 || true
		fi
		docker rm -f -v "$name" >/dev/null || true
	fi
	if [ "$rc" -eq 0 ]; then log "PASS"; else log "FAIL (exit $rc)"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_healthy polls the container's health status until it is healthy,
# for at most $1 seconds.
wait_healthy() {
	local deadline=$((SECONDS + $1)) state
	while :; do
		state=$(docker inspect -f '{{.State.Status}}/{{.State.Health.Status}}' "$name")
		log "container $state"
		case $state in
		running/healthy) return 0 ;;
		exited/* | dead/*) fail "container stopped" ;;
		esac
		[ "$SECONDS" -lt "$deadline" ] || fail "not healthy after $1 s"
		sleep 1
	done
}

# read_all prints every record of the stream, shard by shard, as
# "SHARD<TAB>SEQUENCE<TAB>KEY<TAB>DATA" (the arrival time left out).
read_all() {
	local shard
	for shard in $("$riffle" shard list "$1" --addr "$addr" --json | grep -o '"shard_id":"[^"]*"' | cut -d'"' -f4); do
		"$riffle" get --stream "$1" --shard "$shard" --addr "$addr" |
			awk -F'\t' -v s="$shard" '{ print s "\t" $1 "\t" $3 "\t" $4 }'
	done
}

if [ "${SMOKE_SKIP_BUILD:-}" != 1 ]; then
	log "building bin/riffle and $image"
	make --no-print-directory build docker-image
fi
[ -x "$riffle" ] || fail "$riffle missing: run make build"

log "starting $name from $image, gRPC on $addr, admin on 127.0.0.1:$admin_port"
docker run -d --name "$name" \
	-p "127.0.0.1:$grpc_port:7450" -p "127.0.0.1:$admin_port:7452" \
	"$image" >/dev/null
wait_healthy 60

"$riffle" health --addr "$addr" >/dev/null || fail "riffle health from the host"
curl -fsS "http://127.0.0.1:$admin_port/healthz" >/dev/null || fail "admin /healthz"
curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null || fail "admin /readyz"

user=$(docker inspect -f '{{.Config.User}}' "$name")
[ "$user" = 65532:65532 ] || fail "container user is '$user', want 65532:65532"

log "stream create, put $records records, get"
"$riffle" stream create smoke --shards 2 --addr "$addr"
seq 1 "$records" | sed 's/^/record-/' |
	"$riffle" put --stream smoke --random-keys --addr "$addr" >/dev/null
one=$("$riffle" put --stream smoke --key the-key --data the-data --addr "$addr")
read -r one_shard one_seq <<<"$one"
[ -n "$one_seq" ] || fail "put --data printed '$one'"
got=$("$riffle" get --stream smoke --shard "$one_shard" --type at-sequence-number --seq "$one_seq" --max 1 --addr "$addr")
[ "$(cut -f3,4 <<<"$got")" = "$(printf 'the-key\tthe-data')" ] || fail "get at $one_seq returned '$got'"

before=$(read_all smoke)
count=$(wc -l <<<"$before")
[ "$count" -eq $((records + 1)) ] || fail "read $count records, want $((records + 1))"
for i in 1 "$records"; do
	grep -q "	record-$i\$" <<<"$before" || fail "record-$i not read back"
done

log "docker restart: SIGTERM, then a new start on the same volume"
docker restart "$name" >/dev/null
wait_healthy 60
after=$(read_all smoke)
[ "$before" = "$after" ] || fail "records differ after restart: $(diff <(echo "$before") <(echo "$after") | head -n 5)"
log "all $count records survived the restart with the same sequence numbers"
