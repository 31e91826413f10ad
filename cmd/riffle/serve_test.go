package main

import (
	"errors"
	"strings"
	"testing"

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
