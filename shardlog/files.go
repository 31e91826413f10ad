package shardlog

import (
	"os"

	"github.com/riffle-streams/riffle/shardlog/internal/diskfile"
)

// segFile is what a segment's and a raft log's files are: diskfile's, so
// that the faultsync build loses their unsynced writes on kill -9.
type segFile = diskfile.File

func openSegFile(path string, flag int, perm os.FileMode) (segFile, error) {
	return diskfile.Open(path, flag, perm)
}

func fdatasync(f segFile) error { return diskfile.Fdatasync(f) }

func syncDir(dir string) error { return diskfile.SyncDir(dir) }
