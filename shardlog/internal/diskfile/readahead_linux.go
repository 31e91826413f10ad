package diskfile

import (
	"os"

	"golang.org/x/sys/unix"
)

// ReadAhead asks the kernel to start reading f's bytes [off, off+n) into
// the page cache in the background, so that a reader going on from off
// finds them there instead of waiting for the disk. It is a hint: it
// returns at once and changes nothing a read returns. A file that is not
// an *os.File (the faultsync build's) has nothing to read ahead.
func ReadAhead(f File, off, n int64) {
	if osf, ok := f.(*os.File); ok && n > 0 {
		_ = unix.Fadvise(int(osf.Fd()), off, n, unix.FADV_WILLNEED)
	}
}
