//go:build !linux

package diskfile

// ReadAhead is a hint that only Linux takes (posix_fadvise WILLNEED);
// elsewhere the kernel's own readahead is all there is.
func ReadAhead(File, int64, int64) {}
