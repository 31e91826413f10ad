package shardlog

import (
	"os"
	"syscall"
)

// fdatasync makes f's data and size durable, skipping the timestamps that
// fsync would also write.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
