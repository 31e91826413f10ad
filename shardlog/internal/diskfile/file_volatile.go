//go:build faultsync

package diskfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// With the faultsync tag (a test-only build: tests/fault's images and the
// in-process crash test) a segment file's writes stay in process memory
// until Sync writes them out and fsyncs. A process killed with SIGKILL
// then loses every write it did not fsync, as a machine that loses power
// does; without the tag the page cache would keep them. The broker must
// fsync before it relies on a segment's data: before a snapshot manifest
// lets raft drop the entries it covers (fsmSnapshot.Persist), before a
// roll seals a segment, after a catch-up import. Truncate is applied at
// once, and Close without Sync drops what was pending.
//
// The raft logs and the write-ahead log go through this layer too; the
// stable store (raft-boltdb) and the snapshot store fsync their own files,
// which are real files in this build.

// volatileFile is an *os.File whose writes are kept in memory until Sync.
type volatileFile struct {
	mu      sync.Mutex
	f       *os.File
	path    string
	size    int64 // as the process sees it, pending writes included
	pos     int64 // for Write
	pending []extent
	crashed bool
}

// extent is one unsynced write; appends to the same file coalesce.
type extent struct {
	off  int64
	data []byte
}

// errCrashed: the file belongs to a process that CrashUnsynced "killed".
var errCrashed = errors.New("diskfile: faultsync: file lost in a simulated crash")

var volatileFiles = struct {
	sync.Mutex
	open map[*volatileFile]bool
}{open: map[*volatileFile]bool{}}

func Open(path string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(path, flag, perm)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	v := &volatileFile{f: f, path: path, size: st.Size()}
	volatileFiles.Lock()
	volatileFiles.open[v] = true
	volatileFiles.Unlock()
	return v, nil
}

// CrashUnsynced simulates a crash of whatever has segment files open under
// dir: every write not yet synced is gone, and every later call on those
// files fails. The files on disk keep exactly what was synced.
func CrashUnsynced(dir string) {
	dir = filepath.Clean(dir) + string(filepath.Separator)
	volatileFiles.Lock()
	defer volatileFiles.Unlock()
	for v := range volatileFiles.open {
		if !strings.HasPrefix(v.path, dir) {
			continue
		}
		v.mu.Lock()
		v.pending, v.crashed = nil, true
		v.f.Close()
		v.mu.Unlock()
		delete(volatileFiles.open, v)
	}
}

func (v *volatileFile) WriteAt(p []byte, off int64) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.crashed {
		return 0, errCrashed
	}
	if n := len(v.pending); n > 0 {
		last := &v.pending[n-1]
		if last.off+int64(len(last.data)) == off {
			last.data = append(last.data, p...)
			v.size = max(v.size, off+int64(len(p)))
			return len(p), nil
		}
	}
	v.pending = append(v.pending, extent{off, append([]byte(nil), p...)})
	v.size = max(v.size, off+int64(len(p)))
	return len(p), nil
}

func (v *volatileFile) Write(p []byte) (int, error) {
	n, err := v.WriteAt(p, v.pos)
	v.pos += int64(n)
	return n, err
}

// ReadAt reads what the process wrote: the file, with the pending writes
// laid over it.
func (v *volatileFile) ReadAt(p []byte, off int64) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.crashed {
		return 0, errCrashed
	}
	if off >= v.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), v.size-off))
	k, err := v.f.ReadAt(p[:n], off)
	if err != nil && !errors.Is(err, io.EOF) {
		return k, err
	}
	clear(p[k:n]) // past the file's end: only pending writes or a hole
	end := off + int64(n)
	for _, e := range v.pending {
		eend := e.off + int64(len(e.data))
		if eend <= off || e.off >= end {
			continue
		}
		from, to := max(e.off, off), min(eend, end)
		copy(p[from-off:to-off], e.data[from-e.off:to-e.off])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// flushLocked writes the pending writes to the file, without fsync.
func (v *volatileFile) flushLocked() error {
	for _, e := range v.pending {
		if _, err := v.f.WriteAt(e.data, e.off); err != nil {
			return err
		}
	}
	v.pending = nil
	return nil
}

// flushThen writes the pending writes out, then runs then, under the lock.
func (v *volatileFile) flushThen(then func() error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.crashed {
		return errCrashed
	}
	if err := v.flushLocked(); err != nil {
		return err
	}
	return then()
}

func (v *volatileFile) Sync() error { return v.flushThen(v.f.Sync) }

func (v *volatileFile) Truncate(size int64) error {
	return v.flushThen(func() error {
		if err := v.f.Truncate(size); err != nil {
			return err
		}
		v.size = size
		return nil
	})
}

func (v *volatileFile) Close() error {
	volatileFiles.Lock()
	delete(volatileFiles.open, v)
	volatileFiles.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.crashed {
		return nil
	}
	v.crashed, v.pending = true, nil
	return v.f.Close()
}

func (v *volatileFile) Stat() (os.FileInfo, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.crashed {
		return nil, errCrashed
	}
	st, err := v.f.Stat()
	if err != nil {
		return nil, err
	}
	return sizedInfo{st, v.size}, nil
}

// sizedInfo is a file's info with the size the process sees.
type sizedInfo struct {
	os.FileInfo
	size int64
}

func (s sizedInfo) Size() int64 { return s.size }

// Name is the file's path, as os.File's.
func (v *volatileFile) Name() string { return v.path }
