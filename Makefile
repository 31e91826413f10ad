# Riffle build, test and run targets. `make run` and `make test` are all a new
# user needs; every tool a target uses is installed by the target itself.

GO          ?= go
BIN         := $(CURDIR)/bin
RIFFLE      := $(BIN)/riffle
TOOLS       := $(CURDIR)/.tools
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
TEST_TIMEOUT ?= 15m

export CGO_ENABLED ?= 0

.PHONY: all build run test test-short vet proto proto-check bench bench-compare nats-server clean tools-protoc

all: build

build:
	$(GO) build -trimpath -o $(RIFFLE) ./cmd/riffle

# One node with the defaults of DESIGN.md: data in ./riffle-data, gRPC on
# 127.0.0.1:7450, gossip on 7451, admin HTTP on 7452.
run: build
	$(RIFFLE) serve

vet:
	$(GO) vet ./...

# The race detector needs cgo. The second run tests the fault image's
# test-only hooks (tests/fault/README.md) in the build that has them, the
# third the fault workload's parts that need no cluster.
test: vet
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags '$(FAULT_TAGS)' -run 'FaultClock|Unsynced' ./node ./shardlog ./shardlog/wal
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags fault -run 'TestEndShard' ./tests/fault

test-short:
	$(GO) test -short -count=1 ./...

# protoc comes from Debian's protobuf-compiler, the plugins from the Go module
# proxy at pinned versions, so regeneration is reproducible.
tools-protoc:
	@command -v protoc >/dev/null 2>&1 && [ -f /usr/include/google/protobuf/timestamp.proto ] || \
		{ echo "installing protoc (protobuf-compiler, libprotobuf-dev)"; \
		  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler libprotobuf-dev) >/dev/null; }
	@[ -x $(TOOLS)/protoc-gen-go ] || GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@[ -x $(TOOLS)/protoc-gen-go-grpc ] || GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

proto: tools-protoc
	PATH=$(TOOLS):$$PATH protoc -I proto -I /usr/include \
		--go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
		$$(find proto -name '*.proto' | sort)

# Fails when the committed generated code differs from what `make proto` makes.
proto-check: proto
	@git diff --exit-code -- proto || { echo "generated code is stale: run 'make proto' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto)" || { git status --porcelain -- proto; echo "untracked generated files: run 'make proto' and commit"; exit 1; }

# A one-minute produce benchmark against a node at 127.0.0.1:7450 (`make run`).
bench: build
	$(RIFFLE) bench --stream bench --create-shards 4 --producers 8 --in-flight 4 --batch 100 --record-size 1024 --duration 30s

# Riffle against NATS JetStream on this machine (docs/performance.md): three
# nodes of each on loopback, R3, fsync before ack, the same produce
# workloads, one table with the ratio. The comparison and nats-server are
# built from their own module, tests/benchcompare, so the broker's go.mod
# never depends on NATS. RUNS=3 prints medians of three runs; SHARDS=16
# gives Riffle's stream 16 shards and NATS 16 R3 streams; the other
# knobs are the program's flags (go run ./tests/benchcompare -h).
RUNS          ?= 1
SIZES         ?= 1024,128
PRODUCERS     ?= 4
IN_FLIGHT     ?= 500
SHARDS        ?= 1
BENCH_COMPARE_FLAGS ?=
NATS_SERVER   := $(BIN)/nats-server

nats-server:
	cd tests/benchcompare && $(GO) build -trimpath -o $(NATS_SERVER) github.com/nats-io/nats-server/v2

bench-compare: build nats-server
	cd tests/benchcompare && $(GO) build -trimpath -o $(BIN)/benchcompare .
	$(BIN)/benchcompare -riffle $(RIFFLE) -nats-server $(NATS_SERVER) -runs $(RUNS) -duration $(or $(DURATION),30s) \
		-sizes $(SIZES) -producers $(PRODUCERS) -in-flight $(IN_FLIGHT) -shards $(SHARDS) $(BENCH_COMPARE_FLAGS)

clean:
	rm -rf $(BIN) $(TOOLS)

# The Python client test (tests/clients/python) against running nodes:
# installs Debian's gRPC packages if missing, generates a client from proto/
# and checks streams, iterators, fan-out and consumer groups.
ADDR ?= 127.0.0.1:7450
.PHONY: python-client
python-client:
	tests/clients/python/run.sh $(ADDR)

# boto3 and the AWS CLI (Debian's python3-boto3 and awscli, installed if
# missing) against Kinesis endpoints (tests/clients/kinesis): create, put,
# read with every iterator type, fan-out, split, merge, scale, delete.
KINESIS_URLS ?= http://127.0.0.1:4567
.PHONY: kinesis-clients
kinesis-clients:
	tests/clients/kinesis/run.sh $(KINESIS_URLS)

# ---- Docker: the node image, a three-node cluster, end-to-end tests --------
# deploy/README.md describes the image and the compose file. The compose
# command is docker-compose (v1) by default; DOCKER_COMPOSE="docker compose"
# uses the v2 plugin.

DOCKER             ?= docker
DOCKER_COMPOSE     ?= docker-compose
DOCKER_IMAGE       ?= riffle:dev
# The image's binary: static, for Linux on the architecture docker runs
# (the host's, on Linux and on Docker Desktop alike). It is kept apart from
# bin/riffle so that on macOS the host CLI stays a macOS binary.
DOCKER_GOARCH      ?= $(shell $(GO) env GOARCH)
DOCKER_BIN         := $(BIN)/docker/riffle
# Build tags of the image's binary: none for `make docker-image` and
# `make cluster-up`. The fault runs (and e2e, which ends with one) build in
# their test-only hooks: faultclock (an admin endpoint that steps the node's
# clock) and faultsync (segment writes kept in memory until fsync, so that
# kill -9 loses them); tests/fault/README.md.
DOCKER_TAGS        ?=
FAULT_TAGS         := faultclock faultsync
CLUSTER_ADDRS      := 127.0.0.1:7450,127.0.0.1:7460,127.0.0.1:7470
CLUSTER_KINESIS_URLS := http://127.0.0.1:4567,http://127.0.0.1:4577,http://127.0.0.1:4587
CLUSTER_FILE       := $(CURDIR)/deploy/docker-compose.yml
CLUSTER_PROJECT    ?= riffle
CLUSTER_NODES      := n1 n2 n3
CLUSTER_UP_TIMEOUT ?= 180
E2E_TIMEOUT        ?= 20m
COMPOSE             = $(DOCKER_COMPOSE) -f $(CLUSTER_FILE) -p $(CLUSTER_PROJECT)

# Polls the health of every node's container until all are healthy, printing
# their states; exits 1 when a container has stopped or when
# CLUSTER_UP_TIMEOUT seconds have passed.
define CLUSTER_WAIT_HEALTHY
deadline=$$(( $$(date +%s) + $(CLUSTER_UP_TIMEOUT) )); \
while :; do \
	states=""; healthy=0; exited=""; \
	for svc in $(CLUSTER_NODES); do \
		id=$$($(COMPOSE) ps -q $$svc 2>/dev/null || true); \
		st=$$( [ -n "$$id" ] && $(DOCKER) inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}' $$id 2>/dev/null || echo missing); \
		states="$$states $$svc=$$st"; \
		case $$st in running/healthy) healthy=$$((healthy + 1));; exited/*|dead/*|missing) exited="$$exited $$svc";; esac; \
	done; \
	echo "cluster-up: $$(date +%T)$$states"; \
	[ $$healthy -eq $(words $(CLUSTER_NODES)) ] && break; \
	if [ -n "$$exited" ]; then echo "cluster-up: not running:$$exited"; exit 1; fi; \
	if [ $$(date +%s) -ge $$deadline ]; then echo "cluster-up: not healthy after $(CLUSTER_UP_TIMEOUT)s"; exit 1; fi; \
	sleep 2; \
done; \
echo "cluster-up: healthy; gRPC on 127.0.0.1:7450, 127.0.0.1:7460, 127.0.0.1:7470"
endef

.PHONY: docker-image cluster-up cluster-down e2e fault jepsen fault-deps

# The build context is a temporary directory holding only the Dockerfile,
# the binary and an empty data/ directory: nothing else is sent to docker.
docker-image:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(DOCKER_GOARCH) $(GO) build -trimpath -tags '$(DOCKER_TAGS)' -o $(DOCKER_BIN) ./cmd/riffle
	@ctx=$$(mktemp -d) && trap 'rm -rf "$$ctx"' EXIT && \
	cp deploy/Dockerfile $(DOCKER_BIN) "$$ctx/" && mkdir "$$ctx/data" && \
	$(DOCKER) build -t $(DOCKER_IMAGE) "$$ctx"

cluster-up cluster-down e2e fault jepsen: export RIFFLE_IMAGE = $(DOCKER_IMAGE)
e2e fault jepsen: DOCKER_TAGS = $(FAULT_TAGS)
# Shards idle for a second hibernate, so that the workload's lulls put them
# to sleep and the nemeses hit sleeping and waking groups (docs/hibernation.md).
e2e fault jepsen: export RIFFLE_HIBERNATE_AFTER = 1s

# Three nodes (deploy/docker-compose.yml), waiting until all are healthy.
# On failure it prints the nodes' logs and leaves them for inspection.
cluster-up: docker-image
	$(COMPOSE) up -d
	@( $(CLUSTER_WAIT_HEALTHY) ) || { $(COMPOSE) logs --no-color --timestamps --tail=200; \
		echo "cluster-up: failed; \`make cluster-down\` removes the cluster and its data"; exit 1; }

# Stops the cluster and deletes its volumes: the next cluster-up starts empty.
cluster-down:
	$(COMPOSE) down -v --remove-orphans

# Builds the image, starts a fresh cluster, runs tests/e2e against it and
# always tears it down, also when a step fails or is interrupted; on failure
# it prints every container's log first.
e2e: docker-image fault-deps
	@teardown() { rc=$$?; trap - EXIT INT TERM; \
		if [ $$rc -ne 0 ]; then echo "e2e: failed (exit $$rc); container logs follow"; $(COMPOSE) logs --no-color --timestamps || true; fi; \
		echo "e2e: tearing the cluster down"; $(COMPOSE) down -v --remove-orphans || true; \
		exit $$rc; }; \
	trap teardown EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	set -e; \
	$(COMPOSE) down -v --remove-orphans >/dev/null 2>&1 || true; \
	$(COMPOSE) up -d; \
	( $(CLUSTER_WAIT_HEALTHY) ); \
	RIFFLE_E2E_DOCKER="$(DOCKER)" RIFFLE_E2E_COMPOSE="$(DOCKER_COMPOSE)" \
	RIFFLE_E2E_COMPOSE_FILE="$(CLUSTER_FILE)" RIFFLE_E2E_PROJECT="$(CLUSTER_PROJECT)" \
		$(GO) test -tags e2e -count=1 -v -timeout $(E2E_TIMEOUT) ./tests/e2e/...; \
	echo "e2e: the Python client (tests/clients/python)"; \
	$(MAKE) --no-print-directory python-client ADDR=$(CLUSTER_ADDRS); \
	echo "e2e: boto3 and the AWS CLI through the Kinesis endpoints (tests/clients/kinesis)"; \
	$(MAKE) --no-print-directory kinesis-clients KINESIS_URLS=$(CLUSTER_KINESIS_URLS); \
	echo "e2e: fan-out: two registered consumers, 1000 records/s, Kinesis limits, a split and a merge"; \
	$(DOCKER_BIN) bench --mode fanout --addr $(CLUSTER_ADDRS) --stream e2e-fanout --create-shards 4 \
		--create-limits cluster --rate 1000 --consumers 2 --in-flight 16 --key-count 200 \
		--split-after 5s --merge-after 12s --duration 20s; \
	echo "e2e: fault run (tests/fault, CI-sized) on the same cluster"; \
	$(FAULT_ENV) $(GO) test -tags fault -count=1 -v -timeout $(FAULT_TIMEOUT) -run '^TestFaultCI$$' ./tests/fault/

# ---- Fault injection (tests/fault) ------------------------------------------
# `make fault` is the CI-sized Jepsen-style run (about three minutes, kill,
# pause, partition and kill-all, seed printed; RIFFLE_FAULT_SEED=N repeats
# one) on a fresh cluster; `make jepsen DURATION=30m` soaks a fresh cluster
# with every nemesis in rotation. Both fail on any anomaly and keep the
# history, node logs and data under tests/fault/results/ when they do.
# Faults are injected from the host with docker, and with iptables and tc
# inside the nodes' network namespaces (nsenter): fault-deps installs them.

FAULT_TIMEOUT ?= 15m
FAULT_ENV      = RIFFLE_E2E_DOCKER="$(DOCKER)" RIFFLE_E2E_COMPOSE="$(DOCKER_COMPOSE)" \
	RIFFLE_E2E_COMPOSE_FILE="$(CLUSTER_FILE)" RIFFLE_E2E_PROJECT="$(CLUSTER_PROJECT)" \
	RIFFLE_FAULT_RESULTS="$(CURDIR)/tests/fault/results"

fault-deps:
	@bash tests/fault/install-deps.sh

fault: FAULT_RUN = -timeout $(FAULT_TIMEOUT) -run '^TestFaultCI$$'
jepsen: FAULT_RUN = -timeout 0 -run '^TestFaultSoak$$'
jepsen: export RIFFLE_FAULT_DURATION = $(or $(DURATION),30m)

# A fresh cluster, the run, and always a teardown (logs printed on failure).
fault jepsen: docker-image fault-deps
	@teardown() { rc=$$?; trap - EXIT INT TERM; \
		if [ $$rc -ne 0 ]; then echo "$@: failed (exit $$rc); container logs follow"; $(COMPOSE) logs --no-color --timestamps --tail=300 || true; fi; \
		echo "$@: tearing the cluster down"; $(COMPOSE) down -v --remove-orphans || true; \
		exit $$rc; }; \
	trap teardown EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	set -e; \
	$(COMPOSE) down -v --remove-orphans >/dev/null 2>&1 || true; \
	$(COMPOSE) up -d; \
	( $(CLUSTER_WAIT_HEALTHY) ); \
	$(FAULT_ENV) $(GO) test -tags fault -count=1 -v $(FAULT_RUN) ./tests/fault/
