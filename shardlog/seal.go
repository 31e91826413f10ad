package shardlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ErrShardSealed: the shard was sealed for a resharding before this write's
// entry was applied, so the write was refused by every replica and is not in
// the log. Retrying it on the shard's children is safe.
var ErrShardSealed = errors.New("shardlog: shard is sealed (not applied)")

// cmdSeal is a raft entry that closes the shard: append entries applied
// after it are refused with ErrShardSealed. Layout: type(1).
const cmdSeal byte = 2

// Seal records where a sealed shard ends. Offset is exclusive: the log's
// NextOffset when the seal applied, so every record of the shard lies below
// it. Index is the seal's raft index: entries at or below it were applied
// before the seal (and are replayed as such after a restart).
type Seal struct {
	Index  uint64 `json:"index"`
	Offset uint64 `json:"offset"`
}

// sealState is a replica's seal, persisted in its own small file beside
// the segments (the seal writes no record, so the segments cannot carry it).
type sealState struct {
	path string
	mu   sync.Mutex
	seal *Seal
}

const sealFile = "seal.json"

func loadSeal(dir string) (*sealState, error) {
	s := &sealState{path: filepath.Join(dir, sealFile)}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("shardlog: read seal: %w", err)
	}
	var sl Seal
	if err := json.Unmarshal(b, &sl); err != nil {
		return nil, fmt.Errorf("shardlog: decode seal %s: %w", s.path, err)
	}
	s.seal = &sl
	return s, nil
}

// get returns the seal, nil while the shard is open.
func (s *sealState) get() *Seal {
	if s == nil {
		return nil // a state machine without a seal file (tests)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seal == nil {
		return nil
	}
	c := *s.seal
	return &c
}

// set records the seal durably (write, fsync, rename) unless one is
// already recorded; it returns the recorded seal. The first seal wins, so
// a replayed or repeated seal entry never moves the end.
func (s *sealState) set(sl Seal) (Seal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seal != nil {
		return *s.seal, nil
	}
	b, err := json.Marshal(sl)
	if err != nil {
		return Seal{}, err
	}
	tmp := s.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return Seal{}, fmt.Errorf("shardlog: write seal: %w", err)
	}
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, s.path)
	}
	if werr == nil {
		werr = syncDir(filepath.Dir(s.path))
	}
	if werr != nil {
		return Seal{}, fmt.Errorf("shardlog: write seal: %w", werr)
	}
	s.seal = &sl
	return sl, nil
}

// sealWait bounds how long Seal waits for its entry to commit.
const sealWait = 5 * time.Second

// Sealed returns the shard's seal, or false while it takes writes.
func (s *Shard) Sealed() (Seal, bool) {
	if sl := s.seal.get(); sl != nil {
		return *sl, true
	}
	return Seal{}, false
}

// Seal closes the shard through its raft log and returns where it ended.
// It must run on the leader (ErrNotLeader otherwise). Sealing a sealed
// shard returns the same seal, so a controller may repeat it after a crash.
func (s *Shard) Seal(ctx context.Context) (Seal, error) {
	if sl, ok := s.Sealed(); ok {
		return sl, nil
	}
	if !s.IsLeader() {
		return Seal{}, ErrNotLeader
	}
	wait := sealWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	f := s.raft.Apply([]byte{cmdSeal}, wait)
	if err := f.Error(); err != nil {
		return Seal{}, classifyApplyError(err)
	}
	switch r := f.Response().(type) {
	case Seal:
		return r, nil
	case error:
		return Seal{}, r
	}
	return Seal{}, errBadCommand
}

// isSeal reports whether a raft entry is a seal command.
func isSeal(data []byte) bool { return len(data) == 1 && data[0] == cmdSeal }
