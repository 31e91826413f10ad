package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	rifflev1 "github.com/riffle-streams/riffle/proto/riffle/v1"
)

// The consumer verbs manage enhanced fan-out consumers. A consumer is named
// by stream and name, or by its ARN with --arn.

var consumerRegisterCommand = &command{
	path:     "consumer register",
	synopsis: "STREAM NAME [--no-wait]",
	summary:  "register an enhanced fan-out consumer and wait until it is ACTIVE",
	details: `
Registers consumer NAME on STREAM (at most 20 per stream), then polls it
until it is ACTIVE (up to --timeout) unless --no-wait. Prints the consumer:
name, ARN, status and creation time (--json: one object). 'riffle subscribe
--consumer NAME' then reads the stream with the consumer's own throughput.`,
	newVerb: func() verb { return &consumerRegister{} },
}

var consumerListCommand = &command{
	path:     "consumer list",
	synopsis: "STREAM",
	summary:  "list the registered consumers of a stream",
	details: `
Prints one consumer per line: name, status, creation time and ARN (--json:
one JSON array). Follows the listing's pages.`,
	newVerb: func() verb { return &consumerList{} },
}

var consumerDescribeCommand = &command{
	path:     "consumer describe",
	synopsis: "(STREAM NAME | --arn ARN)",
	summary:  "show one consumer",
	newVerb:  func() verb { return &consumerDescribe{} },
	details: `
Prints the consumer's name, ARN, status, creation time and stream ARN
(--json: one object). Exits 3 when there is no such consumer.`,
}

var consumerDeregisterCommand = &command{
	path:     "consumer deregister",
	synopsis: "(STREAM NAME | --arn ARN)",
	summary:  "deregister a consumer; its subscriptions end",
	details: `
Deregisters the consumer: it turns DELETING and then disappears, and its
subscriptions end with ResourceNotFoundException.`,
	newVerb: func() verb { return &consumerDeregister{} },
}

// consumerJSON is a consumer as --json prints it.
type consumerJSON struct {
	ConsumerName      string    `json:"consumer_name"`
	ConsumerARN       string    `json:"consumer_arn"`
	ConsumerStatus    string    `json:"consumer_status"`
	CreationTimestamp time.Time `json:"consumer_creation_timestamp,omitzero"`
	StreamARN         string    `json:"stream_arn,omitempty"`
}

func consumerStatusName(s rifflev1.ConsumerStatus) string {
	return strings.TrimPrefix(s.String(), "CONSUMER_STATUS_")
}

func toConsumerJSON(c *rifflev1.Consumer) consumerJSON {
	return consumerJSON{ConsumerName: c.GetConsumerName(), ConsumerARN: c.GetConsumerArn(),
		ConsumerStatus: consumerStatusName(c.GetConsumerStatus()), CreationTimestamp: timeOf(c.GetConsumerCreationTimestamp())}
}

func descriptionJSON(d *rifflev1.ConsumerDescription) consumerJSON {
	return consumerJSON{ConsumerName: d.GetConsumerName(), ConsumerARN: d.GetConsumerArn(),
		ConsumerStatus: consumerStatusName(d.GetConsumerStatus()), CreationTimestamp: timeOf(d.GetConsumerCreationTimestamp()),
		StreamARN: d.GetStreamArn()}
}

func writeConsumer(w io.Writer, c consumerJSON) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Consumer:\t%s\n", c.ConsumerName)
	fmt.Fprintf(tw, "ARN:\t%s\n", c.ConsumerARN)
	fmt.Fprintf(tw, "Status:\t%s\n", c.ConsumerStatus)
	if !c.CreationTimestamp.IsZero() {
		fmt.Fprintf(tw, "Created:\t%s\n", c.CreationTimestamp.Format(time.RFC3339))
	}
	if c.StreamARN != "" {
		fmt.Fprintf(tw, "Stream ARN:\t%s\n", c.StreamARN)
	}
	return tw.Flush()
}

// consumerRef is a consumer named by stream and name, or by ARN.
type consumerRef struct {
	stream, name, arn string
}

func (r *consumerRef) bind(fs *flag.FlagSet) {
	fs.StringVar(&r.arn, "arn", "", "the consumer's ARN, instead of STREAM NAME")
}

func (r *consumerRef) validate(args []string) error {
	switch {
	case r.arn != "" && len(args) > 0:
		return errors.New("give STREAM NAME or --arn, not both")
	case r.arn != "":
		return nil
	case len(args) != 2:
		return fmt.Errorf("want STREAM NAME (or --arn ARN), got %d arguments", len(args))
	case args[0] == "" || args[1] == "":
		return errors.New("empty stream or consumer name")
	}
	r.stream, r.name = args[0], args[1]
	return nil
}

type consumerRegister struct {
	connFlags
	stream, name string
	noWait       bool
}

func (c *consumerRegister) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.BoolVar(&c.noWait, "no-wait", false, "return while the consumer is still CREATING")
}

func (c *consumerRegister) validate(_ *flag.FlagSet, args []string) error {
	if len(args) != 2 || args[0] == "" || args[1] == "" {
		return fmt.Errorf("want STREAM NAME, got %q", args)
	}
	c.stream, c.name = args[0], args[1]
	return nil
}

func (c *consumerRegister) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	callCtx, cancel := c.call(ctx)
	resp, err := cl.Streams().RegisterStreamConsumer(callCtx, &rifflev1.RegisterStreamConsumerRequest{StreamName: c.stream, ConsumerName: c.name})
	cancel()
	if err != nil {
		return err
	}
	out := toConsumerJSON(resp.GetConsumer())
	if !c.noWait {
		deadline := time.Now().Add(c.timeout)
		for out.ConsumerStatus != "ACTIVE" {
			if time.Now().After(deadline) {
				return fmt.Errorf("consumer %s is still %s after %v", c.name, out.ConsumerStatus, c.timeout)
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
			callCtx, cancel := c.call(ctx)
			d, err := cl.Streams().DescribeStreamConsumer(callCtx, &rifflev1.DescribeStreamConsumerRequest{ConsumerArn: out.ConsumerARN})
			cancel()
			if err != nil {
				return err
			}
			out = descriptionJSON(d.GetConsumerDescription())
		}
	}
	if c.json {
		return writeJSON(std.out, out)
	}
	return writeConsumer(std.out, out)
}

type consumerList struct {
	connFlags
	stream string
}

func (c *consumerList) bind(fs *flag.FlagSet) { c.connFlags.bind(fs) }

func (c *consumerList) validate(_ *flag.FlagSet, args []string) (err error) {
	c.stream, err = exactlyOne(args, "stream name")
	return err
}

func (c *consumerList) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	out := []consumerJSON{}
	req := &rifflev1.ListStreamConsumersRequest{StreamName: c.stream}
	for {
		callCtx, cancel := c.call(ctx)
		resp, err := cl.Streams().ListStreamConsumers(callCtx, req)
		cancel()
		if err != nil {
			return err
		}
		for _, con := range resp.GetConsumers() {
			out = append(out, toConsumerJSON(con))
		}
		if resp.GetNextToken() == "" {
			break
		}
		req = &rifflev1.ListStreamConsumersRequest{NextToken: resp.GetNextToken()}
	}
	if c.json {
		return writeJSON(std.out, out)
	}
	tw := tabwriter.NewWriter(std.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tCREATED\tARN")
	for _, con := range out {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", con.ConsumerName, con.ConsumerStatus, con.CreationTimestamp.Format(time.RFC3339), con.ConsumerARN)
	}
	return tw.Flush()
}

type consumerDescribe struct {
	connFlags
	ref consumerRef
}

func (c *consumerDescribe) bind(fs *flag.FlagSet) { c.connFlags.bind(fs); c.ref.bind(fs) }

func (c *consumerDescribe) validate(_ *flag.FlagSet, args []string) error {
	return c.ref.validate(args)
}

func (c *consumerDescribe) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	callCtx, cancel := c.call(ctx)
	defer cancel()
	resp, err := cl.Streams().DescribeStreamConsumer(callCtx, &rifflev1.DescribeStreamConsumerRequest{
		StreamName: c.ref.stream, ConsumerName: c.ref.name, ConsumerArn: c.ref.arn})
	if err != nil {
		return err
	}
	out := descriptionJSON(resp.GetConsumerDescription())
	if c.json {
		return writeJSON(std.out, out)
	}
	return writeConsumer(std.out, out)
}

type consumerDeregister struct {
	connFlags
	ref consumerRef
}

func (c *consumerDeregister) bind(fs *flag.FlagSet) { c.connFlags.bind(fs); c.ref.bind(fs) }

func (c *consumerDeregister) validate(_ *flag.FlagSet, args []string) error {
	return c.ref.validate(args)
}

func (c *consumerDeregister) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	callCtx, cancel := c.call(ctx)
	defer cancel()
	_, err = cl.Streams().DeregisterStreamConsumer(callCtx, &rifflev1.DeregisterStreamConsumerRequest{
		StreamName: c.ref.stream, ConsumerName: c.ref.name, ConsumerArn: c.ref.arn})
	if err != nil {
		return err
	}
	if c.json {
		return writeJSON(std.out, map[string]string{"deregistered": c.ref.name + c.ref.arn})
	}
	fmt.Fprintf(std.err, "consumer %s deregistered\n", c.ref.name+c.ref.arn)
	return nil
}
