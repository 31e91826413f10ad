package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// unsetEnv removes an environment variable for the test, restoring it after.
func unsetEnv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "")
	os.Unsetenv(name)
}

// defaultConn is connFlags with no flag given.
var defaultConn = connFlags{addr: defaultAddr, timeout: 10 * time.Second}

func mustParseTimestamp(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := parseTimestamp(s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// Every documented invocation parses into the verb it describes, with flags
// before or after the positionals.
func TestParseValidInvocations(t *testing.T) {
	unsetEnv(t, "RIFFLE_ADDR")
	jsonConn := defaultConn
	jsonConn.json = true
	twoNodes := connFlags{addr: "a:1, b:2", timeout: 3 * time.Second}
	tests := []struct {
		args []string
		want verb
	}{
		{[]string{"stream", "create", "orders", "--shards", "4"},
			&streamCreate{connFlags: defaultConn, name: "orders", shards: 4, retentionHours: 24, wait: time.Minute}},
		{[]string{"stream", "create", "--shards=4", "orders", "--json"},
			&streamCreate{connFlags: jsonConn, name: "orders", shards: 4, retentionHours: 24, wait: time.Minute}},
		{[]string{"stream", "create", "orders", "--on-demand", "--retention-hours", "48", "--timeout", "90s"},
			&streamCreate{connFlags: connFlags{addr: defaultAddr, timeout: 90 * time.Second}, name: "orders", onDemand: true, retentionHours: 48, wait: 90 * time.Second}},
		{[]string{"stream", "create", "orders", "--shards", "1", "--no-wait"},
			&streamCreate{connFlags: defaultConn, name: "orders", shards: 1, retentionHours: 24, noWait: true, wait: time.Minute}},
		{[]string{"stream", "create", "--shards", "2", "--", "-odd-name"},
			&streamCreate{connFlags: defaultConn, name: "-odd-name", shards: 2, retentionHours: 24, wait: time.Minute}},
		{[]string{"stream", "delete", "orders", "--addr", "a:1, b:2", "--timeout", "3s"},
			&streamDelete{connFlags: twoNodes, name: "orders"}},
		{[]string{"stream", "describe", "--json", "orders"},
			&streamDescribe{connFlags: jsonConn, name: "orders"}},
		{[]string{"stream", "list"}, &streamList{connFlags: defaultConn}},
		{[]string{"stream", "retention", "orders", "--hours", "8760"},
			&streamRetention{connFlags: defaultConn, name: "orders", hours: 8760}},
		{[]string{"shard", "list", "orders"}, &shardList{connFlags: defaultConn, stream: "orders"}},
		{[]string{"stream", "scale", "orders", "--count", "8"},
			&streamScale{connFlags: defaultConn, name: "orders", count: 8, wait: time.Minute}},
		{[]string{"stream", "scale", "--count=3", "--no-wait", "orders", "--timeout", "5s"},
			&streamScale{connFlags: connFlags{addr: defaultAddr, timeout: 5 * time.Second}, name: "orders", count: 3, noWait: true, wait: 5 * time.Second}},
		{[]string{"shard", "split", "--stream", "s", "--shard", "shardId-000000000000"},
			&shardSplit{connFlags: defaultConn, stream: "s", shard: "shardId-000000000000", wait: time.Minute}},
		{[]string{"shard", "split", "--stream", "s", "--shard", "x", "--key", "42", "--no-wait", "--timeout", "5s"},
			&shardSplit{connFlags: connFlags{addr: defaultAddr, timeout: 5 * time.Second}, stream: "s", shard: "x", key: "42", noWait: true, wait: 5 * time.Second}},
		{[]string{"shard", "merge", "--stream", "s", "--shard", "a", "--adjacent", "b"},
			&shardMerge{connFlags: defaultConn, stream: "s", shard: "a", adjacent: "b", wait: time.Minute}},
		{[]string{"put", "--stream", "s", "--key", "k", "--data", "hello"},
			&putVerb{connFlags: defaultConn, stream: "s", key: "k", data: "hello", hasData: true, batch: 500}},
		{[]string{"put", "--stream", "s", "--key", "k", "--data", ""},
			&putVerb{connFlags: defaultConn, stream: "s", key: "k", hasData: true, batch: 500}},
		{[]string{"put", "--stream", "s", "--random-keys", "--batch", "10", "--explicit-hash-key", "42"},
			&putVerb{connFlags: defaultConn, stream: "s", randomKeys: true, explicitHashKey: "42", batch: 10}},
		{[]string{"get", "--stream", "s", "--shard", "shardId-000000000000"},
			&getVerb{connFlags: defaultConn, stream: "s", shard: "shardId-000000000000", iteratorType: "trim-horizon", pollInterval: 200 * time.Millisecond}},
		{[]string{"get", "--stream", "s", "--shard", "x", "--type", "after-sequence-number", "--seq", "17", "--limit", "10", "--max", "5", "--follow"},
			&getVerb{connFlags: defaultConn, stream: "s", shard: "x", iteratorType: "after-sequence-number", seq: "17", limit: 10, max: 5, follow: true, pollInterval: 200 * time.Millisecond}},
		{[]string{"get", "--stream", "s", "--shard", "x", "--type", "at-timestamp", "--timestamp", "2026-01-02T03:04:05Z"},
			&getVerb{connFlags: defaultConn, stream: "s", shard: "x", iteratorType: "at-timestamp", timestamp: "2026-01-02T03:04:05Z",
				at: mustParseTimestamp(t, "2026-01-02T03:04:05Z"), pollInterval: 200 * time.Millisecond}},
		{[]string{"get", "--stream", "s", "--shard", "x", "--type", "at-timestamp", "--timestamp", "1767323045000"},
			&getVerb{connFlags: defaultConn, stream: "s", shard: "x", iteratorType: "at-timestamp", timestamp: "1767323045000",
				at: time.UnixMilli(1767323045000), pollInterval: 200 * time.Millisecond}},
		{[]string{"health", "--quiet"}, &healthVerb{connFlags: defaultConn, quiet: true}},
		{[]string{"bench", "--stream", "b", "--create-shards", "4", "--producers", "8", "--in-flight", "4", "--batch", "100", "--record-size", "1024", "--duration", "30s", "--keys", "uniform", "--json"},
			&benchVerb{connFlags: jsonConn, stream: "b", createShards: 4, producers: 8, inFlight: 4, batch: 100, recordSize: 1024, duration: 30 * time.Second, keys: "uniform", zipfS: defaultZipfS, getLimit: 10000, pollInterval: 200 * time.Millisecond, createLimits: "unlimited", mode: "produce", consumers: 2}},
		{[]string{"bench", "--stream", "b", "--batch", "1", "--record-size", "1048544", "--create-limits", "cluster"},
			&benchVerb{connFlags: defaultConn, stream: "b", producers: 4, inFlight: 4, batch: 1, recordSize: 1048544, duration: 30 * time.Second, keys: "uniform", zipfS: defaultZipfS, getLimit: 10000, pollInterval: 200 * time.Millisecond, createLimits: "cluster", mode: "produce", consumers: 2}},
		{[]string{"bench", "--stream", "b", "--mode", "fanout", "--rate", "500", "--consumers", "3"},
			&benchVerb{connFlags: defaultConn, stream: "b", producers: 4, inFlight: 4, batch: 100, recordSize: 1024, duration: 30 * time.Second, keys: "uniform", zipfS: defaultZipfS, getLimit: 10000, pollInterval: 200 * time.Millisecond, createLimits: "unlimited", mode: "fanout", rate: 500, consumers: 3}},
		{[]string{"bench", "--stream", "b", "--mode", "fanout", "--keys", "zipf", "--key-count", "50"},
			&benchVerb{connFlags: defaultConn, stream: "b", producers: 4, inFlight: 4, batch: 100, recordSize: 1024, duration: 30 * time.Second, keys: "zipf", keyCount: 50, zipfS: defaultZipfS, getLimit: 10000, pollInterval: 200 * time.Millisecond, createLimits: "unlimited", mode: "fanout", rate: 1000, consumers: 2}},
		{[]string{"bench", "--stream", "b", "--rate", "5000", "--keys", "zipf", "--key-count", "1000", "--zipf-s", "1.5", "--csv"},
			&benchVerb{connFlags: defaultConn, stream: "b", producers: 4, inFlight: 4, batch: 100, recordSize: 1024, duration: 30 * time.Second, keys: "zipf", keyCount: 1000, zipfS: 1.5, getLimit: 10000, pollInterval: 200 * time.Millisecond, createLimits: "unlimited", mode: "produce", rate: 5000, consumers: 2, csv: true}},
		{[]string{"bench", "--stream", "b", "--mode", "consume", "--get-limit", "500", "--poll-interval", "1s"},
			&benchVerb{connFlags: defaultConn, stream: "b", producers: 4, inFlight: 4, batch: 100, recordSize: 1024, duration: 30 * time.Second, keys: "uniform", zipfS: defaultZipfS, getLimit: 500, pollInterval: time.Second, createLimits: "unlimited", mode: "consume", consumers: 2}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			cmd, rest, err := findCommand(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseVerb(cmd, rest)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parsed\n %#v\nwant\n %#v", got, tt.want)
			}
		})
	}
}

// RIFFLE_ADDR sets the default of --addr, comma-separated.
func TestAddrFromEnvironment(t *testing.T) {
	t.Setenv("RIFFLE_ADDR", "n1:7450,n2:7450")
	cmd, rest, err := findCommand([]string{"stream", "list"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := parseVerb(cmd, rest)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.(*streamList).addrs(); !reflect.DeepEqual(got, []string{"n1:7450", "n2:7450"}) {
		t.Errorf("addrs = %q", got)
	}
}

// Bad usage exits 2 before any connection is made, and says what is wrong.
func TestUsageErrorsExitTwo(t *testing.T) {
	unsetEnv(t, "RIFFLE_ADDR")
	tests := []struct {
		args    []string
		wantErr string
	}{
		{nil, "no command given"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"stream"}, "stream needs a subcommand"},
		{[]string{"stream", "rename", "x"}, `unknown command "stream rename"`},
		{[]string{"shard"}, "shard needs a subcommand"},
		{[]string{"help", "nothing"}, `unknown command "nothing"`},
		{[]string{"stream", "create"}, "missing stream name"},
		{[]string{"stream", "create", "orders"}, "--shards N or --on-demand is required"},
		{[]string{"stream", "create", "orders", "--shards", "0"}, "--shards must be a positive number"},
		{[]string{"stream", "create", "orders", "--shards", "-3"}, "--shards must be a positive number"},
		{[]string{"stream", "create", "orders", "--shards", "x"}, `invalid value "x" for flag -shards`},
		{[]string{"stream", "create", "orders", "--shards", "2", "--on-demand"}, "--shards does not apply"},
		{[]string{"stream", "create", "orders", "--shards", "2", "--retention-hours", "23"}, "--retention-hours must be between 24 and 8760"},
		{[]string{"stream", "create", "orders", "--shards", "2", "--retention-hours", "48", "--no-wait"}, "cannot be combined with --no-wait"},
		{[]string{"stream", "create", "a", "b", "--shards", "2"}, `unexpected arguments ["b"]`},
		{[]string{"stream", "create", "orders", "--shards", "2", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"stream", "create", "orders", "--shards", "2", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"stream", "create", "orders", "--shards", "2", "--addr", " , "}, "--addr is empty"},
		{[]string{"stream", "delete"}, "missing stream name"},
		{[]string{"stream", "delete", ""}, "empty stream name"},
		{[]string{"stream", "describe", "a", "b"}, "unexpected arguments"},
		{[]string{"stream", "list", "extra"}, "unexpected arguments"},
		{[]string{"stream", "retention", "orders"}, "--hours is required"},
		{[]string{"stream", "retention", "orders", "--hours", "9000"}, "--hours must be between 24 and 8760"},
		{[]string{"shard", "list"}, "missing stream name"},
		{[]string{"stream", "scale", "orders"}, "--count is required"},
		{[]string{"stream", "scale", "--count", "4"}, "missing stream name"},
		{[]string{"stream", "scale", "orders", "--count", "0"}, "--count must be a positive number"},
		{[]string{"stream", "scale", "orders", "--count", "x"}, `invalid value "x" for flag -count`},
		{[]string{"stream", "scale", "a", "b", "--count", "2"}, `unexpected arguments ["b"]`},
		{[]string{"shard", "split", "--shard", "x"}, "--stream is required"},
		{[]string{"shard", "split", "--stream", "s"}, "--shard is required"},
		{[]string{"shard", "split", "--stream", "s", "--shard", "x", "--key", "-1"}, "not a decimal hash key"},
		{[]string{"shard", "merge", "--stream", "s", "--shard", "a"}, "--adjacent is required"},
		{[]string{"shard", "merge", "--stream", "s", "--shard", "a", "--adjacent", "a"}, "must differ"},
		{[]string{"put", "--key", "k", "--data", "d"}, "--stream is required"},
		{[]string{"put", "--stream", "s", "--data", "d"}, "--key K or --random-keys is required"},
		{[]string{"put", "--stream", "s", "--key", "k", "--random-keys"}, "exclude each other"},
		{[]string{"put", "--stream", "s", "--key", ""}, "--key must not be empty"},
		{[]string{"put", "--stream", "s", "--key", "k", "--batch", "501"}, "--batch must be between 1 and 500"},
		{[]string{"put", "--stream", "s", "--key", "k", "--batch", "0"}, "--batch must be between 1 and 500"},
		{[]string{"put", "--stream", "s", "--key", "k", "--data", "d", "--batch", "5"}, "--batch applies to records read from stdin"},
		{[]string{"put", "--stream", "s", "--key", "k", "stray"}, "unexpected arguments"},
		{[]string{"get", "--shard", "x"}, "--stream is required"},
		{[]string{"get", "--stream", "s"}, "--shard is required"},
		{[]string{"get", "--stream", "s", "--shard", "x", "--type", "oldest"}, `--type "oldest" is not one of`},
		{[]string{"get", "--stream", "s", "--shard", "x", "--type", "at-sequence-number"}, "needs --seq"},
		{[]string{"get", "--stream", "s", "--shard", "x", "--seq", "5"}, "--seq applies to"},
		{[]string{"get", "--stream", "s", "--shard", "x", "--type", "at-timestamp"}, "needs --timestamp"},
		{[]string{"get", "--stream", "s", "--shard", "x", "--type", "at-timestamp", "--timestamp", "yesterday"}, "neither RFC 3339"},
		{[]string{"get", "--stream", "s", "--shard", "x", "--timestamp", "1000"}, "--timestamp applies to"},
		{[]string{"get", "--stream", "s", "--shard", "x", "--limit", "10001"}, "--limit must be between 1 and 10000"},
		{[]string{"get", "--stream", "s", "--shard", "x", "--max", "-1"}, "--max must not be negative"},
		{[]string{"get", "--stream", "s", "--shard", "x", "--poll-interval", "0s"}, "--poll-interval must be positive"},
		{[]string{"health", "extra"}, "unexpected arguments"},
		{[]string{"bench"}, "--stream is required"},
		{[]string{"bench", "--stream", "b", "--producers", "0"}, "--producers must be at least 1"},
		{[]string{"bench", "--stream", "b", "--in-flight", "0"}, "--in-flight must be at least 1"},
		{[]string{"bench", "--stream", "b", "--batch", "501"}, "--batch must be between 1 and 500"},
		{[]string{"bench", "--stream", "b", "--record-size", "0"}, "--record-size must be between"},
		{[]string{"bench", "--stream", "b", "--record-size", "1048545", "--batch", "1"}, "--record-size must be between"},
		{[]string{"bench", "--stream", "b", "--record-size", "20000", "--batch", "500"}, "over the 5 MiB"},
		{[]string{"bench", "--stream", "b", "--mode", "replay"}, "--mode must be produce, consume, mixed or fanout"},
		{[]string{"bench", "--stream", "b", "--mode", "consume", "--rate", "10"}, "--rate goes with --mode produce, mixed or fanout"},
		{[]string{"bench", "--stream", "b", "--mode", "consume", "--keys", "zipf", "--key-count", "5"}, "consume puts none"},
		{[]string{"bench", "--stream", "b", "--mode", "mixed", "--record-size", "15"}, "--record-size must be at least 16"},
		{[]string{"bench", "--stream", "b", "--rate", "-1"}, "--rate must be between 0 (as fast as possible)"},
		{[]string{"bench", "--stream", "b", "--keys", "hot"}, "--keys must be uniform or zipf"},
		{[]string{"bench", "--stream", "b", "--keys", "zipf", "--key-count", "1"}, "give at least 2"},
		{[]string{"bench", "--stream", "b", "--keys", "zipf", "--key-count", "10", "--zipf-s", "1"}, "--zipf-s must be above 1"},
		{[]string{"bench", "--stream", "b", "--zipf-s", "NaN"}, "--zipf-s must be above 1"},
		{[]string{"bench", "--stream", "b", "--mode", "consume", "--get-limit", "0"}, "--get-limit must be between 1 and 10000"},
		{[]string{"bench", "--stream", "b", "--mode", "mixed", "--poll-interval", "0s"}, "--poll-interval must be positive"},
		{[]string{"bench", "--stream", "b", "--json", "--csv"}, "--json and --csv exclude each other"},
		{[]string{"bench", "--stream", "b", "--split-after", "1s"}, "--split-after and --merge-after go with --mode fanout"},
		{[]string{"subscribe", "--consumer", "c", "--all"}, "--stream is required"},
		{[]string{"subscribe", "--stream", "s", "--all"}, "--consumer is required"},
		{[]string{"subscribe", "--stream", "s", "--consumer", "c"}, "--shard SHARD_ID or --all is required"},
		{[]string{"subscribe", "--stream", "s", "--consumer", "c", "--all", "--shard", "x"}, "do not go together"},
		{[]string{"subscribe", "--stream", "s", "--consumer", "c", "--all", "--type", "after-sequence-number", "--seq", "1"}, "belongs to one shard"},
		{[]string{"subscribe", "--stream", "s", "--consumer", "c", "--shard", "x", "--type", "at-sequence-number"}, "needs --seq"},
		{[]string{"subscribe", "--stream", "s", "--consumer", "c", "--shard", "x", "--type", "sideways"}, "--type \"sideways\""},
		{[]string{"subscribe", "--stream", "s", "--consumer", "c", "--shard", "x", "--max", "-1"}, "--max must not be negative"},
		{[]string{"consumer", "register", "s"}, "want STREAM NAME"},
		{[]string{"consumer", "describe", "s"}, "want STREAM NAME (or --arn ARN)"},
		{[]string{"consumer", "deregister", "s", "c", "--arn", "a"}, "not both"},
		{[]string{"bench", "--stream", "b", "--mode", "fanout", "--rate", "0"}, "--rate must be between"},
		{[]string{"bench", "--stream", "b", "--mode", "fanout", "--consumers", "21"}, "--consumers must be between 1 and 20"},
		{[]string{"bench", "--stream", "b", "--duration", "0s"}, "--duration must be positive"},
		{[]string{"bench", "--stream", "b", "--keys", "zipf"}, "--keys zipf picks from --key-count keys"},
		{[]string{"bench", "--stream", "b", "--create-shards", "-1"}, "--create-shards must not be negative"},
		{[]string{"bench", "--stream", "b", "--create-limits", "kinesis"}, "--create-limits must be unlimited or cluster"},
		{[]string{"serve", "extra"}, "serve takes no arguments"},
		{[]string{"serve", "--shard-limits", "fast"}, "--shard-limits (RIFFLE_SHARD_LIMITS) must be kinesis or unlimited"},
		{[]string{"serve", "--shard-limits", ""}, "--shard-limits (RIFFLE_SHARD_LIMITS) must be kinesis or unlimited"},
		{[]string{"stream", "create", "orders", "--shards", "1", "--write-bytes-per-sec", "-1"}, "--write-bytes-per-sec must be 0 (unlimited) or more"},
		{[]string{"stream", "create", "orders", "--shards", "1", "--read-calls-per-sec", "many"}, `invalid value "many" for flag -read-calls-per-sec`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", tt.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr does not say %q:\n%s", tt.wantErr, stderr)
			}
			if !strings.HasPrefix(stderr, "riffle: ") && len(tt.args) > 0 {
				t.Errorf("stderr does not start with \"riffle: \":\n%s", stderr)
			}
			if stdout != "" {
				t.Errorf("usage error printed on stdout:\n%s", stdout)
			}
		})
	}
}

// -h and help print a command's usage on stdout and exit 0.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"help"}, {"-h"}, {"--help"},
		{"help", "stream", "create"}, {"stream", "create", "-h"}, {"stream", "create", "orders", "--help"},
		{"help", "put"}, {"put", "-h"}, {"help", "get"}, {"help", "bench"}, {"help", "health"}, {"help", "shard", "list"},
	} {
		code, stdout, stderr := runCLI(t, "", args...)
		if code != exitOK || stderr != "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
		if !strings.Contains(stdout, "usage: riffle") && !strings.Contains(stdout, "Exit codes:") {
			t.Errorf("%q printed no usage:\n%s", args, stdout)
		}
	}
	_, stdout, _ := runCLI(t, "", "help")
	for _, cmd := range commands {
		if !strings.Contains(stdout, "riffle "+cmd.path) {
			t.Errorf("overview does not list %q", cmd.path)
		}
	}
	for _, code := range []string{"0  success", "1  failure", "2  usage error", "3  resource not found", "4  retryable"} {
		if !strings.Contains(stdout, code) {
			t.Errorf("overview does not document exit code %q", code)
		}
	}
	_, stdout, _ = runCLI(t, "", "help", "get")
	for _, flag := range []string{"--stream", "--shard", "--type", "--seq", "--timestamp", "--limit", "--max", "--follow", "--addr", "--json", "--timeout"} {
		if !strings.Contains(stdout, flag+" ") {
			t.Errorf("help get does not list %s:\n%s", flag, stdout)
		}
	}
}

// Flags are found before, between and after positionals, not after "--".
func TestParseInterleaved(t *testing.T) {
	tests := []struct {
		args    []string
		wantPos []string
		wantN   int
	}{
		{[]string{"a", "-n", "1", "b"}, []string{"a", "b"}, 1},
		{[]string{"-n", "2", "a"}, []string{"a"}, 2},
		{[]string{"a", "b", "-n=3"}, []string{"a", "b"}, 3},
		{[]string{"a", "--", "-n", "4"}, []string{"a", "-n", "4"}, 0},
		{[]string{"-", "-n", "5"}, []string{"-"}, 5},
		{nil, nil, 0},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		n := fs.Int("n", 0, "")
		got, err := parseInterleaved(fs, tt.args)
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if !reflect.DeepEqual(got, tt.wantPos) || *n != tt.wantN {
			t.Errorf("%q: positional %q, n %d; want %q, %d", tt.args, got, *n, tt.wantPos, tt.wantN)
		}
	}
}

// runCLI runs one invocation with stdin and returns the exit code and the
// two outputs.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return runCLIContext(context.Background(), stdin, args...)
}

func runCLIContext(ctx context.Context, stdin string, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := runMain(ctx, args, stdio{in: strings.NewReader(stdin), out: &stdout, err: &stderr})
	return code, stdout.String(), stderr.String()
}

// serve.go reports -h as usageError{flag.ErrHelp}; main must see it as help.
func TestUsageErrorUnwraps(t *testing.T) {
	if !errors.Is(usageError{flag.ErrHelp}, flag.ErrHelp) {
		t.Error("errors.Is does not see flag.ErrHelp through usageError")
	}
}

// The default split key halves the shard's range and lies strictly inside
// it, so that both children are non-empty.
func TestMiddleKey(t *testing.T) {
	shard := func(start, end string) []*rifflev1.Shard {
		return []*rifflev1.Shard{{ShardId: "s", HashKeyRange: &rifflev1.HashKeyRange{StartingHashKey: start, EndingHashKey: end}}}
	}
	for _, tt := range []struct{ start, end, want string }{
		{"0", "340282366920938463463374607431768211455", "170141183460469231731687303715884105728"},
		{"10", "11", "11"},
		{"10", "13", "12"},
	} {
		got, err := middleKey(shard(tt.start, tt.end), "s")
		if err != nil || got != tt.want {
			t.Errorf("middleKey [%s, %s] = %s, %v; want %s", tt.start, tt.end, got, err, tt.want)
		}
	}
	if _, err := middleKey(shard("5", "5"), "s"); err == nil {
		t.Error("a one-key shard was given a split key")
	}
	if _, err := middleKey(shard("0", "5"), "t"); err == nil {
		t.Error("an unknown shard was given a split key")
	}
}
