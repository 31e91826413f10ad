package main

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsCluster is three nats-server processes with JetStream on loopback.
type natsCluster struct {
	urls  []string
	nodes []*process
}

// natsConfig is one server's configuration: JetStream with file storage
// that fsyncs every write before acknowledging it (sync_interval: always),
// clustered with the other two.
func natsConfig(name, client, cluster, storeDir string, routes []string) string {
	var rs []string
	for _, r := range routes {
		rs = append(rs, fmt.Sprintf("%q", "nats-route://"+r))
	}
	return fmt.Sprintf(`server_name: %q
listen: %q
jetstream {
  store_dir: %q
  sync_interval: always
}
cluster {
  name: "benchcompare"
  listen: %q
  routes: [%s]
}
`, name, client, storeDir, cluster, strings.Join(rs, ", "))
}

// startNATS starts three servers with data under dir and waits until
// JetStream answers. Server i listens for clients on portBase+20+i and for
// routes on portBase+30+i.
func startNATS(ctx context.Context, bin, dir string, portBase int) (*natsCluster, error) {
	c := &natsCluster{}
	var routes []string
	for i := range 3 {
		c.urls = append(c.urls, fmt.Sprintf("nats://127.0.0.1:%d", portBase+20+i))
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", portBase+30+i))
	}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		nodeDir := filepath.Join(dir, name)
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, name+".conf")
		cfg := natsConfig(name, strings.TrimPrefix(c.urls[i], "nats://"), routes[i], filepath.Join(nodeDir, "jetstream"), routes)
		if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		p, err := startProcess(bin, filepath.Join(dir, name+".log"), "-c", conf)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.nodes = append(c.nodes, p)
	}
	// JetStream is ready when each server answers account info (which needs
	// the meta group's leader).
	deadline := time.Now().Add(90 * time.Second)
	for i, url := range c.urls {
		for {
			err := jetStreamReady(ctx, url)
			if err == nil {
				break
			}
			if exited := c.nodes[i].exited(); exited != nil {
				c.stop()
				return nil, fmt.Errorf("nats server %d exited (%v); its log:\n%s", i+1, exited, c.nodes[i].tail())
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				c.stop()
				return nil, fmt.Errorf("nats server %d at %s: JetStream not ready: %v; its log:\n%s", i+1, url, err, c.nodes[i].tail())
			}
			pause(ctx, 250*time.Millisecond)
		}
	}
	return c, nil
}

func jetStreamReady(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = js.AccountInfo(callCtx)
	return err
}

func (c *natsCluster) stop() {
	for _, p := range c.nodes {
		p.stop()
	}
}

// produce creates streams R3 file streams, runs the workload against them
// and deletes them. Each publisher has its own connection and stream and
// keeps at most its share of the workload's records in flight as async
// publishes waiting for their acks. A warm-up run of the same workload,
// not counted, comes first.
func (c *natsCluster) produce(ctx context.Context, stream string, streams int, w workload, warmup time.Duration) (result, error) {
	url := strings.Join(c.urls, ",")
	admin, err := nats.Connect(url)
	if err != nil {
		return result{}, err
	}
	defer admin.Close()
	js, err := jetstream.New(admin)
	if err != nil {
		return result{}, err
	}
	var names, subjects []string
	for i := range streams {
		name := fmt.Sprintf("%s-%d", stream, i)
		names, subjects = append(names, name), append(subjects, name+".records")
	}
	defer func() {
		delCtx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for _, name := range names {
			_ = js.DeleteStream(delCtx, name)
		}
	}()
	for i, name := range names {
		if err := createNATSStream(ctx, js, name, subjects[i]); err != nil {
			return result{}, err
		}
	}
	if streams > 1 {
		fmt.Fprintf(os.Stderr, "benchcompare: nats: %d streams ready\n", streams)
	}

	payload := make([]byte, w.size)
	crand.Read(payload)
	// One publisher set per stream: at least one publisher a stream, each
	// on its own connection and subject, sharing the workload's records in
	// flight (nats bench, run once per stream, measured the same here).
	publishers := max(w.producers, streams)
	inFlight := max(1, w.producers*w.inFlight/publishers)
	if w.rate > 0 {
		publishers, inFlight = w.producers, w.inFlight // callers per connection
	}
	producers := make([]*natsProducer, publishers)
	for i := range producers {
		nc, err := nats.Connect(url)
		if err != nil {
			return result{}, err
		}
		defer nc.Close()
		pjs, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(inFlight), jetstream.WithPublishAsyncTimeout(30*time.Second))
		if err != nil {
			return result{}, err
		}
		producers[i] = &natsProducer{js: pjs, subject: subjects[i%streams], subjects: subjects, payload: payload, inFlight: inFlight}
	}
	run := runNATSProducers
	if w.rate > 0 {
		run = func(ctx context.Context, producers []*natsProducer, d time.Duration) time.Duration {
			return runNATSSteady(ctx, producers, w.rate, d)
		}
	}
	if warmup > 0 {
		fmt.Fprintf(os.Stderr, "benchcompare: nats: warming up for %s\n", warmup)
		run(ctx, producers, warmup)
	}
	elapsed := run(ctx, producers, w.duration)

	res := result{system: "nats", workload: w, elapsed: elapsed}
	var latencies []time.Duration
	for _, p := range producers {
		res.records += p.acked
		res.errors += p.failed
		for name, n := range p.errors {
			if res.errorNames == nil {
				res.errorNames = map[string]uint64{}
			}
			res.errorNames[name] += n
		}
		latencies = append(latencies, p.latencies...)
	}
	res.recPerS = float64(res.records) / elapsed.Seconds()
	res.mibPerS = float64(res.records) * float64(w.size) / (1 << 20) / elapsed.Seconds()
	slices.Sort(latencies)
	res.p50, res.p99 = quantileMillis(latencies, 0.50), quantileMillis(latencies, 0.99)
	return res, nil
}

// createNATSStream creates one R3 file stream and waits until it takes a
// publish. The meta group may still be placing peers just after start, so
// it retries for a minute.
func createNATSStream(ctx context.Context, js jetstream.JetStream, name, subject string) error {
	cfg := jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Storage: jetstream.FileStorage, Replicas: 3}
	deadline := time.Now().Add(60 * time.Second)
	for {
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := js.CreateStream(callCtx, cfg)
		if err == nil {
			// The first publish waits for the stream's leader.
			_, err = js.Publish(callCtx, subject, []byte("ready"))
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("create stream %s: %w", name, err)
		}
		pause(ctx, 500*time.Millisecond)
	}
}

// runNATSProducers runs the producers for d, from zeroed counts, and
// returns how long they took to stop (calls in flight at d finish and
// count).
func runNATSProducers(ctx context.Context, producers []*natsProducer, d time.Duration) time.Duration {
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for _, p := range producers {
		p.acked, p.failed, p.errors, p.latencies = 0, 0, nil, nil
		wg.Go(func() { p.run(&stop) })
	}
	pause(ctx, d)
	stop.Store(true)
	wg.Wait()
	return time.Since(start)
}

// natsProducer publishes to one subject as fast as its acks come back,
// with at most inFlight publishes unacknowledged. Acks of one stream come
// back in order, so one goroutine waits for them in publish order.
type natsProducer struct {
	js      jetstream.JetStream
	subject string
	// subjects are every stream's, for the steady workload, whose calls
	// go to a random one.
	subjects []string
	payload  []byte
	inFlight int

	// Written by run's goroutines, read after run returns.
	acked, failed uint64
	errors        map[string]uint64
	latencies     []time.Duration
}

type natsPending struct {
	future jetstream.PubAckFuture
	sent   time.Time
}

func (p *natsProducer) run(stop *atomic.Bool) {
	slots := make(chan struct{}, p.inFlight)
	pending := make(chan natsPending, p.inFlight)
	p.errors = map[string]uint64{}
	publishErrors := map[string]uint64{}
	go func() {
		defer close(pending)
		for !stop.Load() {
			slots <- struct{}{}
			sent := time.Now()
			f, err := p.js.PublishAsync(p.subject, p.payload)
			if err != nil {
				publishErrors[err.Error()]++
				<-slots
				continue
			}
			pending <- natsPending{future: f, sent: sent}
		}
	}()
	for pd := range pending {
		select {
		case <-pd.future.Ok():
			p.acked++
			p.latencies = append(p.latencies, time.Since(pd.sent))
		case err := <-pd.future.Err():
			p.failed++
			p.errors[err.Error()]++
		}
		<-slots
	}
	// pending is closed: the publishing goroutine has returned.
	for name, n := range publishErrors {
		p.failed += n
		p.errors[name] += n
	}
}

// runNATSSteady is the open-loop workload: a schedule of rate publishes
// a second in all, taken by each producer's inFlight callers as they come
// free; each is a synchronous JetStream publish to a random stream, and
// its latency runs from its scheduled time, so a backlog shows (no
// coordinated omission). The queue holds a second of the schedule.
func runNATSSteady(ctx context.Context, producers []*natsProducer, rate int, d time.Duration) time.Duration {
	jobs := make(chan time.Time, rate)
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, p := range producers {
		p.acked, p.failed, p.errors, p.latencies = 0, 0, map[string]uint64{}, nil
		for range p.inFlight {
			wg.Go(func() {
				rng := mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64()))
				for when := range jobs {
					callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
					_, err := p.js.Publish(callCtx, p.subjects[rng.IntN(len(p.subjects))], p.payload)
					cancel()
					latency := time.Since(when)
					mu.Lock()
					if err != nil {
						p.failed++
						p.errors[err.Error()]++
					} else {
						p.acked++
						p.latencies = append(p.latencies, latency)
					}
					mu.Unlock()
				}
			})
		}
	}
	interval := time.Second / time.Duration(rate)
	for i := 0; ; i++ {
		when := start.Add(time.Duration(i) * interval)
		if when.Sub(start) >= d || ctx.Err() != nil {
			break
		}
		if wait := time.Until(when); wait > 0 {
			pause(ctx, wait)
		}
		jobs <- when
	}
	close(jobs)
	wg.Wait()
	return time.Since(start)
}

// quantileMillis is the q quantile of sorted latencies in milliseconds:
// the value of rank ceil(q*n).
func quantileMillis(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return float64(sorted[rank-1]) / float64(time.Millisecond)
}
