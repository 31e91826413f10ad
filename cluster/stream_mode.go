package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Capacity modes. A PROVISIONED stream has the shards its owner asks for
// (CreateStream's count, SplitShard, MergeShards, UpdateShardCount); an
// ON_DEMAND stream starts with OnDemandInitialShards and the metadata
// leader's on-demand controller (ondemand.go) splits and merges it, so the
// user's resharding calls are refused for it. UpdateStreamModeCmd switches
// between the two: the stream is UPDATING until the controller confirms the
// switch (StreamModeSwitchedCmd), or, when a PROVISIONED stream with fewer
// than the on-demand minimum of open shards turns ON_DEMAND, until a
// uniform scaling has brought it up to that minimum.

// OnDemandInitialShards is how many shards a new ON_DEMAND stream gets, and
// the fewest open shards the on-demand controller merges down to: Kinesis
// gives a new on-demand stream 4 MiB/s of write capacity.
const OnDemandInitialShards = 4

// Kinesis's rolling-day limits, the defaults of HostOptions.
const (
	// DefaultScalingOpsPerDay bounds UpdateShardCount calls per stream in a
	// rolling 24 hours.
	DefaultScalingOpsPerDay = 10
	// DefaultModeSwitchesPerDay bounds UpdateStreamMode calls per stream in
	// a rolling 24 hours.
	DefaultModeSwitchesPerDay = 2
)

// ErrDailyLimit: a stream used up its UpdateShardCount or UpdateStreamMode
// calls of the last 24 hours (Kinesis's LimitExceededException).
var ErrDailyLimit = errors.New("cluster: too many operations on the stream in 24 hours")

// UpdateStreamModeCmd switches a stream's capacity mode.
type UpdateStreamModeCmd struct {
	Name string     `json:"name"`
	Mode StreamMode `json:"mode"`
	// At is the call's time on the proposer's clock, counted against
	// DailyLimit switches in the 24 hours before it (0: no limit).
	At         time.Time `json:"at"`
	DailyLimit int       `json:"daily_limit,omitempty"`
}

// StreamModeSwitchedCmd ends a mode switch: the stream is ACTIVE again.
type StreamModeSwitchedCmd struct {
	StreamID uint64 `json:"stream_id"`
}

// opsWithin returns the times of ops in the 24 hours up to at, and an
// error when limit (0: none) of them are already there.
func opsWithin(ops []time.Time, at time.Time, limit int, what, name string) ([]time.Time, error) {
	var recent []time.Time
	for _, t := range ops {
		if at.Sub(t) < 24*time.Hour {
			recent = append(recent, t)
		}
	}
	if limit > 0 && len(recent) >= limit {
		next := recent[len(recent)-limit].Add(24 * time.Hour)
		return recent, fmt.Errorf("%w: %s already had %d %s calls in the last 24 hours (the limit); the next is allowed at %s",
			ErrDailyLimit, name, len(recent), what, next.UTC().Format(time.RFC3339))
	}
	return recent, nil
}

// CheckUpdateStreamMode validates switching stream name to mode at the
// time at; the same checks run when the command applies.
func (st *State) CheckUpdateStreamMode(name string, mode StreamMode, at time.Time, dailyLimit int) error {
	s, ok := st.Streams[name]
	if !ok {
		return fmt.Errorf("%w: %s", ErrStreamNotFound, name)
	}
	if mode != ModeProvisioned && mode != ModeOnDemand {
		return fmt.Errorf("%w: unknown stream mode %q", ErrInvalidCommand, mode)
	}
	if s.Status != StreamActive {
		return fmt.Errorf("%w: %s is %s", ErrStreamInUse, name, s.Status)
	}
	if s.Mode == mode || (s.Mode == "" && mode == ModeProvisioned) {
		return fmt.Errorf("%w: %s is already %s", ErrInvalidCommand, name, mode)
	}
	_, err := opsWithin(s.ModeSwitches, at, dailyLimit, "UpdateStreamMode", name)
	return err
}

func (st *State) updateStreamMode(c *UpdateStreamModeCmd) (*State, error) {
	if err := st.CheckUpdateStreamMode(c.Name, c.Mode, c.At, c.DailyLimit); err != nil {
		return st, err
	}
	s := st.Streams[c.Name].clone()
	recent, _ := opsWithin(s.ModeSwitches, c.At, 0, "", "")
	s.ModeSwitches = append(recent, c.At)
	s.Mode = c.Mode
	s.Status = StreamUpdating
	if n := s.OpenShardCount(); c.Mode == ModeOnDemand && n < OnDemandInitialShards {
		// Below the on-demand minimum: a uniform scaling brings the stream
		// up to it and ends the switch with its last step.
		s.ScalingTarget = OnDemandInitialShards
		return st.withStream(s.Name, s), nil
	}
	s.ModeSwitching = true
	return st.withStream(s.Name, s), nil
}

func (st *State) streamModeSwitched(c *StreamModeSwitchedCmd) (*State, error) {
	s, ok := st.streamByID(c.StreamID)
	if !ok || !s.ModeSwitching || s.Status != StreamUpdating {
		return st, nil // a repeated proposal, or the stream is being deleted
	}
	s = s.clone()
	s.ModeSwitching = false
	s.Status = StreamActive
	return st.withStream(s.Name, s), nil
}

// UpdateStreamMode switches stream name to mode; the controller confirms
// the switch (the stream is UPDATING until then).
func (h *Host) UpdateStreamMode(ctx context.Context, name string, mode StreamMode) error {
	at := time.Now().UTC().Truncate(time.Millisecond)
	if err := h.meta.State().CheckUpdateStreamMode(name, mode, at, h.opts.ModeSwitchesPerDay); err != nil {
		return err
	}
	return h.ProposeMeta(ctx, Command{UpdateStreamMode: &UpdateStreamModeCmd{
		Name: name, Mode: mode, At: at, DailyLimit: h.opts.ModeSwitchesPerDay}})
}

// finishModeSwitches runs on the metadata leader: it ends every mode switch
// in progress. A switch needs nothing else from the cluster (no resharding
// runs: the switch is refused unless the stream is ACTIVE), so it ends at
// the controller's next pass.
func (h *Host) finishModeSwitches(ctx context.Context) {
	for _, s := range h.meta.State().Streams {
		if !s.ModeSwitching || s.Status != StreamUpdating {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, sealWait)
		err := h.ProposeMeta(pctx, Command{StreamModeSwitched: &StreamModeSwitchedCmd{StreamID: s.ID}})
		cancel()
		if err != nil {
			h.logger.Warn("ending a stream mode switch failed; will retry", "stream", s.Name, "err", err)
			continue
		}
		h.logger.Info("stream mode switched", "stream", s.Name, "mode", s.Mode)
	}
}
