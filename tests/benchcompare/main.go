// Command benchcompare runs the same produce workloads against a three-node
// Riffle cluster and a three-node NATS JetStream cluster on loopback and
// prints one table of both with the ratio Riffle/NATS (issue 7).
//
// Both sides replicate to three nodes and fsync before acknowledging:
// Riffle always does; the NATS servers run with `sync_interval: always`
// and an R3 file-storage stream. Each workload is N producers, each with
// its own connection and M records in flight, writing records of one size
// for the same duration. Riffle's producers are `riffle bench --json` (a
// separate process, PutRecords batches: M records in flight are M/batch
// calls of batch records); NATS's are nats.go JetStream async publishes,
// at most M pending per producer. With -shards N, Riffle's stream has N
// shards and NATS has N R3 streams, with max(producers, N) publishers, each
// on one stream, sharing the same records in flight.
//
// It lives in its own module so that the broker's go.mod never depends on
// NATS. `make bench-compare` builds both binaries and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	riffleBin string
	natsBin   string
	duration  time.Duration
	sizes     []int
	producers int
	inFlight  int
	batch     int
	shards    int
	// shardBatches makes each Riffle call carry one shard's records.
	shardBatches bool
	// rate, when set, runs the open-loop latency workload instead.
	rate int
	// idle, when set, measures the idle cost of that many groups instead.
	idle     int
	runs     int
	warmup   time.Duration
	portBase int
	systems  []string
	keep     bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("benchcompare", flag.ContinueOnError)
	fs.StringVar(&o.riffleBin, "riffle", "bin/riffle", "the riffle binary")
	fs.StringVar(&o.natsBin, "nats-server", "bin/nats-server", "the nats-server binary")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long each workload runs")
	sizes := fs.String("sizes", "1024,128", "comma-separated record sizes in bytes, one workload each")
	fs.IntVar(&o.producers, "producers", 4, "producers (clients), each with its own connection")
	fs.IntVar(&o.inFlight, "in-flight", 500, "records each producer keeps in flight")
	fs.IntVar(&o.batch, "riffle-batch", 100, "records per Riffle PutRecords call; --in-flight must be a multiple")
	fs.IntVar(&o.shards, "shards", 1, "raft groups on each side: shards of the Riffle stream, R3 streams on NATS")
	fs.BoolVar(&o.shardBatches, "shard-batches", false, "each Riffle PutRecords call carries records of one shard (riffle bench --shard-batches), as the SDK producer and the KPL batch; NATS publishes are one message each either way")
	fs.IntVar(&o.rate, "rate", 0, "the latency workload: this many records a second in all on a fixed schedule (open loop), one record a call (Riffle PutRecord, a NATS synchronous publish to a random stream), -in-flight callers per producer, latency from each call's scheduled time; 0 runs the throughput workload")
	fs.IntVar(&o.idle, "idle", 0, "the idle-cost workload instead: this many shards (Riffle, measured once every replica hibernates) and R3 streams (NATS, measured 10 s after they exist), nothing written or read; the servers' CPU over -duration and their RSS")
	fs.IntVar(&o.runs, "runs", 1, "runs of every workload; the table shows the median of each figure")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "an uncounted run of each workload on its new stream before the measured one; 0 skips it")
	fs.IntVar(&o.portBase, "port-base", 19400, "first of the loopback ports used: base..base+8 and base+10..base+12 Riffle, base+20..base+22 and base+30..base+32 NATS")
	systems := fs.String("systems", "riffle,nats", "systems to run, comma-separated: riffle (gRPC, riffle bench), nats, kinesis (the same Riffle cluster through its Kinesis HTTP API, aws-sdk-go-v2 producers)")
	fs.BoolVar(&o.keep, "keep", false, "keep the data directories and logs")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for s := range strings.SplitSeq(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1<<20-64 {
			return o, fmt.Errorf("-sizes: %q is not a record size between 1 and %d bytes", s, 1<<20-64)
		}
		o.sizes = append(o.sizes, n)
	}
	for s := range strings.SplitSeq(*systems, ",") {
		s = strings.TrimSpace(s)
		if s != "riffle" && s != "nats" && s != "kinesis" {
			return o, fmt.Errorf("-systems: %q is not riffle, nats or kinesis", s)
		}
		o.systems = append(o.systems, s)
	}
	switch {
	case o.duration <= 0:
		return o, fmt.Errorf("-duration must be positive, got %v", o.duration)
	case o.producers < 1:
		return o, fmt.Errorf("-producers must be at least 1, got %d", o.producers)
	case o.batch < 1 || o.batch > 500:
		return o, fmt.Errorf("-riffle-batch must be between 1 and 500, got %d", o.batch)
	case o.inFlight < 1 || (o.rate == 0 && o.inFlight%o.batch != 0):
		return o, fmt.Errorf("-in-flight must be a positive multiple of -riffle-batch %d, got %d", o.batch, o.inFlight)
	case o.rate < 0 || o.rate > 1_000_000:
		return o, fmt.Errorf("-rate must be between 0 and 1000000, got %d", o.rate)
	case o.rate > 0 && o.shardBatches:
		return o, errors.New("-shard-batches groups a call's records: the -rate workload sends one record a call")
	case o.idle < 0 || o.idle > 10_000:
		return o, fmt.Errorf("-idle must be between 0 and 10000, got %d", o.idle)
	case o.idle > 0 && (o.rate > 0 || o.shardBatches):
		return o, errors.New("-idle measures streams nobody writes to: -rate and -shard-batches do not go with it")
	case o.shards < 1:
		return o, fmt.Errorf("-shards must be at least 1, got %d", o.shards)
	case o.runs < 1:
		return o, fmt.Errorf("-runs must be at least 1, got %d", o.runs)
	case o.warmup < 0:
		return o, fmt.Errorf("-warmup must not be negative, got %v", o.warmup)
	case o.portBase < 1024 || o.portBase+32 > 65535:
		return o, fmt.Errorf("-port-base must leave room for 33 ports, got %d", o.portBase)
	}
	for _, s := range o.sizes {
		if o.batch*(s+32) > 5<<20 {
			return o, fmt.Errorf("-riffle-batch %d of %d-byte records is over the 5 MiB of one PutRecords call", o.batch, s)
		}
	}
	return o, nil
}

func run(ctx context.Context, args []string) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	for _, bin := range []*string{&o.riffleBin, &o.natsBin} {
		if *bin, err = filepath.Abs(*bin); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "benchcompare-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "benchcompare: data and logs in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	var riffle *riffleCluster
	var nats *natsCluster
	defer func() {
		if riffle != nil {
			riffle.stop()
		}
		if nats != nil {
			nats.stop()
		}
	}()
	for _, s := range o.systems {
		switch s {
		case "riffle", "kinesis":
			if riffle != nil {
				continue
			}
			fmt.Fprintln(os.Stderr, "benchcompare: starting three Riffle nodes")
			if riffle, err = startRiffle(ctx, o.riffleBin, filepath.Join(dir, "riffle"), o.portBase); err != nil {
				return err
			}
		case "nats":
			fmt.Fprintln(os.Stderr, "benchcompare: starting three NATS servers")
			if nats, err = startNATS(ctx, o.natsBin, filepath.Join(dir, "nats"), o.portBase); err != nil {
				return err
			}
		}
	}

	if o.idle > 0 {
		return runIdle(ctx, o, riffle, nats)
	}
	var results []result
	for r := range o.runs {
		for _, size := range o.sizes {
			w := workload{size: size, producers: o.producers, inFlight: o.inFlight, duration: o.duration, rate: o.rate}
			// Alternate which system goes first, so that neither always
			// runs on the other's leftovers (page cache, compaction).
			order := o.systems
			if r%2 == 1 {
				order = []string{o.systems[len(o.systems)-1], o.systems[0]}[:len(o.systems)]
			}
			for _, s := range order {
				stream := fmt.Sprintf("bench-%d-%d", size, r)
				fmt.Fprintf(os.Stderr, "benchcompare: run %d/%d, %s, %s\n", r+1, o.runs, w, s)
				var res result
				switch s {
				case "riffle":
					res, err = riffle.produce(ctx, stream, w, o.batch, o.shards, o.shardBatches, o.warmup)
				case "nats":
					res, err = nats.produce(ctx, stream, o.shards, w, o.warmup)
				case "kinesis":
					res, err = riffle.produceKinesis(ctx, stream+"-kinesis", w, o.batch, o.shards, o.warmup)
				}
				if err != nil {
					return fmt.Errorf("%s, %s: %w", s, w, err)
				}
				if ctx.Err() != nil {
					return errors.New("interrupted")
				}
				fmt.Fprintf(os.Stderr, "benchcompare: %s\n", res.oneLine())
				results = append(results, res)
			}
		}
	}
	if o.rate > 0 {
		fmt.Printf("%d records/s on a fixed schedule, %d producers x %d callers, one record a call, %s per workload, median of %d run(s); Riffle: %d shard(s), PutRecord; NATS: %d R3 file stream(s), synchronous publish to a random one; latency from each call's scheduled time\n\n",
			o.rate, o.producers, o.inFlight, o.duration, o.runs, o.shards, o.shards)
		return writeTable(os.Stdout, summarize(results))
	}
	calls := "random keys"
	if o.shardBatches {
		calls = "one shard per call"
	}
	fmt.Printf("%d producers x %d records in flight, %s per workload, median of %d run(s); Riffle: %d shard(s), PutRecords of %d, %s; NATS: %d R3 file stream(s), sync_interval always, publishers spread over them\n\n",
		o.producers, o.inFlight, o.duration, o.runs, o.shards, o.batch, calls, o.shards)
	return writeTable(os.Stdout, summarize(results))
}

// runIdle measures both systems' idle cost, -runs times each, alternating.
func runIdle(ctx context.Context, o options, riffle *riffleCluster, nats *natsCluster) error {
	var results []idleResult
	for r := range o.runs {
		order := o.systems
		if r%2 == 1 {
			order = []string{o.systems[len(o.systems)-1], o.systems[0]}[:len(o.systems)]
		}
		for _, s := range order {
			stream := fmt.Sprintf("idle-%d", r)
			fmt.Fprintf(os.Stderr, "benchcompare: run %d/%d, %s, %d idle groups, %s window\n", r+1, o.runs, s, o.idle, o.duration)
			var res idleResult
			var err error
			switch s {
			case "riffle":
				res, err = riffle.idle(ctx, stream, o.idle, o.duration)
			case "nats":
				res, err = nats.idle(ctx, stream, o.idle, o.duration)
			}
			if err != nil {
				return fmt.Errorf("%s, %d idle groups: %w", s, o.idle, err)
			}
			fmt.Fprintf(os.Stderr, "benchcompare: %s: %.3f cores, %.1f MiB RSS per node (idle after %s)\n", s, res.cores, res.rssMiB, res.settled.Round(time.Second))
			results = append(results, res)
		}
	}
	fmt.Printf("%d idle groups (Riffle: shards of one stream, RF3, every replica hibernating; NATS: R3 file streams), CPU of the three servers over %s\n\n", o.idle, o.duration)
	return writeIdleTable(os.Stdout, results)
}
