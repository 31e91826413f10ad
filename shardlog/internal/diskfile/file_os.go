//go:build !faultsync

package diskfile

import "os"

// Open opens a segment file as os.OpenFile does.
func Open(path string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(path, flag, perm)
	if err != nil {
		return nil, err // a nil *os.File must not become a non-nil File
	}
	return f, nil
}
