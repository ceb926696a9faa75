package main

import (
	"fmt"
	"strings"
)

// The tables and the problems of the scenarios that run on their own
// (failover.go, semaphore.go); report.go and main.go call these.

// ownResults are the results of the scenarios that run on their own, in
// the report (embedded: results.json has them at its top level).
type ownResults struct {
	Failover  []*failoverResult  `json:"failover,omitempty"`
	Semaphore []*semaphoreResult `json:"semaphore,omitempty"`
}

// renderOwn renders the failover and semaphore tables, when they ran.
func renderOwn(rep *report) string {
	var b strings.Builder
	if len(rep.Failover) > 0 {
		b.WriteString("## Failover (leader process SIGKILLed → new leader in office)\n\n")
		b.WriteString("| backend | loop | lease | failovers | p50 | p99 | max | round trip | goal | met | errors |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range rep.Failover {
			if r.Skipped != "" {
				fmt.Fprintf(&b, "| %s | %s | — | skipped: %s | | | | | | | |\n", r.Backend, r.Mode, truncate(r.Skipped, 80))
				continue
			}
			loop := "lockkit election (Campaign)"
			if r.Mode == foClientGo {
				loop = "client-go-style, retry " + r.Retry
			}
			met := "yes"
			if !r.Met {
				met = "**no**"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %d |\n",
				r.Backend, loop, r.Lease, len(r.Failovers), fmtDur(r.P50), fmtDur(r.P99), fmtDur(r.Max),
				fmtDur(r.RTT), r.Goal, met, len(r.Errors))
		}
		b.WriteString("\n")
		for _, r := range rep.Failover {
			if r.Note != "" {
				fmt.Fprintf(&b, "- %s, %s: %s\n", r.Backend, r.Mode, r.Note)
			}
			for _, e := range r.Errors {
				fmt.Fprintf(&b, "- %s, %s: error: %s\n", r.Backend, r.Mode, truncate(e, 200))
			}
			for _, e := range r.Lapsed {
				fmt.Fprintf(&b, "- %s, %s: not counted: %s\n", r.Backend, r.Mode, truncate(e, 200))
			}
		}
		b.WriteString("\n")
	}
	if len(rep.Semaphore) > 0 {
		fmt.Fprintf(&b, "## Semaphore (%d permits, %d workers, each holding %v)\n\n", semPermits, semWorkers, semHold)
		b.WriteString("| backend | wait | acquisitions/s | of ideal | spread | most in use (exact) | most listed by the backend | in use 0 / 1 / 2 / 3 / 4 / more (share of 1 ms samples) | release p50 | handoff p50 / p99 (to the releaser again) | errors |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range rep.Semaphore {
			if r.Skipped != "" {
				fmt.Fprintf(&b, "| %s | %s | skipped: %s | | | | | | | | |\n", r.Backend, r.Wait, truncate(r.Skipped, 80))
				continue
			}
			spread := "∞ (a worker got none)"
			if r.Spread > 0 {
				spread = fmt.Sprintf("%.2f", r.Spread)
			}
			listed := "— (no listing)"
			if r.ServerMax >= 0 {
				listed = fmt.Sprintf("%d (%d listings)", r.ServerMax, r.ServerChecks)
			}
			var dist []string
			var more float64
			for k, f := range r.InUse {
				if k <= semPermits {
					dist = append(dist, fmt.Sprintf("%.0f%%", 100*f))
				} else {
					more += f
				}
			}
			dist = append(dist, fmt.Sprintf("%.0f%%", 100*more))
			fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f%% | %s | %d | %s | %s | %.2f ms | %.2f / %.1f ms (%.0f%%) | %d |\n",
				r.Backend, r.Wait, r.PerSecond, 100*r.PerSecond/r.Ideal, spread, r.MaxInUse, listed, strings.Join(dist, " / "),
				r.ReleaseMs, r.HandoffMs, r.HandoffP99Ms, 100*r.Rehold, len(r.Errors))
		}
		b.WriteString("\n")
		for _, r := range rep.Semaphore {
			for _, e := range r.Errors {
				fmt.Fprintf(&b, "- %s, %s: error: %s\n", r.Backend, r.Wait, truncate(e, 200))
			}
		}
		fmt.Fprintf(&b, "Ideal: %d permits / %v hold = %.0f acquisitions/s. The in-use series (per 100 ms: mean and most) is in results.json.\n\n",
			semPermits, semHold, float64(semPermits)/semHold.Seconds())
	}
	return b.String()
}

// ownFailures lists what keeps the failover and semaphore scenarios from
// being a complete and correct measurement: a skipped backend, errors, a
// failover that did not happen, and above all more holders than permits.
// A failover slower than its goal is reported in the table, not here.
func ownFailures(rep *report) []string {
	var out []string
	for _, r := range rep.Failover {
		switch {
		case r.Skipped != "":
			out = append(out, fmt.Sprintf("failover: %s: %s: skipped: %s", r.Backend, r.Mode, r.Skipped))
		case len(r.Errors) > 0:
			out = append(out, fmt.Sprintf("failover: %s: %s: %d errors, the first: %s", r.Backend, r.Mode, len(r.Errors), r.Errors[0]))
		case len(r.Failovers) == 0:
			out = append(out, fmt.Sprintf("failover: %s: %s: no failover measured", r.Backend, r.Mode))
		}
	}
	for _, r := range rep.Semaphore {
		switch {
		case r.Skipped != "":
			out = append(out, fmt.Sprintf("semaphore: %s: skipped: %s", r.Backend, r.Skipped))
		case r.MaxInUse > r.Permits || r.ServerMax > r.Permits:
			out = append(out, fmt.Sprintf("semaphore: %s: %d holders at once (the backend listed %d), more than the %d permits", r.Backend, r.MaxInUse, r.ServerMax, r.Permits))
		case len(r.Errors) > 0:
			out = append(out, fmt.Sprintf("semaphore: %s: %d errors, the first: %s", r.Backend, len(r.Errors), r.Errors[0]))
		case r.Acquisitions == 0:
			out = append(out, fmt.Sprintf("semaphore: %s: no acquisition", r.Backend))
		}
	}
	return out
}
