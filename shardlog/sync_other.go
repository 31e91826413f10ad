//go:build !linux

package shardlog

// fdatasync makes f's data durable; without fdatasync, by fsync.
func fdatasync(f segFile) error { return f.Sync() }
