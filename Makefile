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

.PHONY: all build run test test-short vet proto proto-check bench clean tools-protoc

all: build

build:
	$(GO) build -trimpath -o $(RIFFLE) ./cmd/riffle

# One node with the defaults of DESIGN.md: data in ./riffle-data, gRPC on
# 127.0.0.1:7450, gossip on 7451, admin HTTP on 7452.
run: build
	$(RIFFLE) serve

vet:
	$(GO) vet ./...

# The race detector needs cgo.
test: vet
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

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

clean:
	rm -rf $(BIN) $(TOOLS)
