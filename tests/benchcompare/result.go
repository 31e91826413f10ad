package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"
)

// workload is one produce workload, the same on both systems.
type workload struct {
	size      int
	producers int
	inFlight  int
	duration  time.Duration
	// rate, when set, is the open-loop workload: rate records a second in
	// all, one record a call, inFlight callers per producer, latency from
	// each call's scheduled time.
	rate int
}

func (w workload) String() string {
	if w.rate > 0 {
		return fmt.Sprintf("%s records at %d/s, %d producers x %d callers, %s", sizeName(w.size), w.rate, w.producers, w.inFlight, w.duration)
	}
	return fmt.Sprintf("%s records, %d producers x %d in flight, %s", sizeName(w.size), w.producers, w.inFlight, w.duration)
}

// sizeName prints 1024 as "1 KiB" and 128 as "128 B".
func sizeName(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// result is one run of a workload on one system.
type result struct {
	system   string
	workload workload
	records  uint64
	elapsed  time.Duration
	errors   uint64
	// errorNames counts failed records by error, where the system says.
	errorNames map[string]uint64
	recPerS    float64
	mibPerS    float64
	p50, p99   float64 // ack latency, ms
}

func (r result) oneLine() string {
	line := fmt.Sprintf("%s: %d records in %.1fs, %.0f records/s, %.2f MiB/s, ack p50 %.2fms p99 %.2fms, %d errors",
		r.system, r.records, r.elapsed.Seconds(), r.recPerS, r.mibPerS, r.p50, r.p99, r.errors)
	for _, name := range slices.Sorted(maps.Keys(r.errorNames)) {
		line += fmt.Sprintf(", %s %d", name, r.errorNames[name])
	}
	return line
}

// row is the median of one system's runs of one workload.
type row struct {
	system   string
	size     int
	runs     int
	errors   uint64
	recPerS  float64
	mibPerS  float64
	p50, p99 float64
}

// summarize takes, per record size and system, the median of each figure
// over the runs (each figure on its own: the median records/s and the
// median p99 may come from different runs). Rows keep the order of first
// appearance.
func summarize(results []result) []row {
	type key struct {
		size   int
		system string
	}
	var order []key
	groups := map[key][]result{}
	sizeRank := map[int]int{}
	for _, r := range results {
		k := key{r.workload.size, r.system}
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
		if _, seen := sizeRank[k.size]; !seen {
			sizeRank[k.size] = len(sizeRank)
		}
	}
	// Sizes in their order of first appearance, then riffle before nats.
	slices.SortStableFunc(order, func(a, b key) int {
		if a.size != b.size {
			return sizeRank[a.size] - sizeRank[b.size]
		}
		return systemRank(a.system) - systemRank(b.system)
	})
	var rows []row
	for _, k := range order {
		g := groups[k]
		pick := func(f func(result) float64) float64 {
			vs := make([]float64, len(g))
			for i, r := range g {
				vs[i] = f(r)
			}
			return median(vs)
		}
		rw := row{system: k.system, size: k.size, runs: len(g),
			recPerS: pick(func(r result) float64 { return r.recPerS }),
			mibPerS: pick(func(r result) float64 { return r.mibPerS }),
			p50:     pick(func(r result) float64 { return r.p50 }),
			p99:     pick(func(r result) float64 { return r.p99 }),
		}
		for _, r := range g {
			rw.errors += r.errors
		}
		rows = append(rows, rw)
	}
	return rows
}

func systemRank(s string) int {
	return map[string]int{"riffle": 0, "kinesis": 1, "nats": 2}[s]
}

// median of vs: the middle value, or the mean of the two middle ones.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// writeTable prints the rows and, for each size with both systems, the
// ratio Riffle/NATS of every figure (above 1 is better for throughput,
// below 1 for latency).
func writeTable(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "records\tsystem\truns\trecords/s\tMiB/s\tack p50 ms\tack p99 ms\terrors\t")
	for i, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t\n", sizeName(r.size), r.system, r.runs, r.recPerS, r.mibPerS, r.p50, r.p99, r.errors)
		if i+1 < len(rows) && rows[i+1].size == r.size {
			continue
		}
		for _, p := range [][3]string{{"riffle", "nats", "Riffle/NATS"}, {"kinesis", "riffle", "Kinesis/gRPC"}} {
			a, b, ok := pair(rows, r.size, p[0], p[1])
			if !ok {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t\t%sx\t%sx\t%sx\t%sx\t\t\n", sizeName(r.size), p[2],
				ratio(a.recPerS, b.recPerS), ratio(a.mibPerS, b.mibPerS), ratio(a.p50, b.p50), ratio(a.p99, b.p99))
		}
	}
	return tw.Flush()
}

// pair finds the rows of two systems for a size.
func pair(rows []row, size int, first, second string) (a, b row, ok bool) {
	var haveA, haveB bool
	for _, r := range rows {
		if r.size != size {
			continue
		}
		switch r.system {
		case first:
			a, haveA = r, true
		case second:
			b, haveB = r, true
		}
	}
	return a, b, haveA && haveB
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}
