package client

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// How one shard of a Worker is processed: read from the checkpoint (or
// TRIM_HORIZON), hand records to the handler, checkpoint, and at the end of
// a closed shard checkpoint SHARD_END, which lets the cluster assign its
// children.

var (
	errShardEnd    = errors.New("client: shard ended")
	errLeaseLost   = errors.New("client: lease lost")
	errTaskStopped = errors.New("client: shard stopped")
)

// shardTask processes one leased shard in its own goroutine.
type shardTask struct {
	w       *Worker
	shard   string
	counter uint64
	// checkpoint is where the lease said processing stood.
	checkpoint string

	// Owned by run.
	processed    string // last record handed to the handler successfully
	checkpointed string // last checkpoint stored
	pending      int    // records processed since
	lastCp       time.Time

	stopOnce sync.Once
	stopCh   chan struct{}
	release  atomic.Bool
	done     chan struct{}
}

// signal asks the task to end; with release it checkpoints what was
// processed and hands the lease back. A handler call in progress is
// finished first.
func (t *shardTask) signal(release bool) {
	t.stopOnce.Do(func() {
		t.release.Store(release)
		close(t.stopCh)
	})
}

func (t *shardTask) run() {
	defer t.w.wg.Done()
	defer close(t.done)
	w := t.w
	ctx, cancel := context.WithCancel(w.killCtx)
	defer cancel()
	go func() {
		select {
		case <-t.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	t.processed, t.lastCp = t.checkpoint, time.Now()
	var err error
	if w.cfg.FanOut {
		err = t.subscribe(ctx)
	} else {
		err = t.poll(ctx)
	}
	if w.killCtx.Err() != nil {
		return // killed: no checkpoint, no release, as a crash
	}
	log := w.log.With("shard", t.shard, "lease_counter", t.counter)
	switch {
	case errors.Is(err, errShardEnd):
		switch serr := t.store(ShardEnd); {
		case serr == nil:
			log.Info("shard processed to its end")
			w.finish(t, shardFinished)
		case errors.Is(serr, errLeaseLost):
			w.finish(t, leaseRetired)
		default:
			w.finish(t, taskStopped) // the next heartbeat starts it again
		}
	case errors.Is(err, errLeaseLost):
		log.Warn("lease lost: another worker processes the shard now")
		w.finish(t, leaseRetired)
	case t.release.Load():
		if t.processed != t.checkpointed {
			if serr := t.store(t.processed); errors.Is(serr, errLeaseLost) {
				w.finish(t, leaseRetired)
				return
			} else if serr != nil {
				log.Warn("last checkpoint failed; not releasing: the lease moves once the handover times out", "err", serr)
				w.finish(t, taskStopped)
				return
			}
		}
		rerr := w.retry.Read(w.killCtx, func(ctx context.Context, opts ...grpc.CallOption) error {
			_, err := w.groups.ReleaseLease(ctx, &rifflev1.ReleaseLeaseRequest{GroupName: w.cfg.Group, WorkerId: w.cfg.WorkerID,
				ShardId: t.shard, LeaseCounter: t.counter}, opts...)
			return err
		})
		if rerr != nil && ExceptionName(rerr) != LeaseLostException {
			log.Warn("release failed; the lease moves once the handover times out", "err", rerr)
			w.finish(t, taskStopped)
			return
		}
		log.Info("shard handed back", "checkpoint", t.processed)
		w.finish(t, leaseRetired)
	default:
		// Heartbeats failed for a lease: the lease may still be ours, and
		// a heartbeat that says so starts the shard again.
		log.Info("shard stopped without checkpoint")
		w.finish(t, taskStopped)
	}
}

// store writes a checkpoint; errLeaseLost when the lease has moved on.
func (t *shardTask) store(seq string) error {
	w := t.w
	err := w.retry.Read(w.killCtx, func(ctx context.Context, opts ...grpc.CallOption) error {
		_, err := w.groups.Checkpoint(ctx, &rifflev1.CheckpointRequest{GroupName: w.cfg.Group, WorkerId: w.cfg.WorkerID,
			ShardId: t.shard, LeaseCounter: t.counter, SequenceNumber: seq}, opts...)
		return err
	})
	if err != nil {
		if ExceptionName(err) == LeaseLostException {
			return errLeaseLost
		}
		w.log.Warn("checkpoint failed", "shard", t.shard, "err", err)
		return err
	}
	t.checkpointed, t.pending, t.lastCp = seq, 0, time.Now()
	return nil
}

// maybeCheckpoint checkpoints when the interval or count is reached.
func (t *shardTask) maybeCheckpoint() error {
	if t.processed == t.checkpointed {
		t.lastCp = time.Now()
		return nil
	}
	every := t.w.cfg.CheckpointEvery
	if (every > 0 && t.pending >= every) || time.Since(t.lastCp) >= t.w.cfg.CheckpointInterval {
		if err := t.store(t.processed); errors.Is(err, errLeaseLost) {
			return err
		}
	}
	return nil
}

// deliver hands records to the handler until it accepts them.
func (t *shardTask) deliver(records []*rifflev1.Record) error {
	w := t.w
	for {
		err := w.handle(w.killCtx, t.shard, records)
		if err == nil {
			break
		}
		w.log.Warn("handler failed; calling it again with the same records", "shard", t.shard, "err", err)
		if sleep(w.killCtx, handlerRetryDelay) != nil {
			return errTaskStopped
		}
	}
	t.processed = records[len(records)-1].SequenceNumber
	t.pending += len(records)
	return t.maybeCheckpoint()
}

// position is where reading resumes: after the last record processed.
func (t *shardTask) position() StartingPosition {
	if t.processed == "" {
		return TrimHorizon()
	}
	return AfterSequenceNumber(t.processed)
}

// poll reads the shard with GetRecords until it ends or ctx ends.
func (t *shardTask) poll(ctx context.Context) error {
	w := t.w
	iterator := ""
	for {
		if ctx.Err() != nil {
			return errTaskStopped
		}
		if iterator == "" {
			err := w.retry.Read(ctx, func(ctx context.Context, opts ...grpc.CallOption) error {
				resp, err := w.c.Streams().GetShardIterator(ctx, t.position().iteratorRequest(w.cfg.Stream, t.shard), opts...)
				iterator = resp.GetShardIterator()
				return err
			})
			if err != nil {
				w.log.Warn("shard iterator failed", "shard", t.shard, "err", err)
				sleep(ctx, time.Second)
				continue
			}
		}
		var resp *rifflev1.GetRecordsResponse
		err := w.retry.Read(ctx, func(ctx context.Context, opts ...grpc.CallOption) error {
			var err error
			resp, err = w.c.Streams().GetRecords(ctx, &rifflev1.GetRecordsRequest{ShardIterator: iterator, Limit: w.cfg.Reader.Limit}, opts...)
			return err
		})
		if err != nil {
			if ctx.Err() == nil && ExceptionName(err) != ExpiredIteratorException {
				w.log.Warn("GetRecords failed", "shard", t.shard, "err", err)
				sleep(ctx, time.Second)
			}
			iterator = ""
			continue
		}
		if len(resp.Records) > 0 {
			if err := t.deliver(resp.Records); err != nil {
				return err
			}
		}
		if iterator = resp.NextShardIterator; iterator == "" {
			return errShardEnd
		}
		if err := t.maybeCheckpoint(); err != nil {
			return err
		}
		if len(resp.Records) == 0 || resp.MillisBehindLatest == 0 {
			sleep(ctx, w.cfg.Reader.PollInterval)
		}
	}
}

// subscribeIdle is how long a subscription may stay silent (the broker
// sends an event every few seconds) before it is taken up again.
const subscribeIdle = 30 * time.Second

// subscribe reads the shard with SubscribeToShard until it ends or ctx
// ends.
func (t *shardTask) subscribe(ctx context.Context) error {
	w := t.w
	for {
		if ctx.Err() != nil {
			return errTaskStopped
		}
		err := t.subscribeOnce(ctx)
		switch {
		case err == nil:
			continue
		case errors.Is(err, errShardEnd), errors.Is(err, errLeaseLost), errors.Is(err, errTaskStopped):
			return err
		case ctx.Err() != nil:
			return errTaskStopped
		}
		// ResourceInUse is the previous holder's subscription, which the
		// broker keeps for a few seconds, or a consumer still CREATING.
		w.log.Debug("subscribing again", "shard", t.shard, "err", err)
		sleep(ctx, time.Second)
	}
}

func (t *shardTask) subscribeOnce(ctx context.Context) error {
	w := t.w
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := time.AfterFunc(subscribeIdle, cancel)
	defer idle.Stop()
	stream, err := w.c.Streams().SubscribeToShard(ctx, &rifflev1.SubscribeToShardRequest{
		ConsumerArn: w.consARN, ShardId: t.shard, StartingPosition: t.position().proto()})
	if err != nil {
		return err
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		idle.Reset(subscribeIdle)
		if len(ev.Records) > 0 {
			if err := t.deliver(ev.Records); err != nil {
				return err
			}
		}
		if ev.ContinuationSequenceNumber == "" && len(ev.ChildShards) > 0 {
			return errShardEnd
		}
		if err := t.maybeCheckpoint(); err != nil {
			return err
		}
	}
}
