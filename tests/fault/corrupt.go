package fault

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/riffle-streams/riffle/shardlog"
)

// File damage for the corrupt-files nemesis. It works on a stopped node's
// data directory as the node lays it out (node/ and cluster/): one
// directory per shard replica under shards/, its segment files under
// segments/ (shardlog/segment.go). Each .log file starts with a 36-byte
// header; the damage lands after it, in the records, where a checksum must
// catch it (a damaged header is caught by its own checksum too, but is the
// easier case).

const segmentHeaderBytes = 36

// segmentFiles lists the .log files under dataDir/shards that hold at
// least one record byte, in a stable order.
func segmentFiles(dataDir string) ([]string, error) {
	var out []string
	root := filepath.Join(dataDir, "shards")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".log") || filepath.Base(filepath.Dir(path)) != "segments" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() > segmentHeaderBytes {
			out = append(out, path)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	slices.Sort(out)
	return out, err
}

// corruptSegments damages up to n segment files of the stopped node whose
// data directory is dataDir, chosen by rng among every shard's segments,
// sealed and active alike: two in three get 1 to 3 random bytes flipped,
// the others are truncated at a random point after the header. It returns
// one line per damaged file, relative to dataDir.
func corruptSegments(dataDir string, rng *rand.Rand, n int) ([]string, error) {
	files, err := segmentFiles(dataDir)
	if err != nil {
		return nil, err
	}
	rng.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	var did []string
	for _, path := range files[:min(n, len(files))] {
		info, err := os.Stat(path)
		if err != nil {
			return did, err
		}
		body := info.Size() - segmentHeaderBytes
		rel, _ := filepath.Rel(dataDir, path)
		if rng.IntN(3) < 2 {
			flips := 1 + rng.IntN(3)
			for range flips {
				pos := segmentHeaderBytes + rng.Int64N(body)
				if err := flipByteAt(path, pos, byte(1+rng.IntN(255))); err != nil {
					return did, err
				}
			}
			did = append(did, fmt.Sprintf("%s: %d bytes flipped", rel, flips))
			continue
		}
		size := segmentHeaderBytes + rng.Int64N(body)
		if err := os.Truncate(path, size); err != nil {
			return did, err
		}
		did = append(did, fmt.Sprintf("%s: truncated from %d to %d bytes", rel, info.Size(), size))
	}
	return did, nil
}

// flipByteAt xors the byte at pos of the file at path with mask (non-zero).
func flipByteAt(path string, pos int64, mask byte) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	b := make([]byte, 1)
	_, err = f.ReadAt(b, pos)
	if err == nil {
		b[0] ^= mask
		_, err = f.WriteAt(b, pos)
	}
	return errors.Join(err, f.Close())
}

// The node's write-ahead log (shardlog/wal/record.go) keeps every shard
// replica's raft log entries in DataDir/wal/*.wal as frames of
//
//	hcrc uint32 | length uint32 | type uint8 | nameLen uint8 | name | body
//
// where name is the replica's group id and an append's body is a run of
// entries, each "length uint32 | crc32c uint32 | payload".
const (
	walFrameFixed  = 10
	walEntryHeader = 8
	walAppend      = 1
	walCheckpoint  = 4
)

// walFrame is where one whole frame lies in a WAL segment.
type walFrame struct {
	seg        int    // index into the node's segments, oldest first
	typ        byte   // record type
	group      string // the replica's group id
	body       int64  // offset of the body in the segment
	firstEntry int64  // payload bytes of the body's first entry; 0 for none
}

// walFrames walks the node's WAL segments, oldest first, and returns
// their whole frames; a frame cut short by a crash ends its segment's
// walk. Checksums are the node's to check: the harness only needs where
// frames are.
func walFrames(dataDir string) (segs []string, frames []walFrame, err error) {
	segs, err = filepath.Glob(filepath.Join(dataDir, "wal", "*.wal"))
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(segs) // zero-padded numbers: lexical order is log order
	for i, path := range segs {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, err
		}
		for off := 0; off+walFrameFixed <= len(data); {
			nameLen := int(data[off+9])
			bodyAt := off + walFrameFixed + nameLen
			length := int(binary.LittleEndian.Uint32(data[off+4:]))
			if bodyAt+length > len(data) {
				break
			}
			f := walFrame{seg: i, typ: data[off+8], group: string(data[off+walFrameFixed : bodyAt]), body: int64(bodyAt)}
			if f.typ == walAppend && length >= walEntryHeader {
				f.firstEntry = int64(binary.LittleEndian.Uint32(data[bodyAt:]))
			}
			frames = append(frames, f)
			off = bodyAt + length
		}
	}
	return segs, frames, nil
}

// corruptWAL damages the raft log of one shard replica of the stopped
// node: one byte in the first entry of an append record of the replica's
// WAL group, so that the entry fails its checksum. The record is one the
// node must see as damage inside the log, not a torn tail a crash could
// leave (which it cuts, since raft acknowledged nothing in it): a whole
// frame follows it in its segment, or its segment is not the newest. And
// the damage must still count at the next start: the group holds a raft
// store (a group without one is dropped as a removed replica's) and no
// later checkpoint restates the group's log. The node must refuse to
// start that replica (it could vote and lead with a log missing entries
// it acknowledged) and the cluster must rebuild it on a node holding none
// of the shard. It returns the replica's group id and what it did; ""
// when no record qualifies.
func corruptWAL(dataDir string, rng *rand.Rand) (group, did string, err error) {
	segs, frames, err := walFrames(dataDir)
	if err != nil {
		return "", "", err
	}
	checkpointed := map[string]int{} // group -> its last checkpoint's frame
	for i, f := range frames {
		if f.typ == walCheckpoint {
			checkpointed[f.group] = i
		}
	}
	var candidates []int
	for i, f := range frames {
		if f.typ != walAppend || f.firstEntry == 0 {
			continue
		}
		if last, ok := checkpointed[f.group]; ok && last > i {
			continue
		}
		if f.seg == len(segs)-1 && (i == len(frames)-1 || frames[i+1].seg != f.seg) {
			continue // the newest segment's last frame: a tail
		}
		if _, err := os.Stat(filepath.Join(dataDir, "shards", f.group, shardlog.RaftStateFile)); err != nil {
			continue
		}
		candidates = append(candidates, i)
	}
	if len(candidates) == 0 {
		return "", "", nil
	}
	f := frames[candidates[rng.IntN(len(candidates))]]
	pos := f.body + walEntryHeader + rng.Int64N(f.firstEntry)
	if err := flipByteAt(segs[f.seg], pos, byte(1+rng.IntN(255))); err != nil {
		return "", "", err
	}
	rel, _ := filepath.Rel(dataDir, segs[f.seg])
	return f.group, fmt.Sprintf("%s: byte %d, in an entry of group %s, flipped", rel, pos, f.group), nil
}

// bbolt's meta pages (go.etcd.io/bbolt, db.go), as the raft store keeps
// them in each replica's raft.db: pages 0 and 1, each a 16-byte page
// header, then 56 bytes of meta (magic, version, page size, flags, root,
// freelist, page high-water mark, txid) and their 8-byte checksum.
const (
	boltPageHeader = 16
	boltMetaBytes  = 64
)

// corruptRaftStore damages the raft store (raft.db: term, vote and
// configuration) of one shard replica of the stopped node whose data
// directory is dataDir, chosen by rng: half the time a byte of one of the
// two meta pages is flipped (bbolt itself would quietly fall back to the
// other page, an older term and vote), otherwise the file is cut a page
// short of the pages its meta names. It returns the replica's group and
// what it did, or no group when no replica has a store to damage (a
// frozen replica has none).
func corruptRaftStore(dataDir string, rng *rand.Rand) (group, did string, err error) {
	files, err := filepath.Glob(filepath.Join(dataDir, "shards", "*", "raft.db"))
	if err != nil || len(files) == 0 {
		return "", "", err
	}
	slices.Sort(files)
	path := files[rng.IntN(len(files))]
	pageSize, highWater, size, err := boltLayout(path)
	if err != nil {
		return "", "", err
	}
	rel, _ := filepath.Rel(dataDir, path)
	group = filepath.Base(filepath.Dir(path))
	if cut := (highWater - 1) * pageSize; rng.IntN(2) == 0 && highWater > 3 {
		if err := os.Truncate(path, cut); err != nil {
			return "", "", err
		}
		return group, fmt.Sprintf("%s: cut from %d to %d bytes, a page short of its %d", rel, size, cut, highWater), nil
	}
	page := rng.Int64N(2)
	pos := page*pageSize + boltPageHeader + rng.Int64N(boltMetaBytes)
	if err := flipByteAt(path, pos, byte(1+rng.IntN(255))); err != nil {
		return "", "", err
	}
	return group, fmt.Sprintf("%s: byte %d of meta page %d flipped", rel, pos, page), nil
}

// boltLayout reads a bbolt file's page size and page high-water mark from
// its first meta page (little-endian, as on the machines this runs on),
// and the file's size.
func boltLayout(path string) (pageSize, highWater, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, 0, 0, err
	}
	m := make([]byte, boltMetaBytes)
	if _, err := f.ReadAt(m, boltPageHeader); err != nil {
		return 0, 0, 0, fmt.Errorf("%s: reading its meta page: %w", path, err)
	}
	pageSize = int64(binary.LittleEndian.Uint32(m[8:12]))
	highWater = int64(binary.LittleEndian.Uint64(m[40:48]))
	if pageSize < 1024 || highWater < 2 {
		return 0, 0, 0, fmt.Errorf("%s: not a bbolt file (page size %d, %d pages)", path, pageSize, highWater)
	}
	return pageSize, highWater, info.Size(), nil
}
