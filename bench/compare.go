package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// agreeWithin is how far two runs' ratios may differ and still agree.
const agreeWithin = 0.05

// ratioKey names a ratio row across runs.
type ratioKey struct{ backend, scenario, metric, lockkit, other string }

func keyOf(r ratioRow) ratioKey {
	return ratioKey{r.Backend, r.Scenario, r.Metric, r.Lockkit, r.Other}
}

// headlines are the ratios the project states as goals; -compare lists
// them first.
var headlines = []struct {
	label string
	key   ratioKey
}{
	{"PostgreSQL advisory contended / golang-migrate", ratioKey{"pg-advisory", "contended", "throughput", "lockkit", "golang-migrate lock"}},
	{"MySQL advisory contended / floor", ratioKey{"mysql-advisory", "contended", "throughput", "lockkit", "floor"}},
	{"Redis contended / floor", ratioKey{"redis", "contended", "throughput", "lockkit", "floor"}},
	{"files contended / gofrs/flock", ratioKey{"files", "contended", "throughput", "lockkit", "gofrs/flock"}},
	{"etcd contended / concurrency.Mutex", ratioKey{"etcd", "contended", "throughput", "lockkit", "concurrency.Mutex"}},
	{"files 1 key / gofrs/flock", ratioKey{"files", "1 key", "p50", "lockkit", "gofrs/flock"}},
	{"files a new key each op / gofrs/flock", ratioKey{"files", "a new key each op", "p50", "lockkit", "gofrs/flock"}},
	{"PostgreSQL advisory 1 key / floor", ratioKey{"pg-advisory", "1 key", "p50", "lockkit", "floor"}},
	{"Redis 1 key / floor", ratioKey{"redis", "1 key", "p50", "lockkit", "floor"}},
	{"etcd 1 key / floor", ratioKey{"etcd", "1 key", "p50", "lockkit", "floor"}},
}

// contendedHeadline reports whether the named variant is on either side
// of a headline ratio of the contended scenario on the backend.
func contendedHeadline(backend, variant string) bool {
	for _, h := range headlines {
		if h.key.backend == backend && h.key.scenario == "contended" && (h.key.lockkit == variant || h.key.other == variant) {
			return true
		}
	}
	return false
}

// compareRuns reads two results.json files and writes first the headline
// ratios of both runs, their relative difference and whether it is within
// ±5 % (a headline neither run has is listed and not counted); then the same for every ratio row both runs have, with whether
// the two runs' 95 % intervals overlap. It returns how many headlines and
// how many rows in all disagree (a headline missing from a run
// disagrees).
func compareRuns(a, b string, w io.Writer) (headDisagree, disagree int, err error) {
	ra, err := readReport(a)
	if err != nil {
		return 0, 0, err
	}
	rb, err := readReport(b)
	if err != nil {
		return 0, 0, err
	}
	first, second := map[ratioKey]ratioRow{}, map[ratioKey]ratioRow{}
	for _, r := range ra.Ratios {
		first[keyOf(r)] = r
	}
	for _, r := range rb.Ratios {
		second[keyOf(r)] = r
	}
	fmt.Fprintf(w, "Run 1: %s, started %s, load %s → %s.\n", a, ra.Started.Format("15:04:05"), firstField(ra.Machine.LoadAvg), firstField(ra.Machine.LoadAvgEnd))
	fmt.Fprintf(w, "Run 2: %s, started %s, load %s → %s.\n\n", b, rb.Started.Format("15:04:05"), firstField(rb.Machine.LoadAvg), firstField(rb.Machine.LoadAvgEnd))

	absent := 0
	fmt.Fprintln(w, "| headline | run 1 (95 % interval) | run 2 (95 % interval) | run 2 / run 1 | within ±5 % |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, h := range headlines {
		r1, ok1 := first[h.key]
		r2, ok2 := second[h.key]
		cell := func(r ratioRow, ok bool) string {
			if !ok || r.Ratio <= 0 {
				return "—"
			}
			return fmt.Sprintf("%.2f× (%.2f–%.2f)", r.Ratio, r.Lo, r.Hi)
		}
		diff, verdict := "—", "**no** (missing)"
		switch {
		case !ok1 && !ok2:
			// Neither run measured it (a backend left out of both, or
			// one added after them): nothing to agree on.
			fmt.Fprintf(w, "| %s | — | — | — | in neither run |\n", h.label)
			absent++
			continue
		case ok1 && ok2 && r1.Ratio > 0 && r2.Ratio > 0:
			d := r2.Ratio/r1.Ratio - 1
			diff, verdict = fmt.Sprintf("%+.1f %%", 100*d), yesNo(math.Abs(d) <= agreeWithin)
		}
		if verdict != "yes" {
			headDisagree++
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", h.label, cell(r1, ok1), cell(r2, ok2), diff, verdict)
	}
	fmt.Fprintf(w, "\n%d of %d headline ratios agree within ±5 %%.\n\n", len(headlines)-absent-headDisagree, len(headlines)-absent)

	fmt.Fprintln(w, "| backend | scenario | lockkit / it | run 1 (95 % interval) | run 2 (95 % interval) | run 2 / run 1 | within ±5 % | intervals overlap |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, r1 := range ra.Ratios {
		r2, ok := second[keyOf(r1)]
		if !ok || r1.Ratio <= 0 || r2.Ratio <= 0 {
			continue
		}
		d := r2.Ratio/r1.Ratio - 1
		agree := math.Abs(d) <= agreeWithin
		if !agree {
			disagree++
		}
		overlap := r1.Lo <= r2.Hi && r2.Lo <= r1.Hi
		lk := ""
		if r1.Lockkit != "lockkit" {
			lk = " (" + r1.Lockkit + ")"
		}
		fmt.Fprintf(w, "| %s | %s, %s%s | %s | %.2f× (%.2f–%.2f) | %.2f× (%.2f–%.2f) | %+.1f %% | %s | %s |\n",
			r1.Backend, r1.Scenario, r1.Metric, lk, r1.Other, r1.Ratio, r1.Lo, r1.Hi, r2.Ratio, r2.Lo, r2.Hi, 100*d, yesNo(agree), yesNo(overlap))
	}
	return headDisagree, disagree, nil
}

func readReport(path string) (*report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return "?"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}
