package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

const overviewHead = `riffle runs and talks to Riffle, a self-hosted broker with the API of
Amazon Kinesis Data Streams.

Usage:
  riffle serve [flags]	run a node (riffle help serve)
`

const overviewTail = `  riffle help [COMMAND]	show a command's flags and output

Client commands take:
  --addr ADDRS     nodes to call, comma-separated host:port (env RIFFLE_ADDR,
                   default 127.0.0.1:7450); calls go round-robin to the ones
                   that are up
  --json           print JSON instead of tables: one object, or one line per
                   record for put and get
  --timeout D      deadline of each call (default 10s)
Flags may come before or after the positional arguments.

Errors go to stderr as "riffle: <ExceptionName>: message".

Exit codes:
  0  success
  1  failure
  2  usage error
  3  resource not found (ResourceNotFoundException)
  4  retryable: throttled, unavailable, timed out; the same command may
     succeed later
`

func printOverview(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprint(tw, overviewHead)
	for _, cmd := range commands {
		fmt.Fprintf(tw, "  riffle %s\t%s\n", cmd.path, cmd.summary)
	}
	fmt.Fprint(tw, overviewTail)
	tw.Flush()
}

// printCommandHelp prints the usage line, the details and the flags of cmd.
func printCommandHelp(w io.Writer, cmd *command) {
	fmt.Fprintf(w, "usage: riffle %s %s\n\n%s\n", cmd.path, cmd.synopsis, cmd.summary)
	if cmd.details != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.details))
	}
	fs := flag.NewFlagSet(cmd.path, flag.ContinueOnError)
	cmd.newVerb().bind(fs)
	fmt.Fprintln(w, "\nFlags:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		name := "--" + f.Name
		if typ != "" {
			name += " " + typ
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, usage)
	})
	tw.Flush()
}
