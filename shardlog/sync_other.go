//go:build !linux

package shardlog

import "os"

// fdatasync makes f's data durable; without fdatasync, by fsync.
func fdatasync(f *os.File) error { return f.Sync() }
