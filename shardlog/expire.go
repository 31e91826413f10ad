package shardlog

// Retention of a sealed shard. DeleteBefore never deletes the active
// segment, because an open shard appends to it. A sealed shard appends
// nothing more, so its last segment would otherwise keep its records past
// retention forever.

// ExpireSealed is DeleteBefore for a log that takes no more records (a
// sealed shard's): when the active segment's records are all below ts too,
// an empty segment starting where it ends takes its place first, so that
// every segment can expire. Afterwards TrimOffset() equals NextOffset(), and
// NextOffset(), LastApplied() and LastTimestamp() are unchanged: a reader at
// the trim horizon is at the end of the shard.
func (l *Log) ExpireSealed(ts int64) (int, error) {
	l.wmu.Lock()
	if l.closed {
		l.wmu.Unlock()
		return 0, ErrClosed
	}
	seg := l.active.Load()
	if seg.next.Load() > seg.baseOffset && seg.lastTS.Load() < ts && l.failed == nil {
		if _, err := l.roll(seg); err != nil {
			l.wmu.Unlock()
			return 0, err
		}
	}
	l.wmu.Unlock()
	return l.DeleteBefore(ts)
}

// ExpireBefore deletes the replica's segments whose records are all older
// than ts. Once the replica has applied its seal and holds every record
// below it, the last segment may go too (Log.ExpireSealed); before that
// the active segment stays, as it may still be appended to.
func (s *Shard) ExpireBefore(ts int64) (int, error) {
	if sl, ok := s.Sealed(); ok && s.log.NextOffset() >= sl.Offset {
		return s.log.ExpireSealed(ts)
	}
	return s.log.DeleteBefore(ts)
}
