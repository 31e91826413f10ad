package fault

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRecheckSavedRun runs every checker again over a run's saved results:
// RIFFLE_FAULT_RECHECK names a results directory (tests/fault/results/...,
// kept for a failed run, or for any run with RIFFLE_FAULT_KEEP=1) holding
// history.jsonl and, where the run saved them, final-reads.json. Without
// final reads the checkers that need them see every node empty. It prints
// the report and fails on any anomaly, as the run would have; for checking
// an old history with new checkers. Skipped when the variable is unset.
func TestRecheckSavedRun(t *testing.T) {
	dir := os.Getenv("RIFFLE_FAULT_RECHECK")
	if dir == "" {
		t.Skip("RIFFLE_FAULT_RECHECK names no results directory")
	}
	h, err := ReadHistory(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	final := FinalReads{}
	if b, err := os.ReadFile(filepath.Join(dir, "final-reads.json")); err == nil {
		if err := json.Unmarshal(b, &final); err != nil {
			t.Fatalf("final-reads.json: %v", err)
		}
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}
	start := time.Now()
	anomalies, lin := CheckRun(h, final, DefaultLinearizabilityBudget)
	t.Logf("%d history entries checked in %v", len(h), time.Since(start).Round(time.Millisecond))
	var report bytes.Buffer
	WriteReport(&report, 0, h, anomalies, lin)
	for _, line := range strings.Split(strings.TrimRight(report.String(), "\n"), "\n") {
		t.Log(line)
	}
	if len(anomalies) > 0 {
		t.Errorf("%d kinds of anomaly", len(anomalies))
	}
}
