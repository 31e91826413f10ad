package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// Consumer-group workers (docs/consumer-groups.md). The cluster keeps the
// leases and checkpoints and assigns shards; a Worker heartbeats, processes
// the shards it is given, checkpoints, and hands shards back when told to.

// Worker defaults.
const (
	DefaultCheckpointInterval = 5 * time.Second
	// handlerRetryDelay is the wait before a failed handler call is made
	// again with the same records.
	handlerRetryDelay = time.Second
)

// LeaseLostException is the exception of a checkpoint or release by a
// worker that no longer holds the shard's lease.
const LeaseLostException = "LeaseLostException"

// ShardEnd is the checkpoint of a closed shard processed to its end.
const ShardEnd = "SHARD_END"

// RecordHandler processes records of one shard, in order. It is called for
// one shard at a time from one goroutine, and for different shards
// concurrently. Records are checkpointed after it returns nil; an error makes
// the worker call it again with the same records after a second, so
// delivery is at least once. ctx ends when the worker is killed.
type RecordHandler func(ctx context.Context, shardID string, records []*rifflev1.Record) error

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	// Group and Stream name the consumer group and the stream it consumes
	// (the group is created on first use).
	Group, Stream string
	// WorkerID identifies this worker in the group; host name and process
	// id when empty. Two live workers must not share one.
	WorkerID string
	// LeaseDuration is the group's lease duration if this worker creates
	// the group; the cluster's default (10 s) when 0.
	LeaseDuration time.Duration
	// FanOut reads with SubscribeToShard through the registered consumer
	// ConsumerName (registered if missing; Group when empty) instead of
	// polling with GetRecords.
	FanOut       bool
	ConsumerName string
	// CheckpointInterval is the longest a processed record waits for its
	// checkpoint; DefaultCheckpointInterval when 0.
	CheckpointInterval time.Duration
	// CheckpointEvery, when positive, also checkpoints after that many
	// records.
	CheckpointEvery int
	// Reader tunes polling (PollInterval, Limit, Retry).
	Reader ReaderConfig
	// Logger receives the worker's logs; slog.Default() when nil.
	Logger *slog.Logger
}

// Worker is one member of a consumer group.
type Worker struct {
	c       *Client
	groups  rifflev1.ConsumerGroupsClient
	cfg     WorkerConfig
	handle  RecordHandler
	log     *slog.Logger
	retry   RetryPolicy
	consARN string

	// killCtx ends at Kill: everything stops at once.
	killCtx context.Context
	kill    context.CancelFunc

	mu    sync.Mutex
	tasks map[string]*shardTask // by shard, owned by Run
	// retired holds leases this worker gave up or lost (shard -> counter),
	// so that a heartbeat answer older than the release does not start
	// them again; finished holds shards processed to their end.
	retired  map[string]uint64
	finished map[string]bool
	wg       sync.WaitGroup
}

var workerIDPattern = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)

// NewWorker returns a worker of cfg.Group that hands records to handle.
// Run starts it.
func NewWorker(c *Client, cfg WorkerConfig, handle RecordHandler) (*Worker, error) {
	if cfg.Group == "" || cfg.Stream == "" {
		return nil, errors.New("client: worker needs a group and a stream")
	}
	if cfg.WorkerID == "" {
		host, _ := os.Hostname()
		cfg.WorkerID = workerIDPattern.ReplaceAllString(host, "_") + "-" + strconv.Itoa(os.Getpid())
	}
	if cfg.ConsumerName == "" {
		cfg.ConsumerName = cfg.Group
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.Reader.PollInterval <= 0 {
		cfg.Reader.PollInterval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Worker{c: c, groups: rifflev1.NewConsumerGroupsClient(c.Conn()), cfg: cfg, handle: handle,
		log:   cfg.Logger.With("group", cfg.Group, "worker", cfg.WorkerID),
		retry: cfg.Reader.Retry.withDefaults(), tasks: map[string]*shardTask{},
		retired: map[string]uint64{}, finished: map[string]bool{}}
	w.killCtx, w.kill = context.WithCancel(context.Background())
	return w, nil
}

// ID is the worker's id in its group.
func (w *Worker) ID() string { return w.cfg.WorkerID }

// Shards lists the shards the worker is processing now.
func (w *Worker) Shards() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ids []string
	for id := range w.tasks {
		ids = append(ids, id)
	}
	return ids
}

// Run heartbeats and processes the shards the cluster assigns until ctx
// ends, then shuts down gracefully: each shard's last records are
// checkpointed and the worker leaves the group, so that its shards move to
// the others at once. It returns nil after a graceful shutdown, or the
// error that stopped it (a bad configuration the cluster refused).
func (w *Worker) Run(ctx context.Context) error {
	if w.cfg.FanOut {
		arn, err := w.ensureConsumer(ctx)
		if err != nil {
			return err
		}
		w.consARN = arn
	}
	var lastSent time.Time // of the last acknowledged heartbeat
	// Until the first answer says otherwise: the group's duration is
	// the requested one, or the cluster's default of 10 s.
	leaseDur, interval := 10*time.Second, time.Second
	if w.cfg.LeaseDuration > 0 {
		leaseDur = w.cfg.LeaseDuration
	}
	for {
		if w.killCtx.Err() != nil {
			return ErrConsumerClosed // killed: not one more heartbeat
		}
		sent := time.Now()
		// Half a lease: an answer later than that is of little use, and
		// a loaded cluster may take longer than an interval.
		hctx, cancel := context.WithTimeout(ctx, leaseDur/2)
		resp, err := w.groups.Heartbeat(hctx, &rifflev1.HeartbeatRequest{GroupName: w.cfg.Group, StreamName: w.cfg.Stream,
			WorkerId: w.cfg.WorkerID, LeaseDurationMillis: w.cfg.LeaseDuration.Milliseconds()})
		cancel()
		switch {
		case w.killCtx.Err() != nil:
			return ErrConsumerClosed
		case ctx.Err() != nil:
			w.shutdown()
			return nil
		case err != nil && classify(ctx, err, false, true) != retry && ExceptionName(err) != "":
			w.log.Error("heartbeat refused", "err", err)
			w.stopAll(false)
			return fmt.Errorf("client: worker %s: %w", w.cfg.WorkerID, err)
		case err != nil:
			w.log.Warn("heartbeat failed", "err", err)
			// Past the lease, the cluster may have given the shards to
			// others: stop before it can have.
			if !lastSent.IsZero() && time.Since(lastSent) >= leaseDur {
				w.log.Warn("no heartbeat acknowledged for a lease duration: stopping every shard")
				w.signalAll(false)
			}
		default:
			lastSent = sent
			leaseDur = time.Duration(resp.LeaseDurationMillis) * time.Millisecond
			interval = time.Duration(resp.HeartbeatIntervalMillis) * time.Millisecond
			w.reconcile(resp.Leases)
		}
		select {
		case <-time.After(interval):
		case <-ctx.Done():
		case <-w.killCtx.Done():
		}
	}
}

// Kill stops the worker at once, as a crash would: no last checkpoint, no
// release, no leave. The cluster gives its shards to others once its lease
// duration has passed. For failure tests and emergencies.
func (w *Worker) Kill() {
	w.kill()
	w.wg.Wait()
}

// shutdown checkpoints and releases every shard, then leaves the group.
func (w *Worker) shutdown() {
	w.stopAll(true)
	ctx, cancel := context.WithTimeout(w.killCtx, 10*time.Second)
	defer cancel()
	err := w.retry.Read(ctx, func(ctx context.Context, opts ...grpc.CallOption) error {
		_, err := w.groups.LeaveConsumerGroup(ctx, &rifflev1.LeaveConsumerGroupRequest{GroupName: w.cfg.Group, WorkerId: w.cfg.WorkerID}, opts...)
		return err
	})
	if err != nil {
		w.log.Warn("leaving the group failed; the shards move once the lease expires", "err", err)
		return
	}
	w.log.Info("left the group")
}

// reconcile starts the shards newly assigned and hands back those no
// longer assigned.
func (w *Worker) reconcile(leases []*rifflev1.ShardLease) {
	assigned := map[string]*rifflev1.ShardLease{}
	for _, l := range leases {
		assigned[l.ShardId] = l
	}
	w.mu.Lock()
	var stop []*shardTask
	for id, t := range w.tasks {
		if l, ok := assigned[id]; !ok || l.LeaseCounter != t.counter {
			stop = append(stop, t)
		}
	}
	w.mu.Unlock()
	// Not waited for: a slow handler must not hold up the heartbeats. A
	// stopping task stays in tasks until it has released its lease.
	for _, t := range stop {
		t.signal(true)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, l := range assigned {
		if _, running := w.tasks[id]; running || w.finished[id] || w.retired[id] == l.LeaseCounter {
			continue
		}
		t := &shardTask{w: w, shard: id, counter: l.LeaseCounter, checkpoint: l.Checkpoint, checkpointed: l.Checkpoint,
			stopCh: make(chan struct{}), done: make(chan struct{})}
		w.tasks[id] = t
		w.wg.Add(1)
		go t.run()
		w.log.Info("shard assigned", "shard", id, "lease_counter", l.LeaseCounter, "checkpoint", l.Checkpoint)
	}
}

// stopAll stops every shard and waits; release checkpoints and hands them
// back.
func (w *Worker) stopAll(release bool) {
	for _, t := range w.signalAll(release) {
		<-t.done
	}
}

// signalAll asks every shard to stop and returns them.
func (w *Worker) signalAll(release bool) []*shardTask {
	w.mu.Lock()
	var all []*shardTask
	for _, t := range w.tasks {
		all = append(all, t)
	}
	w.mu.Unlock()
	for _, t := range all {
		t.signal(release)
	}
	return all
}

// ensureConsumer registers the fan-out consumer if needed and returns its
// ARN.
func (w *Worker) ensureConsumer(ctx context.Context) (string, error) {
	for {
		d, err := w.c.Streams().DescribeStreamConsumer(ctx, &rifflev1.DescribeStreamConsumerRequest{StreamName: w.cfg.Stream, ConsumerName: w.cfg.ConsumerName})
		if err == nil {
			return d.ConsumerDescription.ConsumerArn, nil
		}
		if ExceptionName(err) != ResourceNotFoundException {
			if classify(ctx, err, false, true) != retry {
				return "", fmt.Errorf("client: describe consumer %s: %w", w.cfg.ConsumerName, err)
			}
		} else {
			r, err := w.c.Streams().RegisterStreamConsumer(ctx, &rifflev1.RegisterStreamConsumerRequest{StreamName: w.cfg.Stream, ConsumerName: w.cfg.ConsumerName})
			if err == nil {
				return r.Consumer.ConsumerArn, nil
			}
			if ExceptionName(err) != ResourceInUseException {
				return "", fmt.Errorf("client: register consumer %s: %w", w.cfg.ConsumerName, err)
			}
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// taskEnd is how a shard task ended.
type taskEnd int

const (
	// taskStopped: the lease may still be this worker's; a heartbeat
	// listing it starts the shard again.
	taskStopped taskEnd = iota
	// leaseRetired: released or lost; that lease counter is never started
	// again, even by a heartbeat answer older than the release.
	leaseRetired
	// shardFinished: processed to its end (SHARD_END checkpointed).
	shardFinished
)

// finish records that a task ended.
func (w *Worker) finish(t *shardTask, how taskEnd) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tasks[t.shard] == t {
		delete(w.tasks, t.shard)
	}
	switch how {
	case shardFinished:
		w.finished[t.shard] = true
	case leaseRetired:
		w.retired[t.shard] = t.counter
	}
}
