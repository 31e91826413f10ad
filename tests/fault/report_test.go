package fault

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A fault window's availability: puts acknowledged every 100 ms, none for
// the 2 s of a kill, then again; the outage is the 2 s from the kill to
// the first acknowledgement after it.
func TestAvailabilityAroundAFault(t *testing.T) {
	b := newBuilder()
	t0 := b.now
	at := func(ms int) { b.now = t0.Add(time.Duration(ms)*time.Millisecond - time.Millisecond) }
	n := 0
	put := func(ms int, typ OpType) {
		at(ms)
		v := "w0-" + string(rune('a'+n%26)) + string(rune('a'+n/26))
		n++
		b.invokePut("w0", v)
		b.completePut("w0", v, typ, "s0", "")
	}
	for ms := 0; ms < 1000; ms += 100 {
		put(ms, OK)
	}
	at(1000)
	b.add(Op{Type: Invoke, F: FNemesis, Process: "nemesis", Value: "kill-one n2"})
	for ms := 1100; ms < 3000; ms += 100 {
		put(ms, Fail)
	}
	at(3000)
	b.add(Op{Type: OK, F: FNemesis, Process: "nemesis", Value: "kill-one n2"})
	for ms := 3000; ms < 4000; ms += 100 {
		put(ms, OK)
	}
	as := b.h.Availability()
	if len(as) != 1 {
		t.Fatalf("%d windows", len(as))
	}
	fa := as[0]
	if fa.Window.Kind != "kill-one" || !fa.Window.Healed {
		t.Errorf("window %+v", fa.Window)
	}
	if fa.Before.Availability() != 1 || fa.During.Availability() != 0 || fa.After.Availability() != 1 {
		t.Errorf("availability before %v during %v after %v", fa.Before.Availability(), fa.During.Availability(), fa.After.Availability())
	}
	if got := fa.Unavailability.Round(10 * time.Millisecond); got != 2*time.Second {
		t.Errorf("unavailability %v, want 2s", got)
	}
	var report bytes.Buffer
	lin := LinearizabilityReport{Budget: LinearizabilityBudget{MaxOps: 10, Timeout: time.Second},
		Linearizable: []string{"s0", "s1"}, TooLarge: []string{"s2"}, TimedOut: []string{"s3"}}
	WriteReport(&report, 42, b.h, map[string][]Anomaly{KindLost: {{KindLost, "middle: value x"}}}, lin)
	for _, want := range []string{"seed 42", "put", "kill-one n2", "kill-one             2s", "anomalies: 1", "middle: value x",
		"linearizability: 2 shards linearizable, 0 not; 1 too large to check (over 10 operations): s2; 1 undecided after 1s each: s3"} {
		if !strings.Contains(report.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, report.String())
		}
	}

	path := filepath.Join(t.TempDir(), "latency.png")
	if err := PlotLatency(path, b.h); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// The middle of the kill window is shaded.
	x := img.Bounds().Dx() / 2
	if r, g, bl, _ := img.At(x, 5).RGBA(); r>>8 != 250 || g>>8 != 196 || bl>>8 != 196 {
		t.Errorf("pixel in the kill window is %d,%d,%d", r>>8, g>>8, bl>>8)
	}
}
