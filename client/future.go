package client

import (
	"context"
	"sync"
)

// PutResult is where the broker stored a record.
type PutResult struct {
	// ShardID is the shard that holds the record.
	ShardID string
	// SequenceNumber is the record's sequence number in that shard.
	SequenceNumber string
	// Attempts is how many PutRecords calls carried the record.
	Attempts int
}

// PutFuture is the pending result of Producer.Put.
type PutFuture struct {
	done   chan struct{}
	once   sync.Once
	result PutResult
	err    error
}

func newPutFuture() *PutFuture { return &PutFuture{done: make(chan struct{})} }

// failedFuture is a future that has already failed with err.
func failedFuture(err error) *PutFuture {
	f := newPutFuture()
	f.resolve(PutResult{}, err)
	return f
}

// Done is closed once the record has a result.
func (f *PutFuture) Done() <-chan struct{} { return f.done }

// Wait returns the record's result once it has one, or ctx's error if ctx
// ends first (the record itself is not cancelled). An error matching
// ErrOutcomeUnknown means the record may have been stored anyway.
func (f *PutFuture) Wait(ctx context.Context) (PutResult, error) {
	select {
	case <-f.done:
		return f.result, f.err
	case <-ctx.Done():
		return PutResult{}, ctx.Err()
	}
}

// resolve sets the result; later calls are ignored.
func (f *PutFuture) resolve(res PutResult, err error) {
	f.once.Do(func() {
		f.result, f.err = res, err
		close(f.done)
	})
}
