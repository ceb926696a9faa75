package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lockkit/lockkit"
)

// lockkit doctor: a checklist of what works on a backend, and why.

// The statuses of a check. ok and info never change the exit status; warn
// and fail make it 1.
const (
	statusOK   = "ok"   // holds
	statusInfo = "info" // a fact, neither good nor bad
	statusWarn = "warn" // works, with a caveat the operator should know
	statusFail = "fail" // what the backend promises does not hold here
)

// doctorTimeout bounds the whole checklist; each probe has a shorter bound
// of its own.
const doctorTimeout = 60 * time.Second

// probeTimeout bounds one probe (a query, a lock, a notification).
const probeTimeout = 5 * time.Second

// check is one line of the checklist.
type check struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// report is the checklist of one backend.
type report struct {
	Backend string  `json:"backend"` // the URL, password redacted
	Kind    string  `json:"kind"`
	Status  string  `json:"status"` // ok, warn (something warned or failed), unreachable
	Checks  []check `json:"checks"`

	unreachable bool  // the server could not be reached: exit 69
	usage       error // the URL is unusable: exit 64
}

func (r *report) add(name, status, format string, args ...any) {
	r.Checks = append(r.Checks, check{Name: name, Status: status, Detail: fmt.Sprintf(format, args...)})
}

// failed reports whether a check named name failed.
func (r *report) failed(name string) bool {
	for _, c := range r.Checks {
		if c.Name == name && c.Status == statusFail {
			return true
		}
	}
	return false
}

// exitCode is doctor's exit status for r.
func (r *report) exitCode() int {
	switch {
	case r.usage != nil:
		return ExitUsage
	case r.unreachable:
		return ExitUnavailable
	}
	for _, c := range r.Checks {
		if c.Status == statusWarn || c.Status == statusFail {
			return 1
		}
	}
	return ExitOK
}

// doctor is lockkit doctor.
func (e *env) doctor(ctx context.Context, args []string) int {
	var (
		backendFlag string
		js          bool
		locks       = 10
	)
	fs := newFlagSet("doctor")
	stringVar(fs, &backendFlag, "b", "backend")
	boolVar(fs, &js, "json")
	fs.IntVar(&locks, "locks", locks, "")
	pos, code, done := e.parseAll(fs, doctorUsage, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return e.usageErr(doctorUsage, "doctor takes no arguments, not %q", pos)
	}
	if locks < 1 {
		return e.usageErr(doctorUsage, "--locks must be at least 1")
	}
	e.appName = "lockkit doctor"
	b, err := e.resolveBackend(backendFlag, fsHas(fs, "b", "backend"))
	if err != nil {
		return e.fail(err, ExitUnavailable)
	}
	ctx, stop := e.interruptible(ctx)
	tctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	r := &report{Backend: b.display, Kind: b.kind}
	switch b.kind {
	case kindFile:
		e.doctorFile(tctx, b, r)
	case kindPostgres:
		e.doctorPostgres(tctx, b, r, locks)
	case kindMySQL:
		e.doctorMySQL(tctx, b, r, locks)
	case kindRedis:
		e.doctorRedis(tctx, b, r)
	}
	cancel()
	if sig := stop(); sig != nil {
		return signalExit(sig)
	}
	if r.usage != nil {
		return e.usageErr(doctorUsage, "%v", r.usage)
	}
	code = r.exitCode()
	switch code {
	case ExitOK:
		r.Status = "ok"
	case ExitUnavailable:
		r.Status = "unreachable"
	default:
		r.Status = "warn"
	}
	// The checklist is lockkit's own words (server errors included), not
	// data: it goes through the scrubber like stderr.
	out := e.scrub.writer(e.stdout)
	if js {
		if r.Checks == nil {
			r.Checks = []check{}
		}
		buf, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			e.errorf("%v", err)
			return ExitUnavailable
		}
		_, _ = out.Write(append(buf, '\n'))
		return code
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "lockkit doctor: %s\n", b.display)
	tw := tabwriter.NewWriter(&sb, 0, 4, 2, ' ', 0)
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Status, c.Name, c.Detail)
	}
	tw.Flush()
	switch code {
	case ExitOK:
		sb.WriteString("Everything this backend promises holds here.\n")
	case ExitUnavailable:
		sb.WriteString("The backend could not be reached.\n")
	default:
		sb.WriteString("Something is degraded or needs attention: see warn and fail above.\n")
	}
	_, _ = out.Write([]byte(sb.String()))
	return code
}

// probeName returns a lock name of doctor's own, unique to this run.
func probeName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "lockkit.doctor." + hex.EncodeToString(b[:])
}

// exclusionProbe runs the two-session probe on two lockers that do not
// share a connection: a takes name, b must be refused it while a holds it
// and get it after a released it. It returns the check's status and
// detail.
//
// After the release b waits for the lock (Acquire, within the probe's
// timeout) rather than trying once: a release can take effect for others
// a moment after Release returns. A flock, for one, ends when the last
// descriptor of its open file description closes, and a child process
// this process forks at that moment holds a copy of every descriptor
// until its exec closes them (O_CLOEXEC); a CI run of the doctor's tests,
// beside parallel tests that start processes, saw the second open file
// description refused right after the release.
func exclusionProbe(ctx context.Context, a, b lockkit.Locker, name, what string) (string, string) {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	la, err := a.TryAcquire(pctx, name)
	if err != nil {
		return statusFail, fmt.Sprintf("the first %s could not take a probe lock: %v", what, err)
	}
	lb, err := b.TryAcquire(pctx, name)
	switch {
	case err == nil:
		_ = lb.Release(context.WithoutCancel(pctx))
		_ = la.Release(context.WithoutCancel(pctx))
		return statusFail, fmt.Sprintf("a second %s got the probe lock while the first held it: locks exclude nothing here", what)
	case !errors.Is(err, lockkit.ErrNotAcquired):
		_ = la.Release(context.WithoutCancel(pctx))
		return statusFail, fmt.Sprintf("a second %s: %v", what, err)
	}
	if err := la.Release(context.WithoutCancel(pctx)); err != nil {
		return statusFail, fmt.Sprintf("a second %s was refused the held probe lock, but the release failed: %v", what, err)
	}
	lb, err = b.Acquire(pctx, name)
	if err != nil {
		return statusFail, fmt.Sprintf("a second %s was refused the held probe lock, but not given it before the probe's %v ran out: %v", what, probeTimeout, err)
	}
	if err := lb.Release(context.WithoutCancel(pctx)); err != nil {
		return statusFail, fmt.Sprintf("the second %s's release failed: %v", what, err)
	}
	return statusOK, fmt.Sprintf("a second %s was refused the lock the first held, got it once released, and both releases were confirmed", what)
}

// clockCheck words the offset between the server's clock and this
// machine's, measured as server - (local before + local after)/2, within
// ± rtt/2.
func clockCheck(r *report, server, before, after time.Time, note string) {
	rtt := after.Sub(before)
	off := server.Sub(before.Add(rtt / 2))
	abs := off
	if abs < 0 {
		abs = -abs
	}
	status := statusOK
	if abs > time.Second {
		status = statusWarn
	}
	r.add("clock", status, "the server's clock is %s %s this machine's (± %s)%s",
		abs.Round(10*time.Microsecond), map[bool]string{true: "behind", false: "ahead of"}[off < 0], (rtt / 2).Round(time.Microsecond), note)
}
