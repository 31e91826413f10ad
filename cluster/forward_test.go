package cluster

import (
	"errors"
	"fmt"
	"testing"

	"github.com/riffle-streams/riffle/shardlog"
)

// A forwarded request's error must keep its kind across the wire: the
// gateway on the calling node picks the Kinesis exception from it.
func TestForwardErrorRoundTrip(t *testing.T) {
	for _, sentinel := range []error{ErrNotLeader, ErrStreamNotFound, ErrStreamExists, ErrStreamInUse, ErrInvalidCommand,
		ErrNoReplica, ErrConsumerExists, ErrConsumerNotFound, ErrConsumerLimit, ErrStreamHasConsumers, ErrThrottled, shardlog.ErrShardSealed} {
		err := fromForwardError(toForwardError(fmt.Errorf("context: %w", sentinel), "n2"))
		if sentinel == ErrNotLeader {
			var nl *notLeaderError
			if !errors.As(err, &nl) || nl.leader != "n2" {
				t.Errorf("%v came back as %v", sentinel, err)
			}
			continue
		}
		if !errors.Is(err, sentinel) {
			t.Errorf("%v came back as %v", sentinel, err)
		}
	}
}
