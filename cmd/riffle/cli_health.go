package main

import (
	"context"
	"flag"
	"fmt"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

var healthCommand = &command{
	path:     "health",
	synopsis: "[--quiet]",
	summary:  "check a node with the standard gRPC health service",
	details: `
Asks the gRPC health service (service "") of the node at --addr and prints
its status: SERVING, NOT_SERVING, ... (--json: {"status":"SERVING"}). Exits 0
only when SERVING, 4 when the node answers with another status or cannot be
reached. Meant for container health checks: give it one address, and
--quiet prints nothing when the node is SERVING.`,
	newVerb: func() verb { return &healthVerb{} },
}

type healthVerb struct {
	connFlags
	quiet bool
}

func (c *healthVerb) bind(fs *flag.FlagSet) {
	c.connFlags.bind(fs)
	fs.BoolVar(&c.quiet, "quiet", false, "print nothing when the node is SERVING")
}

func (c *healthVerb) validate(_ *flag.FlagSet, args []string) error { return noPositional(args) }

func (c *healthVerb) run(ctx context.Context, std stdio) error {
	cl, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	callCtx, cancel := c.call(ctx)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cl.Conn()).Check(callCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	serving := resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	switch {
	case serving && c.quiet:
	case c.json:
		err = writeJSON(std.out, map[string]string{"status": resp.GetStatus().String()})
	default:
		_, err = fmt.Fprintln(std.out, resp.GetStatus())
	}
	if err != nil || serving {
		return err
	}
	return &exitError{code: exitRetryable, msg: "node is " + resp.GetStatus().String()}
}
