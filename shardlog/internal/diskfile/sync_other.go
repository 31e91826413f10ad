//go:build !linux

package diskfile

// Fdatasync makes f's data durable; without Fdatasync, by fsync.
func Fdatasync(f File) error { return f.Sync() }
