package fault

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
)

// Window is one fault: from the nemesis starting it to the cluster healed.
type Window struct {
	// Kind is the nemesis (kill-one, pause-leader, partition-isolate, ...).
	Kind string
	// Desc is what was done, with the nodes.
	Desc       string
	Start, End time.Time
	// Healed is false when the cluster was not whole again in time.
	Healed bool
}

// Windows lists the faults of a history in order. A nemesis entry's value
// starts with its kind: "kill-one n2".
func (h History) Windows() []Window {
	var out []Window
	for _, c := range h.Pairs() {
		if c.Done.F != FNemesis {
			continue
		}
		kind, _, _ := strings.Cut(c.Invoke.Value, " ")
		out = append(out, Window{Kind: kind, Desc: c.Invoke.Value, Start: c.Invoke.Time, End: c.Done.Time, Healed: c.Done.Type == OK})
	}
	return out
}

// Period is a span of a run and how writes fared in it.
type Period struct {
	Name       string
	Start, End time.Time
	// Puts completed in the period, and how many were acknowledged.
	Puts, Acked int
	// LongestGap is the longest time in the period without an
	// acknowledgement: the worst write unavailability.
	LongestGap time.Duration
}

// Availability is the share of puts acknowledged.
func (p Period) Availability() float64 {
	if p.Puts == 0 {
		return 0
	}
	return float64(p.Acked) / float64(p.Puts)
}

// putStats measures writes between start and end.
func putStats(puts []Completed, acks []time.Time, name string, start, end time.Time) Period {
	p := Period{Name: name, Start: start, End: end}
	for _, c := range puts {
		if t := c.Done.Time; !t.Before(start) && t.Before(end) {
			p.Puts++
			if c.Done.Type == OK {
				p.Acked++
			}
		}
	}
	last := start
	i := sort.Search(len(acks), func(i int) bool { return !acks[i].Before(start) })
	for ; i < len(acks) && acks[i].Before(end); i++ {
		p.LongestGap = max(p.LongestGap, acks[i].Sub(last))
		last = acks[i]
	}
	p.LongestGap = max(p.LongestGap, end.Sub(last))
	return p
}

// FaultAvailability is one fault's periods: before it (since the previous
// fault was healed), during it, and after it (until the next began).
type FaultAvailability struct {
	Window                Window
	Before, During, After Period
	// Unavailability is the longest time without an acknowledged write from
	// the fault's start until writes came back after healing.
	Unavailability time.Duration
}

// Availability measures writes around every fault of the history.
func (h History) Availability() []FaultAvailability {
	var puts []Completed
	var acks []time.Time
	var first, last time.Time
	for _, c := range h.Pairs() {
		if c.Done.F != FPut {
			continue
		}
		puts = append(puts, c)
		if c.Done.Type == OK {
			acks = append(acks, c.Done.Time)
		}
		if first.IsZero() || c.Invoke.Time.Before(first) {
			first = c.Invoke.Time
		}
		last = maxTime(last, c.Done.Time)
	}
	slices.SortFunc(acks, func(a, b time.Time) int { return a.Compare(b) })
	ws := h.Windows()
	var out []FaultAvailability
	for i, w := range ws {
		prevEnd := first
		if i > 0 {
			prevEnd = ws[i-1].End
		}
		nextStart := last
		if i+1 < len(ws) {
			nextStart = ws[i+1].Start
		}
		fa := FaultAvailability{
			Window: w,
			Before: putStats(puts, acks, "before", prevEnd, w.Start),
			During: putStats(puts, acks, "during", w.Start, w.End),
			After:  putStats(puts, acks, "after", w.End, maxTime(w.End, nextStart)),
		}
		fa.Unavailability = putStats(puts, acks, "", w.Start, maxTime(w.End, nextStart)).LongestGap
		out = append(out, fa)
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Counts tallies completed operations: operation, then outcome.
func (h History) Counts() map[string]map[OpType]int {
	out := map[string]map[OpType]int{}
	for _, c := range h.Pairs() {
		if out[c.Done.F] == nil {
			out[c.Done.F] = map[OpType]int{}
		}
		out[c.Done.F][c.Done.Type]++
	}
	return out
}

// WriteReport writes a run's report: the seed, the fault timeline, the
// operation counts, availability around each fault, the worst
// unavailability per fault kind, which shards the linearizability check
// decided, and every anomaly with examples.
func WriteReport(w io.Writer, seed int64, h History, anomalies map[string][]Anomaly, lin LinearizabilityReport) {
	fmt.Fprintf(w, "seed %d\n", seed)
	var start time.Time
	if len(h) > 0 {
		start = h[0].Time
	}
	rel := func(t time.Time) string { return fmt.Sprintf("%6.1fs", t.Sub(start).Seconds()) }

	fmt.Fprintln(w, "operations (ok / fail / info):")
	counts := h.Counts()
	for _, f := range sortedKeys(counts) {
		c := counts[f]
		fmt.Fprintf(w, "  %-8s %7d / %6d / %6d\n", f, c[OK], c[Fail], c[Info])
	}

	fmt.Fprintln(w, "faults (write availability and longest write outage: before | during | after):")
	worst := map[string]time.Duration{}
	for _, fa := range h.Availability() {
		healed := ""
		if !fa.Window.Healed {
			healed = " NOT HEALED"
		}
		fmt.Fprintf(w, "  %s-%s %-28s %s | %s | %s  outage %v%s\n", rel(fa.Window.Start), strings.TrimSpace(rel(fa.Window.End)),
			fa.Window.Desc, periodLine(fa.Before), periodLine(fa.During), periodLine(fa.After),
			fa.Unavailability.Round(10*time.Millisecond), healed)
		worst[fa.Window.Kind] = max(worst[fa.Window.Kind], fa.Unavailability)
	}
	fmt.Fprintln(w, "worst write outage per fault kind:")
	for _, k := range sortedKeys(worst) {
		fmt.Fprintf(w, "  %-20s %v\n", k, worst[k].Round(10*time.Millisecond))
	}

	fmt.Fprintln(w, lin)
	total := 0
	for _, as := range anomalies {
		total += len(as)
	}
	fmt.Fprintf(w, "anomalies: %d\n", total)
	for _, kind := range sortedKeys(anomalies) {
		fmt.Fprintf(w, "  %s:\n", kind)
		for _, a := range anomalies[kind] {
			fmt.Fprintf(w, "    %s\n", a.Detail)
		}
	}
}

func periodLine(p Period) string {
	return fmt.Sprintf("%5.1f%% %6v", 100*p.Availability(), p.LongestGap.Round(100*time.Millisecond))
}

// Plot colours: acknowledged puts dark, unknown outcomes orange, failures
// red; fault windows shaded, a darker shade for kills.
var (
	plotBackground = color.RGBA{255, 255, 255, 255}
	plotFault      = color.RGBA{255, 226, 196, 255}
	plotKill       = color.RGBA{250, 196, 196, 255}
	plotOK         = color.RGBA{30, 60, 140, 255}
	plotInfo       = color.RGBA{240, 150, 0, 255}
	plotFail       = color.RGBA{210, 0, 0, 255}
	plotGrid       = color.RGBA{220, 220, 220, 255}
)

// PlotLatency draws the put latencies over time (x: run time, y: latency
// on a log scale from 1 ms to 10 s, grid lines at each power of ten) with
// the fault windows shaded, as a PNG.
func PlotLatency(path string, h History) error {
	const width, height = 1400, 500
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	fill := func(x0, y0, x1, y1 int, c color.Color) {
		for x := max(x0, 0); x < min(x1, width); x++ {
			for y := max(y0, 0); y < min(y1, height); y++ {
				img.Set(x, y, c)
			}
		}
	}
	fill(0, 0, width, height, plotBackground)
	pairs := h.Pairs()
	if len(h) == 0 || len(pairs) == 0 {
		return writePNG(path, img)
	}
	start, end := h[0].Time, h[len(h)-1].Time
	span := max(end.Sub(start), time.Second)
	xOf := func(t time.Time) int { return int(float64(width-1) * float64(t.Sub(start)) / float64(span)) }
	const decades = 4.0 // 1 ms .. 10 s
	yOf := func(d time.Duration) int {
		ms := max(float64(d)/float64(time.Millisecond), 1)
		frac := min(math.Log10(ms)/decades, 1)
		return int(float64(height-1) * (1 - frac))
	}
	for _, w := range h.Windows() {
		c := plotFault
		if strings.HasPrefix(w.Kind, "kill") || w.Kind == "corrupt-files" {
			c = plotKill
		}
		fill(xOf(w.Start), 0, xOf(w.End)+1, height, c)
	}
	for _, ms := range []float64{1, 10, 100, 1000, 10000} {
		y := yOf(time.Duration(ms * float64(time.Millisecond)))
		fill(0, y, width, y+1, plotGrid)
	}
	for _, c := range pairs {
		if c.Done.F != FPut {
			continue
		}
		col := plotOK
		switch c.Done.Type {
		case Fail:
			col = plotFail
		case Info:
			col = plotInfo
		}
		x, y := xOf(c.Invoke.Time), yOf(c.Latency())
		fill(x-1, y-1, x+2, y+2, col)
	}
	return writePNG(path, img)
}

func writePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
