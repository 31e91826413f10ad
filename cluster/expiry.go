package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The end of a closed shard's life: once retention has passed its last
// record (Stream.ShardExpired), the metadata leader removes it from the
// stream (ExpireShardsCmd), every node's reconciler stops its replica and
// deletes its directory, and it is no longer listed. Its index is never
// reused (NextShardIndex is kept), and its children still name it as
// their parent, as Kinesis's do.

// ExpireShardsCmd removes closed shards whose records have all expired at
// At, the proposer's time. Applying it checks each shard again against the
// stream's retention then, so a shard that a retention increase has kept
// meanwhile stays; open, pending and unknown shards are never removed.
type ExpireShardsCmd struct {
	StreamID uint64    `json:"stream_id"`
	Shards   []uint64  `json:"shards"`
	At       time.Time `json:"at"`
}

func (st *State) expireShards(c *ExpireShardsCmd) (*State, error) {
	s, ok := st.streamByID(c.StreamID)
	if !ok || s.Status == StreamDeleting {
		return st, nil
	}
	expired := func(sh *Shard) bool { return slices.Contains(c.Shards, sh.Index) && s.ShardExpired(sh, c.At) }
	if !slices.ContainsFunc(s.Shards, expired) {
		return st, nil
	}
	s = s.clone()
	s.Shards = slices.DeleteFunc(s.Shards, expired)
	return st.withStream(s.Name, s), nil
}

// ExpiredShards lists the indexes of s's closed shards whose records have
// all expired at now.
func (s *Stream) ExpiredShards(now time.Time) []uint64 {
	var out []uint64
	for _, sh := range s.Shards {
		if s.ShardExpired(sh, now) {
			out = append(out, sh.Index)
		}
	}
	return out
}

// frozenElsewhere reports whether sh is frozen and this node neither holds
// nor receives a replica of it: a frozen shard never runs raft again, so a
// leftover copy here is of no use.
func (h *Host) frozenElsewhere(s *Stream, sh *Shard) bool {
	return sh.Frozen && !slices.Contains(sh.Replicas, h.opts.NodeID) && !h.frozenCopyHere(s, sh)
}

// expireClosedShards runs on the metadata leader: it proposes the removal
// of every stream's expired closed shards.
func (h *Host) expireClosedShards(ctx context.Context, now time.Time) {
	for _, s := range h.meta.State().Streams {
		if s.Status == StreamDeleting {
			continue
		}
		idx := s.ExpiredShards(now)
		if len(idx) == 0 {
			continue
		}
		cmd := ExpireShardsCmd{StreamID: s.ID, Shards: idx, At: now.UTC().Truncate(time.Millisecond)}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := h.meta.Propose(pctx, Command{ExpireShards: &cmd})
		cancel()
		if err != nil {
			h.logger.Warn("removing expired closed shards", "stream", s.Name, "err", err)
			return
		}
		ids := make([]string, len(idx))
		for i, x := range idx {
			ids[i] = ShardID(x)
		}
		h.logger.Info("closed shards expired: removed from the metadata", "stream", s.Name, "shards", ids)
	}
}

// sweepShardDirs deletes the directories of shards that the metadata no
// longer holds (expired, or of a deleted stream), or that are frozen with
// their replicas elsewhere (copied away while this node was dead), and that
// run no replica here: the reconciler stops running ones, this catches
// those that were not running, e.g. removed while the node was down. Only
// ids the metadata has already handed out are judged, so a directory of a
// shard this replica has not heard of yet is left alone.
func (h *Host) sweepShardDirs(st *State) {
	root := filepath.Join(h.opts.DataDir, "shards")
	entries, err := os.ReadDir(root)
	if err != nil {
		return // no shards yet
	}
	for _, e := range entries {
		var streamID, index uint64
		if _, err := fmt.Sscanf(e.Name(), "s%d-%d", &streamID, &index); err != nil || fmt.Sprintf("s%d-%d", streamID, index) != e.Name() {
			continue
		}
		if streamID > st.NextStreamID {
			continue
		}
		if s, ok := st.streamByID(streamID); ok {
			sh, found := s.ShardByIndex(index)
			if index >= s.NextShardIndex || found && !h.frozenElsewhere(s, sh) {
				continue
			}
		}
		h.mu.RLock()
		_, running := h.shards[e.Name()]
		running = running || h.hib.asleep[e.Name()] != nil
		h.mu.RUnlock()
		if running || h.removing[e.Name()] {
			continue
		}
		if err := h.removeShardData(e.Name()); err != nil {
			h.logger.Warn("removing the directory of a shard gone from the metadata", "group", e.Name(), "err", err)
			continue
		}
		h.logger.Info("directory of a shard gone from the metadata removed", "group", e.Name())
	}
}
