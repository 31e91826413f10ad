package shardlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// ErrRaftStateDamaged: a raft log and stable store (raft.db) cannot be
// opened or read back intact. The raft group must not start on it: see
// OpenCheckedRaftStore.
var ErrRaftStateDamaged = errors.New("shardlog: raft state damaged")

// OpenCheckedRaftStore opens the raft store at path (OpenRaftStore) after
// checking that it is intact, and fails with ErrRaftStateDamaged when not.
// A missing file is a new replica's and is created.
//
// Why refuse instead of starting afresh: the store holds the replica's term,
// its vote and its log. A replica that lost them could vote twice in one
// term (two leaders) or vote for a candidate that lacks entries this
// replica had acknowledged, which the leader counted towards a quorum: a
// committed write would then survive on a minority only and be lost. And
// bbolt, which keeps two meta pages, would silently fall back to the older
// one if the newer were damaged: the same rollback. So a damaged store is
// left in place (deleting it would make the next start a fresh, equally
// unsafe replica) and the group stays stopped until the replica is
// replaced through a membership change (see docs/operations.md).
//
// What is checked: both bbolt meta pages (magic, version, checksum) and a
// file long enough for every page they name (a truncated file would fault
// in bbolt's mmap), bbolt's own consistency check of pages and freelist,
// the stable-store keys raft reads, and every log entry decoded. raft-boltdb
// keeps no checksum over values, so a flipped bit inside an entry's payload
// that still decodes is not detected here; for shards the segments carry
// their own checksums (see segment.go).
func OpenCheckedRaftStore(path string) (*raftboltdb.BoltStore, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return OpenRaftStore(path)
	}
	if err := checkBoltFile(path); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRaftStateDamaged, path, err)
	}
	store, err := OpenRaftStore(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrRaftStateDamaged, path, err)
	}
	if err := readRaftStore(store); err != nil {
		store.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrRaftStateDamaged, path, err)
	}
	return store, nil
}

// bbolt's meta page layout (go.etcd.io/bbolt, db.go): a 16-byte page
// header, then magic, version, pageSize, flags (uint32 each), the root
// bucket (16 bytes), freelist, pgid and txid (uint64 each) and an FNV-64a
// checksum of everything before it, in the machine's byte order.
const (
	boltPageHeader   = 16
	boltMetaSumStart = 56 // offset of the checksum within the meta
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
)

// checkBoltFile checks the file's meta pages and size before bbolt maps
// it, then runs bbolt's consistency check.
func checkBoltFile(path string) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := fileSize(f)
	if err != nil {
		return err
	}
	var highWater, pageSize uint64
	for i := range 2 {
		buf := make([]byte, boltPageHeader+boltMetaSumStart+8)
		if _, err := f.ReadAt(buf, int64(i)*int64(pageSize)); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("file of %d bytes is too short for meta page %d", size, i)
			}
			return err
		}
		m := buf[boltPageHeader:]
		ne := binary.NativeEndian
		h := fnv.New64a()
		h.Write(m[:boltMetaSumStart])
		if ne.Uint32(m) != boltMagic || ne.Uint32(m[4:]) != boltVersion || h.Sum64() != ne.Uint64(m[boltMetaSumStart:]) {
			return fmt.Errorf("meta page %d fails its checks", i)
		}
		if i == 0 {
			pageSize = uint64(ne.Uint32(m[8:]))
			if pageSize < 1024 || pageSize > 1<<20 {
				return fmt.Errorf("meta page 0 names a page size of %d", pageSize)
			}
		}
		highWater = max(highWater, ne.Uint64(m[40:]))
	}
	if uint64(size) < highWater*pageSize {
		return fmt.Errorf("file of %d bytes is shorter than its %d pages of %d bytes", size, highWater, pageSize)
	}

	// bbolt panics on some damage it meets while reading pages; those
	// panics happen on this goroutine and mean the same as an error.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bbolt: %v", p)
		}
	}()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			if len(errs) < 10 {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
}

// readRaftStore reads what raft reads at start: the stable-store keys and
// every log entry between the first and last index.
func readRaftStore(store *raftboltdb.BoltStore) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("reading the store: %v", p)
		}
	}()
	// hashicorp/raft's stable-store keys (raft.go: keyCurrentTerm, ...).
	for _, key := range []string{"CurrentTerm", "LastVoteTerm"} {
		if _, err := store.GetUint64([]byte(key)); err != nil && err != raftboltdb.ErrKeyNotFound {
			return fmt.Errorf("reading %s: %w", key, err)
		}
	}
	if _, err := store.Get([]byte("LastVoteCand")); err != nil && err != raftboltdb.ErrKeyNotFound {
		return fmt.Errorf("reading LastVoteCand: %w", err)
	}
	first, err := store.FirstIndex()
	if err != nil {
		return err
	}
	last, err := store.LastIndex()
	if err != nil {
		return err
	}
	if first == 0 {
		return nil
	}
	var entry raft.Log
	for i := first; i <= last; i++ {
		if err := store.GetLog(i, &entry); err != nil {
			return fmt.Errorf("reading log entry %d of [%d, %d]: %w", i, first, last, err)
		}
		if entry.Index != i {
			return fmt.Errorf("log entry %d holds index %d", i, entry.Index)
		}
	}
	return nil
}
