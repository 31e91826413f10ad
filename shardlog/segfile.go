package shardlog

import (
	"io"
	"os"
)

// segFile is what a segment needs of its three files. Normally it is an
// *os.File (segfile_os.go); with the faultsync build tag it is a file whose
// writes stay in process memory until Sync (segfile_volatile.go), so that
// a kill -9 loses everything the broker did not fsync.
type segFile interface {
	io.ReaderAt
	io.WriterAt
	io.Writer
	Sync() error
	Truncate(size int64) error
	Close() error
	Stat() (os.FileInfo, error)
	Name() string
}
