#!/bin/sh
# Runs the Python client test against a Riffle cluster: generates a client
# from proto/ with Debian's packages and runs riffle_client.py.
#
#   tests/clients/python/run.sh [ADDR[,ADDR...]]     (or RIFFLE_ADDR=...)
#
# Debian bookworm's python3-grpc-tools (1.14) bundles a protoc too old for
# proto3 `optional` fields, so the messages come from Debian's protoc and
# the service stubs from its grpc_python_plugin (protobuf-compiler-grpc,
# the same gRPC release as python3-grpcio). Missing packages are installed
# with apt-get (as root, or through sudo).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
addr=${1:-${RIFFLE_ADDR:-127.0.0.1:7450}}
python=/usr/bin/python3 # Debian's, which sees python3-grpcio

need=""
$python -c 'import grpc, google.protobuf' 2>/dev/null || need="$need python3-grpcio python3-protobuf"
command -v protoc >/dev/null 2>&1 && [ -f /usr/include/google/protobuf/timestamp.proto ] || need="$need protobuf-compiler libprotobuf-dev"
command -v grpc_python_plugin >/dev/null 2>&1 || need="$need protobuf-compiler-grpc"
if [ -n "$need" ]; then
	echo "python-client: installing$need"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need >/dev/null
fi

gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
protoc -I "$root/proto" -I /usr/include \
	--python_out="$gen" --grpc_python_out="$gen" \
	--plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
	"$root"/proto/riffle/v1/*.proto

PYTHONPATH="$gen" RIFFLE_ADDR="$addr" $python "$here/riffle_client.py"
