//go:build fault

package fault

import (
	"slices"
	"testing"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// A reader of a merged child starts only once the readers of both its
// parents ended on that node (contract 5 for readers: a key's parent
// records before its child's); a split's children start at once. Readers
// on another node, and the subscribers, keep their own count.
func TestEndShardWaitsForEveryParent(t *testing.T) {
	w := &workload{ended: map[string]bool{}, started: map[string]bool{}}
	merged := []*rifflev1.ChildShard{{ShardId: "s2", ParentShards: []string{"s0", "s1"}}}
	if got := w.endShard("n1", "s0", merged); len(got) != 0 {
		t.Fatalf("child ready after one of its two parents ended: %v", got)
	}
	if got := w.endShard("sub", "s1", merged); len(got) != 0 {
		t.Fatalf("the subscribers' end of s1 counted for n1's readers: %v", got)
	}
	if got := w.endShard("n1", "s1", merged); !slices.Equal(got, []string{"s2"}) {
		t.Fatalf("after both parents ended: %v, want [s2]", got)
	}
	split := []*rifflev1.ChildShard{{ShardId: "s3", ParentShards: []string{"s2"}}, {ShardId: "s4", ParentShards: []string{"s2"}}}
	if got := w.endShard("n2", "s2", split); !slices.Equal(got, []string{"s3", "s4"}) {
		t.Fatalf("split children: %v, want [s3 s4]", got)
	}
	if !w.claim("n1/s2") || w.claim("n1/s2") {
		t.Fatal("a reader must be started exactly once")
	}
}
