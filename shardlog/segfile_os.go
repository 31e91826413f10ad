//go:build !faultsync

package shardlog

import "os"

// openSegFile opens a segment file as os.OpenFile does.
func openSegFile(path string, flag int, perm os.FileMode) (segFile, error) {
	f, err := os.OpenFile(path, flag, perm)
	if err != nil {
		return nil, err // a nil *os.File must not become a non-nil segFile
	}
	return f, nil
}
