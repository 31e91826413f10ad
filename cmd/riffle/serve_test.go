package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/riffle-streams/riffle/cluster"
)

// TestServeRefusesBadEnvironment checks that a malformed environment
// variable stops serve with a usage error instead of silently falling back
// to the default.
func TestServeRefusesBadEnvironment(t *testing.T) {
	for _, c := range []struct{ name, value string }{
		{"RIFFLE_BOOTSTRAP_EXPECT", "three"},
		{"RIFFLE_DEAD_NODE_GRACE", "60"},
		{"RIFFLE_SHARD_LIMITS", "aws"},
		{"RIFFLE_SUBSCRIPTION_LIFETIME", "5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(c.name, c.value)
			err := runServe(nil)
			var u usageError
			if !errors.As(err, &u) || !strings.Contains(err.Error(), c.name) {
				t.Fatalf("runServe with %s=%q: %v", c.name, c.value, err)
			}
		})
	}
}

// TestParseShardLimits checks --shard-limits: kinesis (the default) is
// Kinesis's per-shard limits, unlimited is none, anything else is refused.
func TestParseShardLimits(t *testing.T) {
	for in, want := range map[string]cluster.Limits{
		"kinesis":   cluster.KinesisLimits,
		"unlimited": {},
	} {
		got, err := parseShardLimits(in)
		if err != nil || got != want {
			t.Errorf("parseShardLimits(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "Kinesis", "none", "0"} {
		if _, err := parseShardLimits(in); err == nil {
			t.Errorf("parseShardLimits(%q) accepted", in)
		}
	}
}

// A subscription lifetime that is not positive is refused before the node
// starts.
func TestServeRefusesNonPositiveSubscriptionLifetime(t *testing.T) {
	for _, v := range []string{"0s", "-1m"} {
		err := runServe([]string{"--subscription-lifetime", v})
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "--subscription-lifetime") {
			t.Errorf("--subscription-lifetime %s: %v", v, err)
		}
	}
}

// On-demand settings that cannot work are refused before the node starts:
// a merge threshold not below the split threshold (a merged pair would
// split again), a non-positive window, fewer than 4 maximum shards, a daily
// limit of 0; a bad environment value names its variable.
func TestServeRefusesBadOnDemandSettings(t *testing.T) {
	for _, args := range [][]string{
		{"--ondemand-merge-threshold", "0.5"},
		{"--ondemand-split-threshold", "0"},
		{"--ondemand-split-after", "0s"},
		{"--ondemand-merge-after", "-1m"},
		{"--ondemand-max-shards", "3"},
		{"--scaling-ops-per-day", "0"},
		{"--mode-switches-per-day", "0"},
	} {
		err := runServe(args)
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), strings.TrimPrefix(args[0], "--")) {
			t.Errorf("%v: %v", args, err)
		}
	}
	t.Setenv("RIFFLE_ONDEMAND_SPLIT_THRESHOLD", "half")
	if err := runServe(nil); err == nil || !strings.Contains(err.Error(), "RIFFLE_ONDEMAND_SPLIT_THRESHOLD") {
		t.Errorf("RIFFLE_ONDEMAND_SPLIT_THRESHOLD=half: %v", err)
	}
}

// --raft-multiplier scales raft's timeouts together (raft refuses a lease
// longer than the heartbeat timeout) and refuses values outside 1 to 10
// before the node starts.
func TestRaftMultiplier(t *testing.T) {
	got, err := raftTiming(3)
	if err != nil {
		t.Fatal(err)
	}
	if got.HeartbeatTimeout != 3*time.Second || got.ElectionTimeout != 3*time.Second || got.LeaderLease != 1500*time.Millisecond || got.CommitTimeout != 150*time.Millisecond {
		t.Fatalf("raftTiming(3) = %+v", got)
	}
	for _, v := range []string{"0", "11", "-1"} {
		err := runServe([]string{"--raft-multiplier", v})
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "--raft-multiplier") {
			t.Errorf("--raft-multiplier %s: %v", v, err)
		}
	}
}
