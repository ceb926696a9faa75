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

// compareRuns reads two results.json files and writes, for every ratio
// row both have, the two ratios, their relative difference and whether it
// is within ±5 %; and whether the two runs' 95 % intervals overlap. It
// returns how many rows disagree.
func compareRuns(a, b string, w io.Writer) (int, error) {
	ra, err := readReport(a)
	if err != nil {
		return 0, err
	}
	rb, err := readReport(b)
	if err != nil {
		return 0, err
	}
	type key struct{ backend, scenario, metric, lockkit, other string }
	second := map[key]ratioRow{}
	for _, r := range rb.Ratios {
		second[key{r.Backend, r.Scenario, r.Metric, r.Lockkit, r.Other}] = r
	}
	fmt.Fprintf(w, "Run 1: %s, started %s, load %s → %s.\n", a, ra.Started.Format("15:04:05"), firstField(ra.Machine.LoadAvg), firstField(ra.Machine.LoadAvgEnd))
	fmt.Fprintf(w, "Run 2: %s, started %s, load %s → %s.\n\n", b, rb.Started.Format("15:04:05"), firstField(rb.Machine.LoadAvg), firstField(rb.Machine.LoadAvgEnd))
	fmt.Fprintln(w, "| backend | scenario | lockkit / it | run 1 (95 % interval) | run 2 (95 % interval) | run 2 / run 1 | within ±5 % | intervals overlap |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	disagree := 0
	for _, r1 := range ra.Ratios {
		r2, ok := second[key{r1.Backend, r1.Scenario, r1.Metric, r1.Lockkit, r1.Other}]
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
	return disagree, nil
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
