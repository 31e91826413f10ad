package fault

import (
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
