package main

import (
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// health exits 0 only when SERVING, and --quiet keeps a passing docker
// health check silent.
func TestHealth(t *testing.T) {
	f := newFakeBroker()
	addr, hs := f.start(t)
	tests := []struct {
		status     healthpb.HealthCheckResponse_ServingStatus
		args       []string
		wantCode   int
		wantStdout string
	}{
		{healthpb.HealthCheckResponse_SERVING, nil, exitOK, "SERVING\n"},
		{healthpb.HealthCheckResponse_SERVING, []string{"--quiet"}, exitOK, ""},
		{healthpb.HealthCheckResponse_SERVING, []string{"--json"}, exitOK, `{"status":"SERVING"}` + "\n"},
		{healthpb.HealthCheckResponse_NOT_SERVING, []string{"--quiet"}, exitRetryable, "NOT_SERVING\n"},
		{healthpb.HealthCheckResponse_NOT_SERVING, []string{"--json"}, exitRetryable, `{"status":"NOT_SERVING"}` + "\n"},
	}
	for _, tt := range tests {
		hs.SetServingStatus("", tt.status)
		code, stdout, stderr := runCLI(t, "", append([]string{"health", "--addr", addr}, tt.args...)...)
		if code != tt.wantCode || stdout != tt.wantStdout {
			t.Errorf("%v %q: exit %d, stdout %q, stderr %q; want %d, %q", tt.status, tt.args, code, stdout, stderr, tt.wantCode, tt.wantStdout)
		}
		if tt.wantCode == exitOK && stderr != "" {
			t.Errorf("%v %q: stderr %q on success", tt.status, tt.args, stderr)
		}
	}
}
