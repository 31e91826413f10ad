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

// raftFrameHeader is the shard raft log's frame header: payload length and
// CRC-32C, 4 bytes each (shardlog/raftlog.go).
const raftFrameHeader = 8

// corruptRaftLog damages the raft log of one shard replica of the stopped
// node: one byte of the first entry of a raftlog file that holds a later
// entry too, so the damage is inside the log, not a torn tail a crash
// could leave (which the store cuts, since raft acknowledged nothing in
// it). The node must refuse to start that replica (it could vote and lead
// with a log missing entries it acknowledged) and the cluster must rebuild
// it on a node holding none of the shard. It returns the replica's group
// id (its directory under shards/) and what it did; "" when no replica has
// such a file.
func corruptRaftLog(dataDir string, rng *rand.Rand) (group, did string, err error) {
	files, err := filepath.Glob(filepath.Join(dataDir, "shards", "*", "raftlog", "*.raftlog"))
	if err != nil {
		return "", "", err
	}
	slices.Sort(files)
	rng.Shuffle(len(files), func(i, j int) { files[i], files[j] = files[j], files[i] })
	for _, path := range files {
		first, size, err := firstFrame(path)
		if err != nil {
			return "", "", err
		}
		if first == 0 || raftFrameHeader+first+raftFrameHeader > size {
			continue // empty, or one entry only
		}
		pos := raftFrameHeader + rng.Int64N(first)
		if err := flipByteAt(path, pos, byte(1+rng.IntN(255))); err != nil {
			return "", "", err
		}
		rel, _ := filepath.Rel(dataDir, path)
		group = filepath.Base(filepath.Dir(filepath.Dir(path)))
		return group, fmt.Sprintf("%s: byte %d of its first entry flipped", rel, pos), nil
	}
	return "", "", nil
}

// firstFrame returns the payload length of a raftlog file's first frame
// (0 when the file has none) and the file's size.
func firstFrame(path string) (length, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	var hdr [raftFrameHeader]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return 0, info.Size(), nil
	}
	n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
	if raftFrameHeader+n > info.Size() {
		return 0, info.Size(), nil
	}
	return n, info.Size(), nil
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
