#!/bin/sh
# Drives a Riffle cluster through Kinesis's own HTTP API with Debian's boto3
# (python3-boto3) and AWS CLI v2 (awscli), unmodified: only the endpoint,
# a region and credentials are set, as for any Kinesis.
#
#   tests/clients/kinesis/run.sh [URL[,URL...]]   (or RIFFLE_KINESIS_URLS=...)
#
# The URLs are the nodes' Kinesis endpoints (http://127.0.0.1:4567 for
# `make run`). Missing packages are installed with apt-get (as root, or
# through sudo).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
urls=${1:-${RIFFLE_KINESIS_URLS:-http://127.0.0.1:4567}}
python=/usr/bin/python3 # Debian's, which sees python3-boto3
aws=/usr/bin/aws        # Debian's AWS CLI v2

need=""
$python -c 'import boto3' 2>/dev/null || need="$need python3-boto3"
[ -x $aws ] || need="$need awscli"
if [ -n "$need" ]; then
	echo "kinesis-clients: installing$need"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need >/dev/null 2>&1 ||
		{ $sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need >/dev/null; }
fi

# No credentials are configured on the nodes these checks run against:
# any key signs (docs/kinesis-api.md). Nothing is read from ~/.aws.
export AWS_ACCESS_KEY_ID=AKIDRIFFLECHECK AWS_SECRET_ACCESS_KEY=riffle-check AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_PAGER=""

echo "kinesis-clients: boto3 $($python -c 'import boto3; print(boto3.__version__)') against $urls"
RIFFLE_KINESIS_URLS="$urls" $python "$here/boto3_check.py"
echo "kinesis-clients: $($aws --version) against $urls"
AWS="$aws" PYTHON="$python" "$here/cli_check.sh" "$urls"
