package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/riffle-streams/riffle/shardlog"
)

// Rebuilding the replicas of shards that are not open, when their node is
// dead past the grace period. planMoves (moves.go) rebuilds open shards'
// replicas through raft; planClosedMoves covers the rest:
//
//   - a frozen shard runs no raft group, so its lost replica is copied
//     instead: the metadata leader names a live node that lacks it
//     (CopyFrozenCmd), that node fetches the immutable records from a
//     surviving replica (Forward.FetchRecords), writes them with the seal
//     into the shard's directory, opens it frozen, and reports it
//     (FrozenCopiedCmd), which swaps it for the dead one in Replicas;
//   - a closed shard not yet frozen (the dead replica never reported its
//     seal, so the shard cannot freeze) and a pending child of a resharding
//     in flight still run raft, so they take the raft path of open shards
//     (MoveReplicaCmd). A closed shard's new replica reports its seal once
//     it has caught up, and the shard freezes then.

// FrozenCopy is a frozen shard's replica being rebuilt on To, replacing
// the one on From.
type FrozenCopy struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// CopyFrozenCmd starts rebuilding a frozen shard's replica on From, a dead
// node, by a copy on To. Given while a copy is under way from the same
// node, it names a new target (the previous one died too).
type CopyFrozenCmd struct {
	StreamID   uint64 `json:"stream_id"`
	ShardIndex uint64 `json:"shard_index"`
	From       string `json:"from"`
	To         string `json:"to"`
}

// FrozenCopiedCmd records that To holds a complete frozen replica: it
// takes From's place in the shard's replicas.
type FrozenCopiedCmd struct {
	StreamID   uint64 `json:"stream_id"`
	ShardIndex uint64 `json:"shard_index"`
	To         string `json:"to"`
}

func (st *State) copyFrozen(c *CopyFrozenCmd) (*State, error) {
	s, sh, err := st.shardForMove(c.StreamID, c.ShardIndex)
	if err != nil {
		return st, err
	}
	switch {
	case s.Status == StreamDeleting:
		return st, fmt.Errorf("%w: stream %s is being deleted", ErrStreamInUse, s.Name)
	case !sh.Frozen:
		return st, fmt.Errorf("%w: %s is not frozen: its replicas move through raft", ErrInvalidCommand, sh.ID())
	case sh.Copying != nil && sh.Copying.From != c.From:
		return st, fmt.Errorf("%w: %s is already rebuilding its replica on %s", ErrInvalidCommand, sh.ID(), sh.Copying.From)
	case !slices.Contains(sh.Replicas, c.From):
		return st, fmt.Errorf("%w: %s has no replica on %s", ErrInvalidCommand, sh.ID(), c.From)
	case slices.Contains(sh.Replicas, c.To):
		return st, fmt.Errorf("%w: %s already has a replica on %s", ErrInvalidCommand, sh.ID(), c.To)
	}
	sh.Copying = &FrozenCopy{From: c.From, To: c.To}
	return st.withStream(s.Name, s), nil
}

func (st *State) frozenCopied(c *FrozenCopiedCmd) (*State, error) {
	s, sh, err := st.shardForMove(c.StreamID, c.ShardIndex)
	if err != nil || sh.Copying == nil || sh.Copying.To != c.To {
		return st, nil // stale report
	}
	from := sh.Copying.From
	for i, n := range sh.Replicas {
		if n == from {
			sh.Replicas[i] = c.To
		}
	}
	// The copy holds every record and the seal, durably: it counts as
	// sealed, and the shard stays frozen.
	sh.SealedOn = slices.DeleteFunc(sh.SealedOn, func(n string) bool { return n == from || n == c.To })
	sh.SealedOn = append(sh.SealedOn, c.To)
	sh.Copying = nil
	return st.withStream(s.Name, s), nil
}

// planClosedMoves runs on the metadata leader from planMoves, with its
// view of dead and alive nodes and the replica load, which it updates.
func (h *Host) planClosedMoves(ctx context.Context, st *State, dead map[string]bool, alive []string, load Load) {
	for _, s := range st.Streams {
		if s.Status == StreamDeleting {
			continue
		}
		for _, sh := range s.Shards {
			if sh.Open() || sh.Moving != nil {
				continue
			}
			if sh.Copying != nil && !dead[sh.Copying.To] {
				continue // under way
			}
			from := ""
			for _, r := range sh.Replicas {
				if dead[r] {
					from = r
					break
				}
			}
			if from == "" {
				continue
			}
			to := ""
			for _, n := range alive {
				if !slices.Contains(sh.Replicas, n) && (sh.Copying == nil || n != sh.Copying.To) && !st.IsDraining(n) &&
					(to == "" || load.Replicas[n] < load.Replicas[to]) {
					to = n
				}
			}
			if to == "" {
				continue
			}
			cmd := Command{MoveReplica: &MoveReplicaCmd{StreamID: s.ID, ShardIndex: sh.Index, From: from, To: to}}
			how := "raft"
			if sh.Frozen {
				cmd = Command{CopyFrozen: &CopyFrozenCmd{StreamID: s.ID, ShardIndex: sh.Index, From: from, To: to}}
				how = "copy of the frozen segments"
			}
			if _, err := h.meta.Propose(ctx, cmd); err != nil {
				h.logger.Warn("planning the rebuild of a closed shard's replica", "stream", s.Name, "shard", sh.ID(), "err", err)
				return
			}
			load.Replicas[to]++
			h.logger.Info("rebuild of a closed shard's replica planned", "stream", s.Name, "shard", sh.ID(),
				"from", from, "to", to, "via", how)
		}
	}
}

// frozenCopyHere reports whether this node is to receive a copy of sh.
func (h *Host) frozenCopyHere(s *Stream, sh *Shard) bool {
	return s.Status != StreamDeleting && sh.Frozen && sh.Copying != nil && sh.Copying.To == h.opts.NodeID
}

// startFrozenCopy starts, once per shard, the copy of a frozen replica to
// this node; reconciler-owned.
func (h *Host) startFrozenCopy(s *Stream, sh *Shard) {
	gid := s.GroupID(sh)
	h.mu.Lock()
	if h.copies[gid] {
		h.mu.Unlock()
		return
	}
	h.copies[gid] = true
	h.mu.Unlock()
	h.wg.Add(1)
	go h.copyFrozenReplica(s.ID, sh.Index, gid, sh.EndOffset, false)
}

// frozenCopyWanted reports whether the metadata still asks this node for
// a copy of the shard, and which replicas may serve it.
func (h *Host) frozenCopyWanted(streamID, index uint64) (peers []string, ok bool) {
	s, found := h.meta.State().StreamByID(streamID)
	if !found {
		return nil, false
	}
	sh, found := s.ShardByIndex(index)
	if !found || !h.frozenCopyHere(s, sh) {
		return nil, false
	}
	alive := h.opts.Membership.Alive()
	for _, n := range sh.Replicas {
		if n != sh.Copying.From && n != h.opts.NodeID && slices.Contains(alive, n) {
			peers = append(peers, n)
		}
	}
	return peers, true
}

// frozenRepairWanted reports whether the metadata still places a replica
// of the frozen shard on this node, and which other replicas may serve it.
func (h *Host) frozenRepairWanted(streamID, index uint64) (peers []string, ok bool) {
	s, found := h.meta.State().StreamByID(streamID)
	if !found || s.Status == StreamDeleting {
		return nil, false
	}
	sh, found := s.ShardByIndex(index)
	if !found || !sh.Frozen || !slices.Contains(sh.Replicas, h.opts.NodeID) {
		return nil, false
	}
	alive := h.opts.Membership.Alive()
	for _, n := range sh.Replicas {
		if n != h.opts.NodeID && slices.Contains(alive, n) {
			peers = append(peers, n)
		}
	}
	return peers, true
}

// copyFrozenReplica fetches a frozen shard's records from a surviving
// replica into a staging directory, moves it into place, opens it frozen
// and reports the copy, retrying for as long as the metadata wants it.
// With repair, the copy replaces a replica this node already holds in the
// metadata but cannot open (freezeReplica), and nothing is reported.
func (h *Host) copyFrozenReplica(streamID, index uint64, gid string, end uint64, repair bool) {
	defer h.wg.Done()
	defer func() {
		h.mu.Lock()
		delete(h.copies, gid)
		h.mu.Unlock()
	}()
	dir := h.shardDir(gid)
	staging := dir + ".copy" // never taken for a group's directory
	logger := h.logger.With("group", gid, "shard", ShardID(index))
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// Slower than a catch-up's retries: with no live peer to copy
			// from, this waits for one to come back.
			if sleepCtx(h.ctx, min(200*time.Millisecond<<min(attempt, 6), 10*time.Second)) != nil {
				return
			}
		}
		wantedFn := h.frozenCopyWanted
		if repair {
			wantedFn = h.frozenRepairWanted
		}
		peers, wanted := wantedFn(streamID, index)
		if !wanted {
			os.RemoveAll(staging)
			return
		}
		if err := os.RemoveAll(staging); err != nil {
			logger.Warn("cannot clear a frozen copy's staging directory", "err", err)
			continue
		}
		start := time.Now()
		fetch := func(ctx context.Context, req shardlog.FetchRequest, sink func(shardlog.FetchedChunk) error) error {
			return h.fetchFromPeers(ctx, streamID, index, peers, req, sink)
		}
		err := shardlog.CopyFrozen(h.ctx, staging, end, shardlog.LogOptions{
			SegmentMaxBytes: h.opts.SegmentMaxBytes, SegmentMaxAge: h.opts.SegmentMaxAge, Logger: logger,
		}, fetch)
		if err == nil {
			// A directory left by an earlier replica of the group here
			// (one that moved away) is stale: the copy replaces it.
			err = h.removeShardData(gid)
		}
		if err == nil {
			err = os.Rename(staging, dir)
		}
		var f *shardlog.Shard
		if err == nil {
			f, err = shardlog.OpenFrozen(h.ctx, dir, fetch, logger)
		}
		if err != nil {
			if h.ctx.Err() == nil {
				logger.Warn("copying a frozen replica failed; will retry", "peers", peers, "attempt", attempt+1, "err", err)
			}
			continue
		}
		h.mu.Lock()
		h.setShardLocked(gid, f)
		h.mu.Unlock()
		logger.Info("frozen replica copied from a peer", "records", end-f.Log().TrimOffset(),
			"elapsed", time.Since(start).Round(time.Millisecond), "repair", repair)
		if repair {
			return
		}
		h.proposeUntilDone(h.ctx, Command{FrozenCopied: &FrozenCopiedCmd{StreamID: streamID, ShardIndex: index, To: h.opts.NodeID}})
		return
	}
}

// fetchFromPeers copies records [req.From, req.To) from peers in turn,
// each resuming after the last record the one before delivered.
func (h *Host) fetchFromPeers(ctx context.Context, streamID, index uint64, peers []string, req shardlog.FetchRequest,
	sink func(shardlog.FetchedChunk) error) error {
	next, failures, err := h.fetchRound(ctx, streamID, index, peers, req.From, req.To, sink)
	if err != nil || next >= req.To {
		return err
	}
	if len(failures) == 0 {
		return fmt.Errorf("cluster: no live replica of stream %d shard %d to copy from: %w", streamID, index, ErrNoReplica)
	}
	return errors.Join(failures...)
}
