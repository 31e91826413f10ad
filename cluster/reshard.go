package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	internalv1 "github.com/riffle-streams/riffle/proto/riffle/internalapi/v1"
	"github.com/riffle-streams/riffle/shardlog"
)

// Live resharding. A split or merge runs in three metadata steps, each
// idempotent, so that a new metadata leader resumes wherever its
// predecessor stopped (the state says where):
//
//  1. SplitShardCmd / MergeShardsCmd: the stream turns UPDATING and the
//     children are added Pending (their groups start and elect; they take
//     no writes). The parents keep taking writes.
//  2. Once every pending child is Ready, the metadata leader's controller
//     seals each parent through the parent's own raft log (SealShard, on
//     the parent's leader). From then on the parent refuses writes with
//     shardlog.ErrShardSealed, which proves they were not applied.
//  3. ShardsSwitchedCmd, one metadata change, closes the parents at their
//     seal offsets and opens the children: every hash key moves from its
//     parent to its child at once. The stream is ACTIVE again.
//
// A write refused by a sealed parent is routed by the gateway to the child
// once the switch is applied, so it is neither lost nor acknowledged twice;
// every record a parent acknowledged lies below its seal, and every record
// of a child was written after the seal, which gives per-key order across
// the lineage (DESIGN.md contract 5).

// SplitShardCmd starts splitting an open shard at NewStartingHashKey.
type SplitShardCmd struct {
	Name               string `json:"name"`
	Shard              string `json:"shard"`
	NewStartingHashKey string `json:"new_starting_hash_key"`
	// Placement[i] lists the nodes of child i (lower range first).
	Placement [][]string `json:"placement"`
	// OnDemand marks a split proposed by the on-demand controller: only
	// those apply to an ON_DEMAND stream, and only to one.
	OnDemand bool `json:"on_demand,omitempty"`
}

// MergeShardsCmd starts merging two open shards with adjacent ranges.
type MergeShardsCmd struct {
	Name     string `json:"name"`
	Shard    string `json:"shard"`
	Adjacent string `json:"adjacent"`
	// Placement[0] lists the nodes of the child.
	Placement [][]string `json:"placement"`
	// OnDemand marks a merge proposed by the on-demand controller.
	OnDemand bool `json:"on_demand,omitempty"`
}

// ShardEnd is where a sealed parent ended: EndOffset is exclusive.
type ShardEnd struct {
	Index     uint64 `json:"index"`
	EndOffset uint64 `json:"end_offset"`
}

// ShardsSwitchedCmd closes the sealed parents of a stream's pending
// children and opens the children, in one change.
type ShardsSwitchedCmd struct {
	StreamID uint64     `json:"stream_id"`
	Ends     []ShardEnd `json:"ends"`
	// At is the switch's time on the proposer's clock: the parents'
	// ClosedAt and the children's OpenedAt (ListShards' timestamp filters).
	At time.Time `json:"at,omitzero"`
}

// openShardForReshard finds an open shard of an ACTIVE stream: a user's
// split or merge is refused while another resharding or a scaling holds
// the stream UPDATING. The user reshards PROVISIONED streams only, and the
// on-demand controller (onDemand) ON_DEMAND streams only, so that a split
// it decided before a mode switch does not apply after it.
func (st *State) openShardForReshard(name, id string, onDemand bool) (*Stream, *Shard, error) {
	s, ok := st.Streams[name]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", ErrStreamNotFound, name)
	}
	switch {
	case s.Mode == ModeOnDemand && !onDemand:
		return nil, nil, fmt.Errorf("%w: SplitShard and MergeShards are not supported for ON_DEMAND stream %s; the cluster scales it (UpdateStreamMode to PROVISIONED first)", ErrInvalidCommand, name)
	case s.Mode != ModeOnDemand && onDemand:
		return nil, nil, fmt.Errorf("%w: %s is no longer ON_DEMAND", ErrInvalidCommand, name)
	}
	if s.Status != StreamActive {
		return nil, nil, fmt.Errorf("%w: %s is %s", ErrStreamInUse, name, s.Status)
	}
	sh, err := s.openShard(id)
	return s, sh, err
}

// openShard finds an open shard of s, whatever the stream's status.
func (s *Stream) openShard(id string) (*Shard, error) {
	sh, ok := s.ShardByID(id)
	if !ok {
		return nil, fmt.Errorf("%w: shard %s of %s", ErrStreamNotFound, id, s.Name)
	}
	if !sh.Open() {
		return nil, fmt.Errorf("%w: %s is closed", ErrInvalidCommand, id)
	}
	return sh, nil
}

// CheckSplit validates a split against st; the same checks run when the
// command applies.
func (st *State) CheckSplit(name, shard, key string) (lower, upper HashRange, err error) {
	return st.checkSplit(name, shard, key, false)
}

// checkSplit is CheckSplit for the user or, with onDemand, the on-demand
// controller.
func (st *State) checkSplit(name, shard, key string, onDemand bool) (lower, upper HashRange, err error) {
	_, sh, err := st.openShardForReshard(name, shard, onDemand)
	if err != nil {
		return HashRange{}, HashRange{}, err
	}
	return splitRanges(sh, key)
}

// splitRanges returns the children's ranges of splitting sh at key.
func splitRanges(sh *Shard, key string) (lower, upper HashRange, err error) {
	k, perr := ParseHashKey(key)
	if perr != nil {
		return HashRange{}, HashRange{}, fmt.Errorf("%w: new_starting_hash_key: %v", ErrInvalidCommand, perr)
	}
	r := sh.HashRange()
	if k.Cmp(r.Start) <= 0 || k.Cmp(r.End) > 0 {
		return HashRange{}, HashRange{}, fmt.Errorf("%w: new_starting_hash_key %s is not strictly inside %s's range [%s, %s]",
			ErrInvalidCommand, key, sh.ID(), sh.HashStart, sh.HashEnd)
	}
	below := new(big.Int).Sub(k, big.NewInt(1))
	return HashRange{Start: r.Start, End: below}, HashRange{Start: k, End: r.End}, nil
}

// CheckMerge validates a merge against st and returns the child's range.
func (st *State) CheckMerge(name, shard, adjacent string) (HashRange, error) {
	return st.checkMerge(name, shard, adjacent, false)
}

// checkMerge is CheckMerge for the user or, with onDemand, the on-demand
// controller.
func (st *State) checkMerge(name, shard, adjacent string, onDemand bool) (HashRange, error) {
	_, a, err := st.openShardForReshard(name, shard, onDemand)
	if err != nil {
		return HashRange{}, err
	}
	_, b, err := st.openShardForReshard(name, adjacent, onDemand)
	if err != nil {
		return HashRange{}, err
	}
	return mergeRange(a, b)
}

// mergeRange returns the range of merging a and b, which must be adjacent.
func mergeRange(a, b *Shard) (HashRange, error) {
	ra, rb := a.HashRange(), b.HashRange()
	next := func(x *big.Int) *big.Int { return new(big.Int).Add(x, big.NewInt(1)) }
	switch {
	case next(ra.End).Cmp(rb.Start) == 0:
		return HashRange{Start: ra.Start, End: rb.End}, nil
	case next(rb.End).Cmp(ra.Start) == 0:
		return HashRange{Start: rb.Start, End: ra.End}, nil
	}
	return HashRange{}, fmt.Errorf("%w: %s and %s are not adjacent", ErrInvalidCommand, a.ID(), b.ID())
}

func (st *State) splitShard(c *SplitShardCmd) (*State, error) {
	lower, upper, err := st.checkSplit(c.Name, c.Shard, c.NewStartingHashKey, c.OnDemand)
	if err != nil {
		return st, err
	}
	if len(c.Placement) != 2 {
		return st, fmt.Errorf("%w: placement for %d children, want 2", ErrInvalidCommand, len(c.Placement))
	}
	s := st.Streams[c.Name].clone()
	s.addChildren([]HashRange{lower, upper}, c.Placement, c.Shard, "")
	return st.withStream(s.Name, s), nil
}

func (st *State) mergeShards(c *MergeShardsCmd) (*State, error) {
	r, err := st.checkMerge(c.Name, c.Shard, c.Adjacent, c.OnDemand)
	if err != nil {
		return st, err
	}
	if len(c.Placement) != 1 {
		return st, fmt.Errorf("%w: placement for %d children, want 1", ErrInvalidCommand, len(c.Placement))
	}
	s := st.Streams[c.Name].clone()
	s.addChildren([]HashRange{r}, c.Placement, c.Shard, c.Adjacent)
	return st.withStream(s.Name, s), nil
}

// addChildren appends pending children and turns the stream UPDATING.
func (s *Stream) addChildren(ranges []HashRange, placement [][]string, parent, adjacent string) {
	for i, r := range ranges {
		s.Shards = append(s.Shards, &Shard{
			Index: s.NextShardIndex, HashStart: r.Start.String(), HashEnd: r.End.String(),
			Parent: parent, AdjacentParent: adjacent, Pending: true,
			Replicas: append([]string(nil), placement[i]...), hashRange: r,
		})
		s.NextShardIndex++
	}
	s.Status = StreamUpdating
}

// PendingParents lists the shards a stream's pending children replace, in
// index order; empty when no resharding is in progress.
func (s *Stream) PendingParents() []*Shard {
	var out []*Shard
	seen := map[string]bool{}
	for _, sh := range s.Shards {
		if !sh.Pending {
			continue
		}
		for _, id := range []string{sh.Parent, sh.AdjacentParent} {
			if id == "" || seen[id] {
				continue
			}
			seen[id] = true
			if p, ok := s.ShardByID(id); ok {
				out = append(out, p)
			}
		}
	}
	return out
}

func (st *State) shardsSwitched(c *ShardsSwitchedCmd) (*State, error) {
	s, ok := st.streamByID(c.StreamID)
	if !ok {
		return st, nil
	}
	parents := s.PendingParents()
	if len(parents) == 0 {
		return st, nil // already switched: a repeated proposal
	}
	ends := map[uint64]uint64{}
	for _, e := range c.Ends {
		ends[e.Index] = e.EndOffset
	}
	for _, p := range parents {
		if _, ok := ends[p.Index]; !ok {
			return st, fmt.Errorf("%w: no end for parent %s", ErrInvalidCommand, p.ID())
		}
	}
	s = s.clone()
	for _, sh := range s.Shards {
		if end, ok := ends[sh.Index]; ok && !sh.Closed() {
			sh.EndOffset = end
			// The ending number is the last record's; an empty parent ends
			// at its starting number (EndOffset 0 says it holds nothing).
			sh.EndingSequence = shardlog.SequenceNumber(sh.Index, max(end, 1)-1)
			sh.ClosedAt = c.At
		}
		if sh.Pending {
			sh.OpenedAt = c.At
		}
		sh.Pending = false
	}
	// A scaling keeps the stream UPDATING until its last step.
	if s.ScalingTarget == 0 {
		s.Status = StreamActive
	}
	return st.withStream(s.Name, s), nil
}

// SplitShard places the children of a split and proposes it; the
// controller completes it. It returns once the split has started.
func (h *Host) SplitShard(ctx context.Context, name, shard, key string) error {
	st := h.meta.State()
	if _, _, err := st.CheckSplit(name, shard, key); err != nil {
		return err
	}
	c := SplitShardCmd{Name: name, Shard: shard, NewStartingHashKey: key,
		Placement: h.place(st, 2)}
	return h.ProposeMeta(ctx, Command{SplitShard: &c})
}

// MergeShards places the child of a merge and proposes it; the controller
// completes it. It returns once the merge has started.
func (h *Host) MergeShards(ctx context.Context, name, shard, adjacent string) error {
	st := h.meta.State()
	if _, err := st.CheckMerge(name, shard, adjacent); err != nil {
		return err
	}
	c := MergeShardsCmd{Name: name, Shard: shard, Adjacent: adjacent,
		Placement: h.place(st, 1)}
	return h.ProposeMeta(ctx, Command{MergeShards: &c})
}

// sealWait bounds one attempt to seal a parent.
const sealWait = 5 * time.Second

// advanceReshards runs on the metadata leader: for every stream whose
// pending children have all elected, it seals the parents and switches the
// hash ranges. A failure leaves the state as it is; the next pass retries.
// It reports whether it switched any stream.
func (h *Host) advanceReshards(ctx context.Context) bool {
	switched := false
	for _, s := range h.meta.State().Streams {
		if s.Status != StreamUpdating {
			continue
		}
		parents := s.PendingParents()
		if len(parents) == 0 {
			continue
		}
		ready := true
		for _, sh := range s.Shards {
			ready = ready && (!sh.Pending || sh.Ready)
		}
		if !ready {
			continue
		}
		sealStart := time.Now()
		// The parents are sealed in parallel: each one's writes wait from
		// its seal to the switch.
		ends := make([]ShardEnd, len(parents))
		errs := make([]error, len(parents))
		var wg sync.WaitGroup
		for i, p := range parents {
			wg.Add(1)
			go func() {
				defer wg.Done()
				end, err := h.SealShard(ctx, s, p)
				ends[i], errs[i] = ShardEnd{Index: p.Index, EndOffset: end}, err
			}()
		}
		wg.Wait()
		err := errors.Join(errs...)
		if err != nil {
			h.logger.Warn("sealing a parent shard failed; will retry", "stream", s.Name, "err", err)
			continue
		}
		// The switch's time is decided here, after every seal, so that the
		// parents' records all arrived before it; milliseconds, as arrival
		// times are.
		cmd := ShardsSwitchedCmd{StreamID: s.ID, Ends: ends, At: time.Now().UTC().Truncate(time.Millisecond)}
		pctx, cancel := context.WithTimeout(ctx, sealWait)
		err = h.ProposeMeta(pctx, Command{ShardsSwitched: &cmd})
		cancel()
		if err != nil {
			h.logger.Warn("switching to the child shards failed; will retry", "stream", s.Name, "err", err)
			continue
		}
		// From the first seal to the switch, writes to the parents wait:
		// this is the write pause a resharding costs.
		h.logger.Info("resharding done", "stream", s.Name, "ends", cmd.Ends,
			"sealToSwitch", time.Since(sealStart).Round(time.Millisecond))
		switched = true
	}
	return switched
}

// SealShard seals a shard through its leader, here or on a peer, and
// returns its exclusive end offset. Repeating it returns the same end.
func (h *Host) SealShard(ctx context.Context, s *Stream, sh *Shard) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, sealWait)
	defer cancel()
	hint := ""
	for attempt := 0; ; attempt++ {
		target := h.shardLeaderGuess(s, sh, hint, attempt)
		var end uint64
		var err error
		if target == h.opts.NodeID {
			end, err = h.sealLocal(ctx, s, sh)
		} else {
			end, err = h.forwardSeal(ctx, target, s, sh)
		}
		if err == nil || !notApplied(err) || attempt == routeAttempts-1 {
			return end, err
		}
		hint = ""
		if nl, ok := err.(*notLeaderError); ok && nl.leader != target {
			hint = nl.leader
			continue
		}
		if err := sleepCtx(ctx, retryDelay(attempt)); err != nil {
			return 0, err
		}
	}
}

func (h *Host) sealLocal(ctx context.Context, s *Stream, sh *Shard) (uint64, error) {
	r, err := h.Shard(s, sh)
	if err != nil {
		return 0, err
	}
	if sl, ok := r.Sealed(); ok {
		return sl.Offset, nil
	}
	if r.Leader() == "" {
		wctx, cancel := context.WithTimeout(ctx, leaderWait)
		_ = r.WaitLeader(wctx)
		cancel()
	}
	if leader := string(r.Leader()); leader != h.opts.NodeID {
		return 0, &notLeaderError{leader: leader, err: shardlog.ErrNotLeader}
	}
	sl, err := r.Seal(ctx)
	if err != nil {
		return 0, err
	}
	return sl.Offset, nil
}

func (h *Host) forwardSeal(ctx context.Context, target string, s *Stream, sh *Shard) (uint64, error) {
	client, err := h.forwardClient(target)
	if err != nil {
		return 0, err
	}
	resp, err := client.SealShard(ctx, &internalv1.SealShardRequest{StreamId: s.ID, ShardIndex: sh.Index})
	if err != nil {
		return 0, transportError(target, err)
	}
	return resp.EndOffset, fromForwardError(resp.Error)
}

// SealShard implements the internal Forward service: it seals a shard on
// this node, which must lead it.
func (s forwardServer) SealShard(ctx context.Context, req *internalv1.SealShardRequest) (*internalv1.SealShardResponse, error) {
	st, ok := s.h.meta.State().StreamByID(req.StreamId)
	var sh *Shard
	if ok {
		sh, ok = st.ShardByIndex(req.ShardIndex)
	}
	if !ok {
		return &internalv1.SealShardResponse{Error: &internalv1.ForwardError{
			Kind: internalv1.ForwardError_KIND_NO_REPLICA, Message: "shard unknown on this node"}}, nil
	}
	end, err := s.h.sealLocal(ctx, st, sh)
	if err != nil {
		leader := ""
		if r, rerr := s.h.Shard(st, sh); rerr == nil {
			leader = string(r.Leader())
		}
		return &internalv1.SealShardResponse{Error: toForwardError(err, leader)}, nil
	}
	return &internalv1.SealShardResponse{EndOffset: end}, nil
}
