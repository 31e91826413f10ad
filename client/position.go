package client

import (
	"errors"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// ErrConsumerClosed is returned by Next once a ShardReader or Subscriber is
// closed.
var ErrConsumerClosed = errors.New("client: consumer closed")

// ErrOrderViolation is returned when the broker delivers a shard's records
// out of order, repeats one, or names a position that would skip or repeat
// records. The broker promises never to; the consumers check rather than
// hide it.
var ErrOrderViolation = errors.New("client: records out of order")

// StartingPosition is where a consumer starts reading a shard: the iterator
// types of GetShardIterator. The zero value is TrimHorizon().
type StartingPosition struct {
	// Type is the iterator type.
	Type rifflev1.ShardIteratorType
	// SequenceNumber is the position of AT_ and AFTER_SEQUENCE_NUMBER.
	SequenceNumber string
	// Timestamp is the position of AT_TIMESTAMP.
	Timestamp time.Time
}

// TrimHorizon starts at the oldest record the shard retains.
func TrimHorizon() StartingPosition {
	return StartingPosition{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_TRIM_HORIZON}
}

// Latest starts after the last record committed when reading starts.
func Latest() StartingPosition {
	return StartingPosition{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_LATEST}
}

// AtSequenceNumber starts at the record with sequence number seq.
func AtSequenceNumber(seq string) StartingPosition {
	return StartingPosition{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_SEQUENCE_NUMBER, SequenceNumber: seq}
}

// AfterSequenceNumber starts after the record with sequence number seq:
// where a consumer that processed seq resumes.
func AfterSequenceNumber(seq string) StartingPosition {
	return StartingPosition{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AFTER_SEQUENCE_NUMBER, SequenceNumber: seq}
}

// AtTimestamp starts at the first record that arrived at or after t.
func AtTimestamp(t time.Time) StartingPosition {
	return StartingPosition{Type: rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_TIMESTAMP, Timestamp: t}
}

func (s StartingPosition) withDefault() StartingPosition {
	if s.Type == rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_UNSPECIFIED {
		return TrimHorizon()
	}
	return s
}

func (s StartingPosition) proto() *rifflev1.StartingPosition {
	s = s.withDefault()
	p := &rifflev1.StartingPosition{Type: s.Type, SequenceNumber: s.SequenceNumber}
	if s.Type == rifflev1.ShardIteratorType_SHARD_ITERATOR_TYPE_AT_TIMESTAMP {
		p.Timestamp = timestamppb.New(s.Timestamp)
	}
	return p
}

func (s StartingPosition) iteratorRequest(stream, shard string) *rifflev1.GetShardIteratorRequest {
	p := s.proto()
	return &rifflev1.GetShardIteratorRequest{
		StreamName: stream, ShardId: shard,
		ShardIteratorType: p.Type, StartingSequenceNumber: p.SequenceNumber, Timestamp: p.Timestamp,
	}
}

// Batch is records of one shard, in the shard's order.
type Batch struct {
	// ShardID is the shard the records come from.
	ShardID string
	// Records are in increasing sequence-number order.
	Records []*rifflev1.Record
	// MillisBehindLatest is how far behind the shard's tip the consumer
	// was after these records (0 at the tip).
	MillisBehindLatest int64
}

// compareSequence orders two sequence numbers (decimal strings).
func compareSequence(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// checkAscending checks that recs follow after (exclusive; "" for no bound)
// in strictly increasing order, and returns the last one's number.
func checkAscending(shard, after string, recs []*rifflev1.Record) (string, error) {
	last := after
	for _, r := range recs {
		seq := r.GetSequenceNumber()
		if last != "" && compareSequence(seq, last) <= 0 {
			return "", &orderError{shard: shard, seq: seq, after: last}
		}
		last = seq
	}
	return last, nil
}

type orderError struct{ shard, seq, after string }

func (e *orderError) Error() string {
	return ErrOrderViolation.Error() + ": " + e.shard + ": record " + e.seq + " delivered after " + e.after
}

func (e *orderError) Is(target error) bool { return target == ErrOrderViolation }

// lineage decides when a consumer that follows child shards may start a
// child: once every parent it has been reading has ended. A parent it was
// never asked to read (the other half of a merge) is not waited for, so a
// consumer of one parent reads the merged child after its own parent, not
// after the other parent's records.
type lineage struct {
	reading  map[string]bool     // started, ended or not
	ended    map[string]bool     // reached the end of a closed shard
	waiting  map[string][]string // child -> parents, not started yet
	children []string            // waiting, in discovery order
}

func newLineage(starts ...string) *lineage {
	l := &lineage{
		reading: map[string]bool{},
		ended:   map[string]bool{},
		waiting: map[string][]string{},
	}
	for _, id := range starts {
		l.reading[id] = true
	}
	return l
}

// end records that shard ended with children and returns the shards to
// start now, marking them read.
func (l *lineage) end(shard string, children []*rifflev1.ChildShard) []string {
	l.ended[shard] = true
	for _, c := range children {
		id := c.GetShardId()
		if l.reading[id] {
			continue
		}
		if _, ok := l.waiting[id]; ok {
			continue
		}
		parents := c.GetParentShards()
		if len(parents) == 0 {
			parents = []string{shard}
		}
		l.waiting[id] = parents
		l.children = append(l.children, id)
	}
	var start []string
	kept := l.children[:0]
	for _, id := range l.children {
		if l.ready(l.waiting[id]) {
			start = append(start, id)
			l.reading[id] = true
			delete(l.waiting, id)
			continue
		}
		kept = append(kept, id)
	}
	l.children = kept
	return start
}

func (l *lineage) ready(parents []string) bool {
	for _, p := range parents {
		if l.reading[p] && !l.ended[p] {
			return false
		}
	}
	return true
}
