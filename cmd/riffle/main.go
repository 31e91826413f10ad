// Command riffle is the one binary of Riffle: `riffle serve` runs a node, the
// other verbs call the Kinesis-style API of a running cluster, and
// `riffle bench` measures it. Run `riffle help` for the verbs and exit codes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// usageError marks a mistake in the command line: riffle prints it with the
// verb's usage line and exits with code 2.
type usageError struct{ error }

// Unwrap lets errors.Is see flag.ErrHelp through a usageError.
func (e usageError) Unwrap() error { return e.error }

// stdio is where a verb reads and writes, so tests can capture it.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal the default handling comes back, so a second
	// Ctrl-C kills a verb that is slow to wind down.
	go func() {
		<-ctx.Done()
		stop()
	}()
	os.Exit(runMain(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr}))
}

// runMain runs one invocation and returns its exit code.
func runMain(ctx context.Context, args []string, std stdio) int {
	err := dispatch(ctx, args, std)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintln(std.err, formatError(err))
	return exitCode(err)
}

// command is one verb of the CLI, possibly two words long ("stream create").
type command struct {
	path     string
	synopsis string
	summary  string
	details  string
	newVerb  func() verb
}

// verb is what a command runs: it binds its flags, checks the positional
// arguments and the flags together, then runs.
type verb interface {
	bind(fs *flag.FlagSet)
	validate(fs *flag.FlagSet, args []string) error
	run(ctx context.Context, std stdio) error
}

// commands lists every client verb in the order `riffle help` shows them.
// serve is not here: its flags belong to serve.go.
var commands = []*command{
	streamCreateCommand,
	streamDeleteCommand,
	streamDescribeCommand,
	streamListCommand,
	streamRetentionCommand,
	streamScaleCommand,
	streamModeCommand,
	shardListCommand,
	shardSplitCommand,
	shardMergeCommand,
	putCommand,
	getCommand,
	consumerRegisterCommand,
	consumerListCommand,
	consumerDescribeCommand,
	consumerDeregisterCommand,
	subscribeCommand,
	consumeCommand,
	nodeListCommand,
	nodeDrainCommand,
	nodeUndrainCommand,
	healthCommand,
	benchCommand,
}

func dispatch(ctx context.Context, args []string, std stdio) error {
	if len(args) == 0 {
		printOverview(std.err)
		return usageError{errors.New("no command given")}
	}
	switch args[0] {
	case "serve":
		return runServe(args[1:])
	case "help", "-h", "-help", "--help":
		return runHelp(args[1:], std)
	}
	cmd, rest, err := findCommand(args)
	if err != nil {
		return err
	}
	v, err := parseVerb(cmd, rest)
	if errors.Is(err, flag.ErrHelp) {
		printCommandHelp(std.out, cmd)
		return err
	}
	if err != nil {
		return err
	}
	return v.run(ctx, std)
}

// findCommand matches the leading words of args against the command paths.
func findCommand(args []string) (*command, []string, error) {
	for _, cmd := range commands {
		words := strings.Fields(cmd.path)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return cmd, args[len(words):], nil
		}
	}
	var subs []string
	for _, cmd := range commands {
		if first, sub, ok := strings.Cut(cmd.path, " "); ok && first == args[0] {
			subs = append(subs, sub)
		}
	}
	if len(subs) > 0 {
		if len(args) == 1 {
			return nil, nil, usageError{fmt.Errorf("%s needs a subcommand: %s", args[0], strings.Join(subs, ", "))}
		}
		return nil, nil, usageError{fmt.Errorf("unknown command %q; %s takes %s", args[0]+" "+args[1], args[0], strings.Join(subs, ", "))}
	}
	return nil, nil, usageError{fmt.Errorf("unknown command %q; run 'riffle help'", args[0])}
}

// parseVerb parses args, flags and positionals in any order, into a new
// verb of cmd. Mistakes come back as usageError, -h as flag.ErrHelp.
func parseVerb(cmd *command, args []string) (verb, error) {
	fs := flag.NewFlagSet("riffle "+cmd.path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	v := cmd.newVerb()
	v.bind(fs)
	positional, err := parseInterleaved(fs, args)
	if err == nil {
		err = v.validate(fs, positional)
	}
	if cf, ok := v.(interface{ validateConn() error }); ok && err == nil {
		err = cf.validateConn()
	}
	switch {
	case err == nil:
		return v, nil
	case errors.Is(err, flag.ErrHelp):
		return nil, err
	}
	return nil, usageError{fmt.Errorf("%w\nusage: riffle %s %s\nrun 'riffle help %s' for the flags", err, cmd.path, cmd.synopsis, cmd.path)}
}

func runHelp(args []string, std stdio) error {
	if len(args) == 0 {
		printOverview(std.out)
		return nil
	}
	if args[0] == "serve" {
		// serve.go owns its flags; its FlagSet prints them on -h.
		return runServe([]string{"-h"})
	}
	cmd, rest, err := findCommand(args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError{fmt.Errorf("unknown command %q; run 'riffle help'", strings.Join(args, " "))}
	}
	printCommandHelp(std.out, cmd)
	return nil
}
