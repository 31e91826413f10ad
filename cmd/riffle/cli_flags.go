package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/riffle-streams/riffle/client"
)

// defaultAddr is where `riffle serve` listens with no flags.
const defaultAddr = "127.0.0.1:7450"

// connFlags are the flags every client verb shares.
type connFlags struct {
	addr    string
	json    bool
	timeout time.Duration
}

func (c *connFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", envString("RIFFLE_ADDR", defaultAddr), "comma-separated `host:port` list of the nodes to call (env RIFFLE_ADDR)")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of text")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline of each call")
}

func (c *connFlags) validateConn() error {
	if len(c.addrs()) == 0 {
		return errors.New("--addr is empty")
	}
	if c.timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %v", c.timeout)
	}
	return nil
}

func (c *connFlags) addrs() []string {
	var out []string
	for a := range strings.SplitSeq(c.addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// dial connects within one call's timeout.
func (c *connFlags) dial(ctx context.Context) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return client.Dial(ctx, c.addrs())
}

// call returns the context of one API call.
func (c *connFlags) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// parseInterleaved parses flags wherever they appear among the positional
// arguments (`stream create orders --shards 4` as well as
// `stream create --shards 4 orders`); everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// isSet reports whether the flag was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// exactlyOne checks that args holds just the named positional argument.
func exactlyOne(args []string, what string) (string, error) {
	switch len(args) {
	case 0:
		return "", fmt.Errorf("missing %s", what)
	case 1:
		if args[0] == "" {
			return "", fmt.Errorf("empty %s", what)
		}
		return args[0], nil
	}
	return "", fmt.Errorf("unexpected arguments %q after %s", args[1:], what)
}

// noPositional checks that a verb that takes only flags got no arguments.
func noPositional(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q", args)
	}
	return nil
}
