package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"time"
)

// report is one run: what results.json holds.
type report struct {
	Command   string           `json:"command"`
	Commit    string           `json:"commit,omitempty"` // git HEAD of the checkout, "+dirty" with uncommitted changes
	Started   time.Time        `json:"started"`
	Seconds   float64          `json:"seconds"`
	Quick     bool             `json:"quick"`
	Machine   machine          `json:"machine"`
	Method    string           `json:"method"`
	Scenarios []string         `json:"scenarios"`
	Backends  []*backendResult `json:"backends"`
	Ratios    []ratioRow       `json:"ratios"`
	Files     []string         `json:"-"`

	ownResults // failover.go, semaphore.go
}

// ratioRow is lockkit against one other variant in one scenario, over the
// scenario's repeats (rounds, or contended slices) paired one by one.
type ratioRow struct {
	Backend  string  `json:"backend"`
	Scenario string  `json:"scenario"`
	Metric   string  `json:"metric"` // what is divided: "p50" (lower is better) or "throughput" (higher is better)
	Lockkit  string  `json:"lockkit"`
	Other    string  `json:"other"`
	Role     role    `json:"other_role"`
	Ratio    float64 `json:"ratio"` // 20 % trimmed mean of the repeats' log ratios, exponentiated
	Lo       float64 `json:"ci95_lo"`
	Hi       float64 `json:"ci95_hi"`
	Repeats  int     `json:"repeats"`
}

// computeRatios pairs every lockkit variant's repeats with every floor's
// and peer's in the same scenario: latency scenarios compare each round's
// median, the contended scenario each slice's acquisitions.
func computeRatios(rep *report) []ratioRow {
	var out []ratioRow
	f := func(ns []int64) []float64 {
		o := make([]float64, len(ns))
		for i, n := range ns {
			o[i] = float64(n)
		}
		return o
	}
	g := func(ns []int) []float64 {
		o := make([]float64, len(ns))
		for i, n := range ns {
			o[i] = float64(n)
		}
		return o
	}
	for _, br := range rep.Backends {
		for _, sc := range []struct {
			name string
			rs   []*latencyResult
		}{{"1 key", br.Single}, {"a new key each op", br.Distinct}, {"100 keys at once", br.Multi}} {
			for _, lk := range sc.rs {
				if lk.Role != roleLockkit || lk.Skipped != "" {
					continue
				}
				for _, o := range sc.rs {
					if o.Role == roleLockkit || o.Skipped != "" {
						continue
					}
					est, lo, hi, n := ratioCI(f(lk.RoundMedianNs), f(o.RoundMedianNs))
					if n == 0 {
						continue
					}
					out = append(out, ratioRow{br.Backend, sc.name, "p50", lk.Variant, o.Variant, o.Role, est, lo, hi, n})
				}
			}
		}
		for _, lk := range br.Contended {
			if lk.Role != roleLockkit || lk.Skipped != "" {
				continue
			}
			for _, o := range br.Contended {
				if o.Role == roleLockkit || o.Skipped != "" {
					continue
				}
				est, lo, hi, n := ratioCI(g(lk.PerSlice), g(o.PerSlice))
				if n == 0 {
					continue
				}
				out = append(out, ratioRow{br.Backend, "contended", "throughput", lk.Variant, o.Variant, o.Role, est, lo, hi, n})
			}
		}
	}
	return out
}

type machine struct {
	GOOS       string            `json:"goos"`
	GOARCH     string            `json:"goarch"`
	CPUs       int               `json:"cpus"`
	CPU        string            `json:"cpu,omitempty"`
	GoVersion  string            `json:"go_version"`
	LoadAvg    string            `json:"loadavg_at_start,omitempty"`
	LoadAvgEnd string            `json:"loadavg_at_end,omitempty"`
	Servers    map[string]string `json:"servers,omitempty"`
}

const methodText = `Latency is wall time of one complete operation (acquire + release, or the
multi-key acquire + release), measured per operation in this process.
Variants run interleaved operation by operation, each on connections of
its own: each round (a repeat)
runs a batch of every variant's operations in an order shuffled afresh;
a first, shuffled round is a warm-up. Ratios pair the repeats: each
round's p50 (latency) or each contended slice's acquisitions; a ratio is
the 20 % trimmed mean of the repeats' log ratios (the fifth of repeats
at each end dropped: a slice the shared machine disturbed moves nothing),
with a 95 % interval (Tukey and McLaughlin: winsorized variance,
Student's t with the kept repeats less one degrees of freedom). p50 is the
median, p99 the 99th percentile (nearest rank). Round trips are counted on
the wire by a wrapping net.Conn: one "flight" is one or more client writes
followed by the first bytes of the server's answer; pushed data counts
nothing. Contended: 16 goroutines loop acquire (waiting) / release on one
lock for a fixed window per variant, cut into short slices (the repeats;
in a full run 12 of 150 ms, and 96 for lockkit and the variant of each
headline ratio) that run variant after variant in an order shuffled
afresh each slice (the two of a headline ratio back to back, in either
order), each on a fresh lock and a fresh setup, after a first
slice of every variant that is not recorded (a warm-up: first slices ran
slower); handoff is the time from the holder's call to
release to the moment the next holder's acquire returns; wait is one
acquire call, call to return; spread is the most / fewest acquisitions of
one worker; CPU / acquisition is this process's user and system time
from the workers' start to the window's end, over the acquisitions in it
(every goroutine of the process counts: a variant's pub/sub reader, its
timers; a fresh setup's warm-up, in which every pooled connection takes
and releases a lock twice, does not). The "a Locker per worker" variants
give each worker a Locker with connections of its own; "16 processes" runs each worker in a
process of its own (the harness re-executes itself), counts a slice
from when every process has acquired once (a fresh process's first wait
is not counted), and times handoffs on CLOCK_MONOTONIC across them. Memory: runtime.MemStats mallocs
and bytes over N try+release ops (whole process, so goroutines a lock
starts count); connections are the variant's open sockets while N locks
are held. Scale: N locks held, then try+release of fresh locks.`

func writeJSON(path string, rep *report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// fmtDur renders a duration compactly: 182µs, 1.42ms, 3.1s.
func fmtDur(ns int64) string {
	d := time.Duration(ns)
	switch {
	case ns <= 0:
		return "—"
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.1fµs", float64(ns)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(ns)/1e3)
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(ns)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(ns)/1e6)
	}
	return fmt.Sprintf("%.2fs", float64(ns)/1e9)
}

func fmtRT(rt float64) string {
	if rt < 0 {
		return "0 (no network)"
	}
	if math.Abs(rt-math.Round(rt)) < 0.05 {
		return fmt.Sprintf("%.0f", rt)
	}
	return fmt.Sprintf("%.2f", rt)
}

func ratio(a, b int64) string {
	if a <= 0 || b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

// split picks lockkit (the first lockkit variant), the floor (the first
// floor) and the others (peers, further floors) from a scenario's results.
func split[T any](rs []T, roleOf func(T) role) (lk, floor T, others []T, ok bool) {
	var haveLK, haveFloor bool
	for _, r := range rs {
		switch {
		case roleOf(r) == roleLockkit && !haveLK:
			lk, haveLK = r, true
		case roleOf(r) == roleFloor && !haveFloor:
			floor, haveFloor = r, true
		default:
			others = append(others, r)
		}
	}
	return lk, floor, others, haveLK
}

func latCell(r *latencyResult) (p50, p99 string) {
	if r == nil {
		return "—", "—"
	}
	if r.Skipped != "" {
		return "skipped", "—"
	}
	return fmtDur(r.MedianNs), fmtDur(r.P99Ns)
}

func rtCell(r *latencyResult) string {
	if r == nil || r.Skipped != "" || r.N == 0 {
		return "—"
	}
	return fmtRT(r.RoundTrips)
}

// renderTables renders every table as Markdown (which also reads well as
// plain text).
func renderTables(rep *report) string {
	var b strings.Builder
	mode := "full"
	if rep.Quick {
		mode = "quick"
	}
	fmt.Fprintf(&b, "# lockkit benchmark (%s run, %.0fs)\n\n", mode, rep.Seconds)
	if rep.Commit != "" {
		fmt.Fprintf(&b, "Code: lockkit at %s, started %s.\n", rep.Commit, rep.Started.Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s/%s, %s; load average at start %s, at end %s.\n",
		rep.Machine.CPUs, rep.Machine.CPU, rep.Machine.GOOS, rep.Machine.GOARCH, rep.Machine.GoVersion, rep.Machine.LoadAvg, rep.Machine.LoadAvgEnd)
	for _, k := range []string{"postgres", "mysql", "redis"} {
		if v, ok := rep.Machine.Servers[k]; ok {
			fmt.Fprintf(&b, "Server %s: %s.\n", k, v)
		}
	}
	b.WriteString("\n")

	var skipped []string
	for _, br := range rep.Backends {
		if br.Skipped != "" {
			skipped = append(skipped, fmt.Sprintf("- %s: skipped: %s", br.Backend, br.Skipped))
		}
	}
	if len(skipped) > 0 {
		b.WriteString(strings.Join(skipped, "\n") + "\n\n")
	}

	if len(rep.Ratios) > 0 {
		b.WriteString("## Ratios with 95 % intervals\n\n")
		b.WriteString("lockkit against each other variant, repeat by repeat: latency divides each round's p50 (below 1 favours lockkit), contended divides each slice's acquisitions (above 1 favours lockkit). The ratio is the 20 % trimmed mean of the repeats' log ratios; the interval is Tukey and McLaughlin's (winsorized variance, Student's t).\n\n")
		b.WriteString("| backend | scenario | lockkit / it | its role | ratio | 95 % interval | repeats |\n")
		b.WriteString("|---|---|---|---|---|---|---|\n")
		for _, r := range rep.Ratios {
			lk := ""
			if r.Lockkit != "lockkit" {
				lk = " (" + r.Lockkit + ")"
			}
			fmt.Fprintf(&b, "| %s | %s, %s%s | %s | %s | %.2f× | %.2f–%.2f | %d |\n",
				r.Backend, r.Scenario, r.Metric, lk, r.Other, r.Role, r.Ratio, r.Lo, r.Hi, r.Repeats)
		}
		b.WriteString("\n")
	}

	b.WriteString("## Uncontended latency (acquire + release)\n\n")
	b.WriteString("| backend | scenario | lockkit p50 | lockkit p99 | floor p50 | floor p99 | lockkit/floor p50 | compared with | its p50 | its p99 | lockkit/it p50 | round trips lockkit / floor / it |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, br := range rep.Backends {
		for _, sc := range []struct {
			name string
			rs   []*latencyResult
		}{{"1 key", br.Single}, {"10,000 keys", br.Distinct}, {"100 keys at once", br.Multi}} {
			if len(sc.rs) == 0 {
				continue
			}
			lk, fl, others, ok := split(sc.rs, func(r *latencyResult) role { return r.Role })
			if !ok {
				continue
			}
			name := sc.name
			if sc.name == "10,000 keys" {
				name = fmt.Sprintf("a new key each op (%d ops)", lk.N)
			}
			l50, l99 := latCell(lk)
			f50, f99 := latCell(fl)
			if len(others) == 0 {
				others = []*latencyResult{nil}
			}
			for i, o := range others {
				o50, o99 := latCell(o)
				oname := "—"
				var oMed int64
				if o != nil {
					oname = o.Variant
					if o.Skipped == "" {
						oMed = o.MedianNs
					}
				}
				var flMed int64
				if fl != nil && fl.Skipped == "" {
					flMed = fl.MedianNs
				}
				lkMed := lk.MedianNs
				if lk.Skipped != "" {
					lkMed = 0
				}
				rts := rtCell(lk) + " / " + rtCell(fl) + " / " + rtCell(o)
				if i == 0 {
					fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
						br.Backend, name, l50, l99, f50, f99, ratio(lkMed, flMed), oname, o50, o99, ratio(lkMed, oMed), rts)
				} else {
					fmt.Fprintf(&b, "|  |  |  |  |  |  |  | %s | %s | %s | %s | %s |\n",
						oname, o50, o99, ratio(lkMed, oMed), rts)
				}
			}
		}
	}
	b.WriteString("\n")

	workers := 16
	for _, br := range rep.Backends {
		for _, c := range br.Contended {
			workers = c.Workers
		}
	}
	fmt.Fprintf(&b, "## Contended: %d workers on one lock\n\n", workers)
	b.WriteString("| backend | variant | acquisitions/s | spread max/min | handoff p50 | handoff p99 | to another worker: share, p50, p99 | wait for the lock p50 / p99 / max | round trips / acquisition | CPU / acquisition (this process) | errors |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, br := range rep.Backends {
		for _, c := range br.Contended {
			if c.Skipped != "" {
				fmt.Fprintf(&b, "| %s | %s | skipped: %s |  |  |  |  |  |  |  |  |\n", br.Backend, c.Variant, c.Skipped)
				continue
			}
			spread := fmt.Sprintf("%.2f", c.Spread)
			if c.Starved > 0 {
				spread = fmt.Sprintf("∞ (%d of %d starved)", c.Starved, c.Workers)
			}
			tput := fmt.Sprintf("%.0f", c.Throughput)
			if c.EmptySlices > 0 {
				// The lock stayed held through whole slices: not a
				// measure of handoffs.
				tput += fmt.Sprintf(" (invalid: %d of %d slices had no acquisition)", c.EmptySlices, len(c.PerSlice))
			}
			rt := "0 (no network)"
			if c.RoundTrips >= 0 {
				rt = fmt.Sprintf("%.1f", c.RoundTrips)
			}
			errs := fmt.Sprint(c.Errors)
			if c.LastError != "" {
				errs += ": " + truncate(c.LastError, 60)
			}
			other := fmt.Sprintf("%.1f%%, %s, %s", 100*c.OtherShare, fmtDur(c.OtherP50Ns), fmtDur(c.OtherP99Ns))
			wait := fmtDur(c.WaitP50Ns) + " / " + fmtDur(c.WaitP99Ns) + " / " + fmtDur(c.WaitMaxNs)
			cpu := "— (other processes)"
			if c.CPUPerAcqNs > 0 {
				cpu = fmtDur(c.CPUPerAcqNs)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				br.Backend, c.Variant, tput, spread, fmtDur(c.HandoffP50Ns), fmtDur(c.HandoffP99Ns), other, wait, rt, cpu, errs)
		}
	}
	b.WriteString("\n")

	b.WriteString("## Memory and connections\n\n")
	b.WriteString("| backend | variant | allocs/op | bytes/op | CPU/op (this process) | goroutines started/op | sockets idle → with N held | N | extra fds held | goroutines per 100 held |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, br := range rep.Backends {
		for _, m := range br.Memory {
			if m.Skipped != "" {
				fmt.Fprintf(&b, "| %s | %s | skipped: %s |  |  |  |  |  |  |  |\n", br.Backend, m.Variant, truncate(m.Skipped, 80))
				continue
			}
			conns := "—"
			fds := "—"
			if m.ConnsHeld > 0 || m.ConnsIdle > 0 {
				conns = fmt.Sprintf("%d → %d", m.ConnsIdle, m.ConnsHeld)
			}
			if m.FDsHeld != 0 {
				fds = fmt.Sprint(m.FDsHeld)
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f | %s | %.2f | %s | %d | %s | %d |\n",
				br.Backend, m.Variant, m.AllocsPerOp, m.BytesPerOp, fmtDur(m.CPUPerOpNs), m.GoPerOp, conns, m.Held, fds, m.Goroutines)
		}
	}
	b.WriteString("\n")

	b.WriteString("## Scale: try + release with N locks held (p50 / p99, all round trips of the variant per op while N are held, and its open connections)\n\n")
	var steps []int
	for _, br := range rep.Backends {
		for _, s := range br.Scale {
			for _, pt := range s.Points {
				if !containsInt(steps, pt.Held) {
					steps = append(steps, pt.Held)
				}
			}
		}
	}
	b.WriteString("| backend | variant |")
	for _, s := range steps {
		fmt.Fprintf(&b, " N=%d |", s)
	}
	b.WriteString(" note |\n|---|---|")
	for range steps {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	for _, br := range rep.Backends {
		for _, s := range br.Scale {
			fmt.Fprintf(&b, "| %s | %s |", br.Backend, s.Variant)
			for _, st := range steps {
				cell := "—"
				for _, pt := range s.Points {
					if pt.Held == st {
						cell = fmtDur(pt.MedianNs) + " / " + fmtDur(pt.P99Ns)
						if pt.RoundTrips >= 0 {
							cell += fmt.Sprintf(" (%.1f rt, %d conns)", pt.RoundTrips, pt.Conns)
						}
					}
				}
				fmt.Fprintf(&b, " %s |", cell)
			}
			note := s.Note
			if s.Skipped != "" {
				note = strings.TrimSpace(note + " skipped: " + s.Skipped)
			}
			fmt.Fprintf(&b, " %s |\n", note)
		}
	}
	b.WriteString("\n")

	b.WriteString(renderOwn(rep)) // failover.go, semaphore.go
	b.WriteString("## Variants\n\n")
	for _, br := range rep.Backends {
		if br.Skipped != "" {
			continue
		}
		fmt.Fprintf(&b, "**%s** — %s (%.0fs)\n\n", br.Backend, br.Title, br.Seconds)
		for _, v := range br.Variants {
			fmt.Fprintf(&b, "- %s (%s): %s\n", v.Name, v.Role, v.Note)
		}
		for _, n := range br.Notes {
			fmt.Fprintf(&b, "- note: %s\n", n)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "|", "/")
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
