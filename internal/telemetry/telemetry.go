// Package telemetry records the metrics, spans and logs of every lockkit
// backend, through the OpenTelemetry API only.
//
// A backend makes one [Recorder] per Locker and calls it at three points:
// around each acquire ([Recorder.StartAcquire] and [Acquire.End]), at each
// lease renewal ([Recorder.Renewal]), and when it gives back a lease that an
// abandoned acquire took ([Recorder.GaveBack]). The [Hold] that End returns
// goes to the lock's lockstate.Handle, which sees every release and every
// loss and reports them ([Hold.Begin], [Hold.End]).
//
// With no OpenTelemetry SDK installed (every instrument disabled, no
// recording span in the context) and no logger, the calls read a few atomic
// flags and allocate nothing.
package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/lockkit/lockkit"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of lockkit's meters and tracers.
const ScopeName = "github.com/lockkit/lockkit"

// Instrument names.
const (
	WaitDuration = "lockkit.lock.wait.duration"
	HoldDuration = "lockkit.lock.hold.duration"
	Acquires     = "lockkit.lock.acquires"
	Losses       = "lockkit.lock.losses"
	Held         = "lockkit.lock.held"
	Waiting      = "lockkit.lock.waiting"
	Renewals     = "lockkit.lock.renewals"
)

// Attribute keys.
const (
	KeyBackend  = attribute.Key("lockkit.backend")
	KeyOutcome  = attribute.Key("lockkit.outcome")
	KeyEnd      = attribute.Key("lockkit.end")
	KeyReason   = attribute.Key("lockkit.reason")
	KeyResult   = attribute.Key("lockkit.result")
	KeyName     = attribute.Key("lockkit.lock.name")
	KeyWait     = attribute.Key("lockkit.acquire.wait")
	KeyDBSystem = attribute.Key("db.system")
)

// Span names.
const (
	SpanAcquire = "lockkit.acquire"
	SpanRelease = "lockkit.release"
)

// DurationBuckets are the bucket boundaries, in seconds, that the wait and
// hold histograms advise: from 100µs (an uncontended acquire on a local
// server) to an hour (a long job's lock).
var DurationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
	0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
}

// Outcome is how an acquire ended: the lockkit.outcome attribute.
type Outcome uint8

const (
	Acquired  Outcome = iota // the lock is held
	Busy                     // a try found it held elsewhere
	Timeout                  // a wait ended by its deadline (or the server's lock timeout)
	Cancelled                // a wait ended by its context's cancellation
	Failed                   // any other error
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"acquired", "busy", "timeout", "cancelled", "error"}

// String returns the attribute value.
func (o Outcome) String() string { return outcomeNames[o] }

// OutcomeOf classifies the error of an acquire; wait is false for a try.
// nil is Acquired. A *lockkit.HeldError is Busy without a cause, Cancelled
// with context.Canceled in its cause, Timeout with
// context.DeadlineExceeded; with another cause (a server's lock timeout,
// NOWAIT) it is Timeout for a wait and Busy for a try. Anything else is
// Failed.
func OutcomeOf(err error, wait bool) Outcome {
	if err == nil {
		return Acquired
	}
	he := heldError(err)
	switch {
	case he == nil:
		return Failed
	case he.Cause == nil:
		return Busy
	case errors.Is(he.Cause, context.Canceled):
		return Cancelled
	case errors.Is(he.Cause, context.DeadlineExceeded) || wait:
		return Timeout
	}
	return Busy
}

func heldError(err error) *lockkit.HeldError {
	if he, ok := err.(*lockkit.HeldError); ok {
		return he
	}
	var he *lockkit.HeldError
	if errors.As(err, &he) {
		return he
	}
	return nil
}

// End is how a hold ended: the lockkit.end attribute.
type End uint8

const (
	Released End = iota // given back with Release
	Lost                // lost while held
	numEnds
)

var endNames = [numEnds]string{"released", "lost"}

// String returns the attribute value.
func (e End) String() string { return endNames[e] }

// Reason is why a lock was lost: the lockkit.reason attribute.
type Reason uint8

const (
	// Other is a loss no backend rule names.
	Other Reason = iota
	// SessionEnded: the database session that held the lock ended or
	// stopped answering (pg_terminate_backend, KILL, a broken connection).
	SessionEnded
	// LeaseExpired: a lease ran out on the holder's clock before a
	// renewal was confirmed.
	LeaseExpired
	// TakenOver: the server no longer grants the lock to this holder (its
	// lease was taken over, force-released or deleted).
	TakenOver
	// ReleaseUnconfirmed: Release could not confirm that the server gave
	// the lock back, and destroyed what might still hold it.
	ReleaseUnconfirmed
	// FileRemoved: a lock file was removed or replaced while held.
	FileRemoved
	numReasons
)

var reasonNames = [numReasons]string{"other", "session_ended", "lease_expired", "taken_over", "release_unconfirmed", "file_removed"}

// String returns the attribute value.
func (r Reason) String() string { return reasonNames[r] }

// Backend describes the backend a Recorder records for.
type Backend struct {
	// Name is the lockkit.backend attribute: the package's name.
	Name string
	// DBSystem is the db.system attribute of spans; empty for none.
	DBSystem string
	// Reason maps the cause of a loss to its reason. release reports that
	// the loss was found by Release (the unlock's error). Nil, or Other for
	// a loss found by Release, means ReleaseUnconfirmed for a release and
	// Other otherwise.
	Reason func(cause error, release bool) Reason
}

// Recorder records one Locker's telemetry. A nil *Recorder records nothing.
type Recorder struct {
	b      Backend
	in     *instruments
	tracer trace.Tracer
	log    *slog.Logger
	label  func(string) string
	sets   *attrSets // without a name label
}

// New returns the Recorder of a Locker configured with t (nil for the
// defaults) on backend b.
func New(t *lockkit.Telemetry, b Backend) *Recorder {
	var c lockkit.Telemetry
	if t != nil {
		c = *t
	}
	mp := c.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	tp := c.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return &Recorder{
		b:      b,
		in:     newInstruments(mp),
		tracer: tp.Tracer(ScopeName),
		log:    c.Logger,
		label:  c.NameLabel,
		sets:   setsFor(b.Name, ""),
	}
}

type sharedKey struct {
	t       *lockkit.Telemetry
	backend string
}

var shared sync.Map // sharedKey → *Recorder

// Shared returns a Recorder for calls that have no Locker to keep one
// (advisory.WithTxLock), made once per Telemetry value and backend.
func Shared(t *lockkit.Telemetry, b Backend) *Recorder {
	k := sharedKey{t, b.Name}
	if r, ok := shared.Load(k); ok {
		return r.(*Recorder)
	}
	r, _ := shared.LoadOrStore(k, New(t, b))
	return r.(*Recorder)
}

// instruments are the seven instruments of the README's table.
type instruments struct {
	wait, hold                 metric.Float64Histogram
	acquires, losses, renewals metric.Int64Counter
	held, waiting              metric.Int64UpDownCounter
}

func newInstruments(mp metric.MeterProvider) *instruments {
	m := mp.Meter(ScopeName)
	var (
		in   instruments
		err  error
		errs []error
	)
	buckets := metric.WithExplicitBucketBoundaries(DurationBuckets...)
	if in.wait, err = m.Float64Histogram(WaitDuration, metric.WithUnit("s"), buckets,
		metric.WithDescription("Time an acquire took, from its call to the lock held or the attempt given up.")); err != nil {
		errs = append(errs, err)
	}
	if in.hold, err = m.Float64Histogram(HoldDuration, metric.WithUnit("s"), buckets,
		metric.WithDescription("Time a lock was held, from its acquire to its release or loss.")); err != nil {
		errs = append(errs, err)
	}
	if in.acquires, err = m.Int64Counter(Acquires, metric.WithUnit("{acquire}"),
		metric.WithDescription("Acquires, by outcome.")); err != nil {
		errs = append(errs, err)
	}
	if in.losses, err = m.Int64Counter(Losses, metric.WithUnit("{loss}"),
		metric.WithDescription("Locks lost while held, by reason.")); err != nil {
		errs = append(errs, err)
	}
	if in.renewals, err = m.Int64Counter(Renewals, metric.WithUnit("{renewal}"),
		metric.WithDescription("Lease renewals, by result.")); err != nil {
		errs = append(errs, err)
	}
	if in.held, err = m.Int64UpDownCounter(Held, metric.WithUnit("{lock}"),
		metric.WithDescription("Locks held now.")); err != nil {
		errs = append(errs, err)
	}
	if in.waiting, err = m.Int64UpDownCounter(Waiting, metric.WithUnit("{acquire}"),
		metric.WithDescription("Acquires waiting for a lock now (tries do not wait).")); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		otel.Handle(errors.Join(errs...))
	}
	// An SDK returns a usable instrument with its error; anything else
	// gets a no-op one.
	var nop noop.Meter
	if in.wait == nil {
		in.wait, _ = nop.Float64Histogram(WaitDuration)
	}
	if in.hold == nil {
		in.hold, _ = nop.Float64Histogram(HoldDuration)
	}
	if in.acquires == nil {
		in.acquires, _ = nop.Int64Counter(Acquires)
	}
	if in.losses == nil {
		in.losses, _ = nop.Int64Counter(Losses)
	}
	if in.renewals == nil {
		in.renewals, _ = nop.Int64Counter(Renewals)
	}
	if in.held == nil {
		in.held, _ = nop.Int64UpDownCounter(Held)
	}
	if in.waiting == nil {
		in.waiting, _ = nop.Int64UpDownCounter(Waiting)
	}
	return &in
}

// enabled reports whether any instrument records: false, at the cost of a
// few atomic loads, until an SDK is installed.
func (in *instruments) enabled(ctx context.Context) bool {
	return in.acquires.Enabled(ctx) || in.wait.Enabled(ctx) || in.held.Enabled(ctx) ||
		in.hold.Enabled(ctx) || in.losses.Enabled(ctx) || in.waiting.Enabled(ctx) ||
		in.renewals.Enabled(ctx)
}

// attrSets are the measurement options of one backend and name label,
// built once so that recording allocates nothing.
type attrSets struct {
	label   string
	base    []metric.AddOption // backend (and label): held, waiting
	outAdd  [numOutcomes][]metric.AddOption
	outRec  [numOutcomes][]metric.RecordOption
	endRec  [numEnds][]metric.RecordOption
	reason  [numReasons][]metric.AddOption
	results [2][]metric.AddOption // ok, failed
}

type setKey struct{ backend, label string }

var (
	setMu    sync.RWMutex
	setCache = map[setKey]*attrSets{}
)

// setsFor returns the attribute sets of backend and label, made once per
// process. Labels are bounded by contract (Telemetry.NameLabel), so the
// cache is too.
func setsFor(backend, label string) *attrSets {
	k := setKey{backend, label}
	setMu.RLock()
	s := setCache[k]
	setMu.RUnlock()
	if s != nil {
		return s
	}
	setMu.Lock()
	defer setMu.Unlock()
	if s := setCache[k]; s != nil {
		return s
	}
	s = newSets(backend, label)
	setCache[k] = s
	return s
}

func newSets(backend, label string) *attrSets {
	s := &attrSets{label: label}
	with := func(kv ...attribute.KeyValue) metric.MeasurementOption {
		kv = append(kv, KeyBackend.String(backend))
		if label != "" {
			kv = append(kv, KeyName.String(label))
		}
		return metric.WithAttributeSet(attribute.NewSet(kv...))
	}
	s.base = []metric.AddOption{with()}
	for o := range numOutcomes {
		opt := with(KeyOutcome.String(o.String()))
		s.outAdd[o] = []metric.AddOption{opt}
		s.outRec[o] = []metric.RecordOption{opt}
	}
	for e := range numEnds {
		s.endRec[e] = []metric.RecordOption{with(KeyEnd.String(e.String()))}
	}
	for r := range numReasons {
		s.reason[r] = []metric.AddOption{with(KeyReason.String(r.String()))}
	}
	s.results[0] = []metric.AddOption{with(KeyResult.String("ok"))}
	s.results[1] = []metric.AddOption{with(KeyResult.String("failed"))}
	return s
}

// setsOf returns the attribute sets for a lock called name.
func (r *Recorder) setsOf(name string) *attrSets {
	if r.label == nil {
		return r.sets
	}
	l := r.label(name)
	if l == "" {
		return r.sets
	}
	return setsFor(r.b.Name, l)
}

// spanStart starts a span named spanName if ctx carries a recording span.
// acquire adds the acquire's wait attribute.
func (r *Recorder) spanStart(ctx context.Context, spanName, lockName string, acquire, wait bool) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	attrs := make([]attribute.KeyValue, 0, 4)
	if r.b.DBSystem != "" {
		attrs = append(attrs, KeyDBSystem.String(r.b.DBSystem))
	}
	attrs = append(attrs, KeyBackend.String(r.b.Name), KeyName.String(lockName))
	if acquire {
		attrs = append(attrs, KeyWait.Bool(wait))
	}
	return r.tracer.Start(ctx, spanName, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// Acquire is one acquire in progress. Its zero value records nothing.
type Acquire struct {
	r     *Recorder
	sets  *attrSets // nil when no instrument records
	span  trace.Span
	start time.Time
	wait  bool
}

// StartAcquire begins an acquire of the lock called name; wait is false for
// a try. Call End with its result. The returned context carries the
// acquire's span, if one was started, for the backend's own calls.
func (r *Recorder) StartAcquire(ctx context.Context, name string, wait bool) (context.Context, Acquire) {
	if r == nil {
		return ctx, Acquire{}
	}
	a := Acquire{r: r, wait: wait}
	if r.in.enabled(ctx) {
		a.sets = r.setsOf(name)
		a.start = time.Now()
		if wait {
			r.in.waiting.Add(ctx, 1, a.sets.base...)
		}
	}
	ctx, a.span = r.spanStart(ctx, SpanAcquire, name, true, wait)
	return ctx, a
}

// End records the acquire's outcome, classified from err by OutcomeOf,
// and returns the Hold of the lock it acquired (the zero Hold when err is
// not nil).
func (a Acquire) End(ctx context.Context, err error) Hold {
	if a.r == nil {
		return Hold{}
	}
	o := OutcomeOf(err, a.wait)
	h := Hold{r: a.r, sets: a.sets}
	if a.sets != nil {
		h.start = time.Now()
		in := a.r.in
		if a.wait {
			in.waiting.Add(ctx, -1, a.sets.base...)
		}
		in.wait.Record(ctx, h.start.Sub(a.start).Seconds(), a.sets.outRec[o]...)
		in.acquires.Add(ctx, 1, a.sets.outAdd[o]...)
	} else if a.r.log != nil && err == nil {
		h.start = time.Now() // for the loss log's "held"
	}
	if a.span != nil {
		a.span.SetAttributes(KeyOutcome.String(o.String()))
		if o == Failed {
			a.span.RecordError(err)
			a.span.SetStatus(codes.Error, err.Error())
		}
		a.span.End()
	}
	if err != nil {
		return Hold{}
	}
	return h
}

// Hold is the telemetry of one held lock, from its acquire. The zero Hold
// records nothing.
type Hold struct {
	r     *Recorder
	sets  *attrSets // nil when metrics were off at the acquire
	start time.Time
}

// Begin records that the lock is held. lockstate calls it once, before End.
func (h Hold) Begin() {
	if h.sets != nil {
		h.r.in.held.Add(context.Background(), 1, h.sets.base...)
	}
}

// End records how the hold ended. For a loss, cause is the loss's cause and
// release reports whether Release found it (the unlock's error).
func (h Hold) End(name string, end End, cause error, release bool) {
	if h.r == nil {
		return
	}
	ctx := context.Background()
	var held time.Duration
	if !h.start.IsZero() {
		held = time.Since(h.start)
	}
	if h.sets != nil {
		in := h.r.in
		in.held.Add(ctx, -1, h.sets.base...)
		in.hold.Record(ctx, held.Seconds(), h.sets.endRec[end]...)
	}
	if end != Lost {
		return
	}
	reason := h.r.reason(cause, release)
	if h.sets != nil {
		h.r.in.losses.Add(ctx, 1, h.sets.reason[reason]...)
	}
	if h.r.log != nil {
		h.r.log.LogAttrs(ctx, slog.LevelError, "lockkit: lock lost",
			slog.String("backend", h.r.b.Name), slog.String("lock", name),
			slog.String("reason", reason.String()), slog.Duration("held", held),
			slog.Any("error", cause))
	}
}

func (r *Recorder) reason(cause error, release bool) Reason {
	reason := Other
	if r.b.Reason != nil {
		reason = r.b.Reason(cause, release)
	}
	if reason == Other && release {
		reason = ReleaseUnconfirmed
	}
	return reason
}

// StartRelease begins the span of a release, if ctx carries a recording
// span.
func (h Hold) StartRelease(ctx context.Context, name string) (context.Context, trace.Span) {
	if h.r == nil {
		return ctx, nil
	}
	return h.r.spanStart(ctx, SpanRelease, name, false, false)
}

// EndRelease ends a release's span with Release's result.
func EndRelease(span trace.Span, err error) {
	if span == nil {
		return
	}
	switch {
	case err == nil:
		span.SetAttributes(KeyEnd.String(Released.String()))
	case errors.Is(err, lockkit.ErrLost):
		span.SetAttributes(KeyEnd.String(Lost.String()))
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Renewal records a lease renewal of the lock called name: err nil is ok,
// anything else failed (and is logged at Warn). A renewal cut short because
// its context was cancelled (the lock is being released) is not one.
func (r *Recorder) Renewal(ctx context.Context, name string, err error) {
	if r == nil || (err != nil && errors.Is(err, context.Canceled)) {
		return
	}
	if r.in.enabled(ctx) {
		res := 0
		if err != nil {
			res = 1
		}
		r.in.renewals.Add(ctx, 1, r.setsOf(name).results[res]...)
	}
	if err != nil && r.log != nil {
		r.log.LogAttrs(ctx, slog.LevelWarn, "lockkit: lease renewal failed",
			slog.String("backend", r.b.Name), slog.String("lock", name), slog.Any("error", err))
	}
}

// GaveBack logs the give-back of a lease that an acquire took after its
// caller had given up: at Info when err is nil, else at Warn (the lease is
// left to expire).
func (r *Recorder) GaveBack(name string, err error) {
	if r == nil || r.log == nil {
		return
	}
	ctx := context.Background()
	if err == nil {
		r.log.LogAttrs(ctx, slog.LevelInfo, "lockkit: gave back a lease taken by an abandoned acquire",
			slog.String("backend", r.b.Name), slog.String("lock", name))
		return
	}
	r.log.LogAttrs(ctx, slog.LevelWarn, "lockkit: could not give back a lease taken by an abandoned acquire; it is left to expire",
		slog.String("backend", r.b.Name), slog.String("lock", name), slog.Any("error", err))
}
