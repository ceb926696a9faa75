package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/advisory"
	"github.com/lockkit/lockkit/semaphore"
)

// runFlags are lockkit run's flags.
type runFlags struct {
	backend      string
	backendGiven bool
	noWait       bool
	wait         time.Duration
	waitGiven    bool
	ttl          time.Duration
	shared       bool
	table        bool
	conflictCode int
	killGrace    time.Duration
	verbose      bool
	max          int  // --max: the number of permits of NAME
	maxGiven     bool // --max was given: NAME is a semaphore
}

// defaultKillGrace is the time between SIGTERM and SIGKILL when the lock
// is lost.
const defaultKillGrace = 10 * time.Second

// parseRun parses lockkit run's arguments. done reports that the command
// should return code at once (help was shown, or a usage error printed).
func (e *env) parseRun(args []string) (f runFlags, name string, argv []string, code int, done bool) {
	f = runFlags{conflictCode: ExitNotAcquired, killGrace: defaultKillGrace}
	fs := newFlagSet("run")
	stringVar(fs, &f.backend, "b", "backend")
	boolVar(fs, &f.noWait, "n", "no-wait")
	varFlag(fs, durationValue{&f.wait, &f.waitGiven}, "w", "wait")
	varFlag(fs, durationValue{d: &f.ttl}, "ttl")
	boolVar(fs, &f.shared, "s", "shared")
	boolVar(fs, &f.table, "table")
	varFlag(fs, exitCodeValue{&f.conflictCode}, "conflict-exit-code")
	varFlag(fs, durationValue{d: &f.killGrace}, "kill-grace")
	boolVar(fs, &f.verbose, "v", "verbose")
	varFlag(fs, intValue{&f.max, &f.maxGiven}, "max")

	pos, code, done := e.parseInterspersed(fs, runUsage, args)
	if done {
		return f, "", nil, code, true
	}
	f.backendGiven = fsHas(fs, "b", "backend")
	switch {
	case len(pos) == 0:
		return f, "", nil, e.usageErr(runUsage, "missing lock name and command"), true
	case len(pos) == 1:
		return f, "", nil, e.usageErr(runUsage, "missing command after the lock name %q", pos[0]), true
	case pos[0] == "":
		return f, "", nil, e.usageErr(runUsage, "empty lock name"), true
	case f.noWait && f.waitGiven:
		return f, "", nil, e.usageErr(runUsage, "--no-wait and --wait exclude each other"), true
	case f.ttl == 0 && fsHas(fs, "ttl"):
		return f, "", nil, e.usageErr(runUsage, "--ttl must be positive"), true
	case f.ttl > 0 && f.ttl < minTTL:
		return f, "", nil, e.usageErr(runUsage, fmt.Sprintf("--ttl must be at least %s: the lease is renewed every third of it, over the network", minTTL)), true
	case f.maxGiven && f.max < 1:
		return f, "", nil, e.usageErr(runUsage, "--max must be at least 1"), true
	case f.max > semaphore.MaxPermits:
		return f, "", nil, e.usageErr(runUsage, "--max must be at most %d", semaphore.MaxPermits), true
	case f.maxGiven && f.shared:
		return f, "", nil, e.usageErr(runUsage, "--max and --shared exclude each other: a permit is an exclusive lock"), true
	}
	if f.waitGiven && f.wait == 0 {
		f.noWait = true // --wait 0: one attempt, as flock -w 0
	}
	return f, pos[0], pos[1:], 0, false
}

func fsHas(fs *flag.FlagSet, names ...string) bool {
	found := false
	fs.Visit(func(fl *flag.Flag) {
		for _, n := range names {
			if fl.Name == n {
				found = true
			}
		}
	})
	return found
}

// run is lockkit run.
func (e *env) run(ctx context.Context, args []string) int {
	f, name, argv, code, done := e.parseRun(args)
	if done {
		return code
	}
	e.verbose = f.verbose
	e.appName = advisory.RunAppPrefix + name
	b, err := e.resolveBackend(f.backend, f.backendGiven)
	if err != nil {
		return e.fail(err, f.conflictCode)
	}
	opts := lockOptions{table: f.table, ttl: f.ttl, shared: f.shared, owner: e.owner()}
	if err := checkOptions(b, opts); err != nil {
		return e.fail(err, f.conflictCode)
	}

	sigCtx, stopSignals := e.interruptible(ctx)
	openCtx := sigCtx
	if f.waitGiven && f.wait > 0 {
		// --wait also bounds connecting: a server that accepts but never
		// answers must not hold lockkit for the whole connect timeout.
		var cancel context.CancelFunc
		openCtx, cancel = context.WithTimeoutCause(sigCtx, max(f.wait, time.Second),
			fmt.Errorf("no answer within --wait %s", f.wait))
		defer cancel()
	}
	be, err := e.openBackend(openCtx, b)
	if err != nil {
		if sig := stopSignals(); sig != nil {
			return signalExit(sig)
		}
		return e.fail(fmt.Errorf("%s: %w", b.display, err), f.conflictCode)
	}
	defer be.close()
	locker, err := be.locker(opts)
	if w, ok := locker.(lockkit.Watcher); ok {
		e.announcer = w
	}
	if err == nil && f.maxGiven {
		locker, err = permits(b, opts, locker, f.max)
	}
	if err != nil {
		stopSignals()
		return e.fail(err, f.conflictCode)
	}

	lock, err := e.acquire(sigCtx, locker, name, f)
	if sig := stopSignals(); sig != nil {
		if lock != nil {
			e.release(ctx, lock, f.verbose)
		}
		return signalExit(sig)
	}
	if err != nil {
		var mm *semaphore.MismatchError
		if errors.As(err, &mm) {
			by := ""
			if mm.Holder != nil {
				by = " by " + holderString(mm.Holder)
			}
			e.errorf("--max %d: %q is run with --max %d elsewhere (its slot %d is held%s); give every run of %q the same --max",
				mm.Permits, name, mm.Other, mm.Slot, by, name)
			return ExitUsage
		}
		if isNotAcquired(err) {
			if f.verbose || e.isTerminal(e.p.Stderr) {
				e.errorf("%s", notAcquiredMessage(name, err, f))
			}
			return f.conflictCode
		}
		return e.fail(fmt.Errorf("%s: %w", b.display, err), f.conflictCode)
	}
	if f.verbose {
		e.errorf("acquired %s on %s", lockLabel(lock), b.display)
	}
	e.announce(ctx, lock)
	return e.runLocked(ctx, lock, b.display, argv, f)
}

// permits returns the Locker of lockkit run --max: its acquires take a
// permit of the semaphore of max permits named as they are told, on
// locker.
func permits(b *backendURL, opts lockOptions, locker lockkit.Locker, max int) (lockkit.Locker, error) {
	cfg := &semaphore.Config{}
	if (b.kind == kindPostgres || b.kind == kindMySQL) && !opts.table {
		// A waiting advisory or GET_LOCK acquire holds a database
		// session, and a cancelled one ends it: wait on one slot, not
		// on all of them.
		cfg.Wait = semaphore.WaitOne
	}
	if opts.table {
		cfg.Data = opts.owner // the lock table keeps the owner as holder data
	}
	s, err := semaphore.New(locker, cfg)
	if err != nil {
		return nil, err
	}
	return s.Locker(max), nil
}

// lockLabel names a held lock in messages: "NAME", or for a permit of
// lockkit run --max, "NAME" slot I of --max N.
func lockLabel(lock lockkit.Lock) string {
	if p, ok := lock.(*semaphore.Permit); ok {
		return fmt.Sprintf("%q slot %d of --max %d", p.Name(), p.Slot(), p.Permits())
	}
	return strconv.Quote(lock.Name())
}

// fail prints err and returns its exit status.
func (e *env) fail(err error, conflict int) int {
	e.errorf("%v", err)
	return errorCode(err, conflict)
}

func notAcquiredMessage(name string, err error, f runFlags) string {
	var he *lockkit.HeldError
	holder := ""
	if errors.As(err, &he) && he.Holder != nil {
		holder = " by " + holderString(he.Holder)
	}
	if f.maxGiven {
		if holder != "" {
			holder = " (one" + holder + ")"
		}
		all := fmt.Sprintf("all %d permits of %q are", f.max, name)
		if f.max == 1 {
			all = fmt.Sprintf("the one permit of %q is", name)
		}
		if f.noWait {
			return fmt.Sprintf("%s held%s", all, holder)
		}
		return fmt.Sprintf("%s still held%s after waiting %s", all, holder, f.wait)
	}
	if f.noWait {
		return fmt.Sprintf("%q is held%s", name, holder)
	}
	return fmt.Sprintf("%q is still held%s after waiting %s", name, holder, f.wait)
}

// acquire takes the lock: one attempt with --no-wait, else waiting at
// most --wait. While waiting with stderr on a terminal it shows a status
// line; with -v it says that it waits.
func (e *env) acquire(ctx context.Context, locker lockkit.Locker, name string, f runFlags) (lockkit.Lock, error) {
	lock, err := locker.TryAcquire(ctx, name)
	if err == nil || f.noWait || !isNotAcquired(err) {
		return lock, err
	}
	var holder *lockkit.Holder
	var he *lockkit.HeldError
	if errors.As(err, &he) {
		holder = he.Holder
	}
	waitCtx := ctx
	if f.waitGiven {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, f.wait)
		defer cancel()
	}
	what, by := strconv.Quote(name), ", held by "
	if f.maxGiven {
		what, by = fmt.Sprintf("one of %d permits of %q", f.max, name), ", one held by "
	}
	stop := e.showWaiting(what, by, holder, f.verbose)
	lock, err = locker.Acquire(waitCtx, name)
	stop()
	return lock, err
}

// statusInterval is how often the status line is redrawn.
const statusInterval = 250 * time.Millisecond

// showWaiting starts reporting that lockkit waits for what (the quoted
// lock name, or "one of N permits of NAME"), held by holder (introduced by
// heldBy): a live status line on a terminal, one line with -v elsewhere,
// nothing otherwise. The returned function stops it and clears the line.
func (e *env) showWaiting(what, heldBy string, holder *lockkit.Holder, verbose bool) (stop func()) {
	by := ""
	if holder != nil {
		by = heldBy + holderString(holder)
	}
	if !e.isTerminal(e.p.Stderr) {
		if verbose {
			e.errorf("waiting for %s%s", what, by)
		}
		return func() {}
	}
	start := time.Now()
	draw := func() {
		waited := time.Since(start).Truncate(time.Second)
		fmt.Fprintf(e.stderr, "\rlockkit: waiting for %s%s (%s)\x1b[K", what, by, waited)
	}
	draw()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(statusInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				draw()
			case <-quit:
				fmt.Fprint(e.stderr, "\r\x1b[K")
				return
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
	}
}

// release gives the lock up after the command exited. It returns the
// loss error when the lock turned out to be lost.
func (e *env) release(ctx context.Context, lock lockkit.Lock, verbose bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockkit.ReleaseTimeout)
	defer cancel()
	err := lock.Release(ctx)
	if err == nil && verbose {
		e.errorf("released %s", lockLabel(lock))
	}
	if err == nil {
		e.announce(ctx, lock)
	}
	return err
}

// announceTimeout bounds run's announcement of a change: a lost one only
// delays what lockkit status --watch shows until its next poll.
const announceTimeout = 2 * time.Second

// announce tells watchers, where the backend pushes changes, that lock
// was acquired or released: one statement or PUBLISH on PostgreSQL and
// Redis, nothing on files and etcd (which see every change themselves).
// Its error is only reported with -v.
func (e *env) announce(ctx context.Context, lock lockkit.Lock) {
	if e.announcer == nil {
		return
	}
	name := lock.Name()
	if p, ok := lock.(*semaphore.Permit); ok {
		name = semaphore.SlotName(p.Name(), p.Slot())
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), announceTimeout)
	defer cancel()
	if err := e.announcer.Announce(ctx, name); err != nil && e.verbose {
		e.errorf("announce %s to watchers: %v", lockLabel(lock), err)
	}
}

// minTTL is the shortest --ttl: a lease renewed every third of it must
// survive a round trip or two.
const minTTL = 100 * time.Millisecond

// groupPoll is how often lockkit run checks whether processes the command
// left in its process group have exited.
const groupPoll = 50 * time.Millisecond

// runLocked runs argv while lock is held and returns lockkit run's exit
// status.
func (e *env) runLocked(ctx context.Context, lock lockkit.Lock, where string, argv []string, f runFlags) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = e.p.Stdin
	cmd.Stdout = e.p.Stdout
	cmd.Stderr = e.p.Stderr
	cmd.Env = childEnv(e.p.Env, lock)
	if cmd.Err != nil { // lookup failed
		e.release(ctx, lock, f.verbose)
		return e.startFailed(argv[0], cmd.Err)
	}
	var g *guard
	if e.p.Self != "" {
		var err error
		if g, err = startGuard(e.p.Self); err != nil && f.verbose {
			e.errorf("no guard for %s's process group: %v", argv[0], err)
		}
	}
	ch, err := startChild(cmd, e.p.Stdin)
	if err != nil {
		g.stand()
		e.release(ctx, lock, f.verbose)
		return e.startFailed(argv[0], err)
	}
	g.watch(ch.pgid)

	// The lock is held until the command has exited and so has every
	// process it left in its process group (a `job &` in a script still
	// works under the lock, as it would under flock(1), whose lock such a
	// process inherits). Processes that leave the group (setsid, daemons)
	// are not waited for.
	var (
		lostErr error
		grace   <-chan time.Time
		done    = lock.Done()
		exited  = ch.exited
		poll    <-chan time.Time // while the leader is gone and others are left
		late    os.Signal        // a signal forwarded after the command exited
	)
wait:
	for {
		select {
		case sig := <-e.p.Signals:
			if f.verbose {
				e.errorf("forwarding %v to %s", sig, argv[0])
			}
			ch.signal(sig)
			if exited == nil {
				late = sig
			}
		case <-done:
			done = nil
			lostErr = lock.Err()
			if lostErr == nil || errors.Is(lostErr, lockkit.ErrReleased) {
				continue // cannot happen: only this function releases
			}
			e.errorf("lost lock %s on %s while %s ran: %v; stopping it (SIGTERM to its process group, SIGKILL after %s)",
				lockLabel(lock), where, argv[0], causeOf(lostErr), f.killGrace)
			ch.terminate()
			grace = time.After(f.killGrace)
		case <-grace:
			grace = nil
			e.errorf("%s is still running %s after SIGTERM: sending SIGKILL to its process group", argv[0], f.killGrace)
			ch.kill()
		case <-ch.stopped:
			// Ctrl-Z while the command has the terminal.
			ch.suspend()
		case <-exited:
			// The command is not reaped until its group is empty: an
			// unreaped leader keeps the group's id from being reused, so
			// signals to the group cannot reach another.
			exited = nil
			ch.exitedLeader()
			if !ch.groupAlive() {
				break wait
			}
			if f.verbose {
				e.errorf("%s exited; waiting for the processes it left in its process group", argv[0])
			}
			ticker := time.NewTicker(groupPoll)
			defer ticker.Stop()
			poll = ticker.C
		case <-poll:
			if !ch.groupAlive() {
				break wait
			}
		}
	}
	g.stand()
	state := ch.wait()
	relErr := e.release(ctx, lock, f.verbose)
	if lostErr != nil {
		return ExitLost
	}
	status := exitStatus(state)
	if late != nil {
		// lockkit was told to stop while the command's group finished.
		status = signalExit(late)
	}
	if relErr != nil {
		if errors.Is(relErr, lockkit.ErrLost) {
			e.errorf("lost lock %s on %s while %s ran (it exited with status %d): %v", lockLabel(lock), where, argv[0], status, causeOf(relErr))
			return ExitLost
		}
		e.errorf("releasing %s: %v", lockLabel(lock), relErr)
		if status == 0 {
			return ExitUnavailable
		}
	}
	return status
}

// causeOf returns the cause of a loss error, without the "lockkit: lock
// lost" prefix the message around it already says.
func causeOf(err error) error {
	var le *lockkit.LostError
	if errors.As(err, &le) && le.Cause != nil {
		return le.Cause
	}
	return err
}

func (e *env) startFailed(name string, err error) int {
	e.errorf("cannot run %s: %v", name, err)
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return ExitNotFound
	}
	return ExitCannotExecute
}

// exitStatus is the command's own status, or 128+N when signal N killed
// it.
func exitStatus(state *os.ProcessState) int {
	if state == nil {
		return ExitUnavailable
	}
	if sig, ok := signaled(state); ok {
		return signalExit(sig)
	}
	return state.ExitCode()
}

// childEnv is env without any inherited LOCKKIT_NAME, LOCKKIT_TOKEN or
// LOCKKIT_SLOT (of an outer lockkit), plus this lock's.
func childEnv(env []string, lock lockkit.Lock) []string {
	out := make([]string, 0, len(env)+3)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == EnvName || k == EnvToken || k == EnvSlot {
			continue
		}
		out = append(out, kv)
	}
	out = append(out, EnvName+"="+lock.Name())
	if t := lock.Token(); t != 0 {
		out = append(out, EnvToken+"="+strconv.FormatInt(t, 10))
	}
	if p, ok := lock.(*semaphore.Permit); ok {
		out = append(out, EnvSlot+"="+strconv.Itoa(p.Slot()))
	}
	return out
}

// owner describes this process for backends that record a holder.
func (e *env) owner() string {
	name := e.getenv("USER")
	if name == "" {
		name = e.getenv("LOGNAME")
	}
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		return "lockkit"
	}
	return name + " (lockkit)"
}

// holderString renders h with its times in the local time zone.
func holderString(h *lockkit.Holder) string {
	c := *h
	if !c.Since.IsZero() {
		c.Since = c.Since.Local()
	}
	if !c.Expires.IsZero() {
		c.Expires = c.Expires.Local()
	}
	return c.String()
}
