package main

import (
	"errors"
	"strings"
	"testing"
)

// TestServeRefusesBadEnvironment checks that a malformed environment
// variable stops serve with a usage error instead of silently falling back
// to the default.
func TestServeRefusesBadEnvironment(t *testing.T) {
	for _, c := range []struct{ name, value string }{
		{"RIFFLE_BOOTSTRAP_EXPECT", "three"},
		{"RIFFLE_DEAD_NODE_GRACE", "60"},
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
