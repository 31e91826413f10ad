package diskfile

import (
	"os"
	"syscall"
)

// Fdatasync makes f's data and size durable, skipping the timestamps that
// fsync would also write. A file that is not an *os.File (the faultsync
// build's) syncs its own way.
func Fdatasync(f File) error {
	osf, ok := f.(*os.File)
	if !ok {
		return f.Sync()
	}
	for {
		err := syscall.Fdatasync(int(osf.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
