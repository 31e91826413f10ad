package cluster

import "time"

// A shard's lifetime, as ListShards' filters need it: when it opened, when
// it closed, and whether its records have all expired. Everything here is
// computed from the metadata alone, so every node answers alike, whether or
// not it holds a replica of the shard.

// ShardOpenedAt is when sh began taking writes. Shards recorded before
// opening times were kept count from the stream's creation.
func (s *Stream) ShardOpenedAt(sh *Shard) time.Time {
	if sh.OpenedAt.IsZero() {
		return s.CreatedAt
	}
	return sh.OpenedAt
}

// ShardClosedAt is when a resharding closed sh; ok is false while it is
// open (or pending). A shard closed before closing times were kept counts
// as closed at the stream's creation, so that the timestamp filters list
// its newest descendants rather than it.
func (s *Stream) ShardClosedAt(sh *Shard) (at time.Time, ok bool) {
	if !sh.Closed() {
		return time.Time{}, false
	}
	if sh.ClosedAt.IsZero() {
		return s.CreatedAt, true
	}
	return sh.ClosedAt, true
}

// ShardExpired reports whether every record of sh is older than the
// stream's retention at now: a closed shard whose close lies more than the
// retention period back (its last record arrived before the close). Open
// shards never expire as a whole. A closed shard without a recorded close
// time is kept: listing a drained shard costs a reader one empty read,
// hiding one that still holds records would lose them.
func (s *Stream) ShardExpired(sh *Shard, now time.Time) bool {
	if !sh.Closed() || sh.ClosedAt.IsZero() {
		return false
	}
	return sh.ClosedAt.Before(now.Add(-time.Duration(s.RetentionHours) * time.Hour))
}
