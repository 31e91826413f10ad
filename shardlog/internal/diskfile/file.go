// Package diskfile is the file layer under the broker's durable files
// (segments, raft logs, the node's write-ahead log): an *os.File normally,
// and with the faultsync build tag a file whose writes stay in process
// memory until Sync, so that a kill -9 loses everything not fsynced.
package diskfile

import (
	"errors"
	"io"
	"os"
)

// File is what the broker's durable files need. Normally it is an
// *os.File (file_os.go); with the faultsync build tag it is a file whose
// writes stay in process memory until Sync (file_volatile.go), so that
// a kill -9 loses everything the broker did not fsync.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Writer
	Sync() error
	Truncate(size int64) error
	Close() error
	Stat() (os.FileInfo, error)
	Name() string
}

// SyncDir makes the names in dir durable: a file created, renamed or
// removed there survives a crash only after it.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
