// Package telemetrytest gives tests a lockkit.Telemetry backed by the
// OpenTelemetry SDK's in-memory metric reader and span recorder, and reads
// the values back. Only tests import it: the SDK stays out of the library's
// build.
package telemetrytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Recorder holds what a test's Telemetry recorded.
type Recorder struct {
	Telemetry *lockkit.Telemetry
	Reader    *sdkmetric.ManualReader
	Spans     *tracetest.SpanRecorder
	Tracer    trace.Tracer // from the same provider, for a parent span

	logMu sync.Mutex
	logs  bytes.Buffer
}

// New returns a Recorder whose Telemetry records into an in-memory reader,
// a span recorder and a log buffer (at Debug and above). The providers are
// shut down when the test ends.
func New(t testing.TB) *Recorder {
	r := &Recorder{Reader: sdkmetric.NewManualReader(), Spans: tracetest.NewSpanRecorder()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.Reader))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.Spans))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	r.Tracer = tp.Tracer("telemetrytest")
	r.Telemetry = &lockkit.Telemetry{
		MeterProvider:  mp,
		TracerProvider: tp,
		Logger:         slog.New(slog.NewTextHandler(lockedWriter{r}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	return r
}

type lockedWriter struct{ r *Recorder }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.r.logMu.Lock()
	defer w.r.logMu.Unlock()
	return w.r.logs.Write(p)
}

// Logs returns the log lines written so far.
func (r *Recorder) Logs() string {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.logs.String()
}

// Collect reads the current metrics.
func (r *Recorder) Collect(t testing.TB) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	return rm
}

// Attrs are the attributes a data point must have (others are ignored).
type Attrs map[string]string

func (a Attrs) match(set attribute.Set) bool {
	for k, v := range a {
		got, ok := set.Value(attribute.Key(k))
		if !ok || got.Emit() != v {
			return false
		}
	}
	return true
}

func find(rm metricdata.ResourceMetrics, name string) (metricdata.Aggregation, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m.Data, true
			}
		}
	}
	return nil, false
}

// Sum returns the sum of the counter or up-down counter name over the data
// points matching attrs; 0 when there are none.
func (r *Recorder) Sum(t testing.TB, name string, attrs Attrs) int64 {
	t.Helper()
	return SumOf(r.Collect(t), name, attrs)
}

// WaitSum polls Sum until it reaches at least want, and returns how long
// that took; it fails t when the sum is still below want after within.
func (r *Recorder) WaitSum(t testing.TB, name string, attrs Attrs, want int64, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := r.Sum(t, name, attrs)
		if got >= want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s%v = %d after %v, want at least %d", name, attrs, got, within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SumOf is Sum on metrics already collected.
func SumOf(rm metricdata.ResourceMetrics, name string, attrs Attrs) int64 {
	data, ok := find(rm, name)
	if !ok {
		return 0
	}
	var n int64
	if s, ok := data.(metricdata.Sum[int64]); ok {
		for _, dp := range s.DataPoints {
			if attrs.match(dp.Attributes) {
				n += dp.Value
			}
		}
	}
	return n
}

// Hist sums the histogram name over the data points matching attrs: the
// number of measurements, their sum and their largest value.
type Hist struct {
	Count    uint64
	Sum, Max float64
}

// Histogram returns the histogram name's data points matching attrs.
func (r *Recorder) Histogram(t testing.TB, name string, attrs Attrs) Hist {
	t.Helper()
	return HistogramOf(r.Collect(t), name, attrs)
}

// HistogramOf is Histogram on metrics already collected.
func HistogramOf(rm metricdata.ResourceMetrics, name string, attrs Attrs) Hist {
	var h Hist
	data, ok := find(rm, name)
	if !ok {
		return h
	}
	if hs, ok := data.(metricdata.Histogram[float64]); ok {
		for _, dp := range hs.DataPoints {
			if !attrs.match(dp.Attributes) {
				continue
			}
			h.Count += dp.Count
			h.Sum += dp.Sum
			if m, ok := dp.Max.Value(); ok && m > h.Max {
				h.Max = m
			}
		}
	}
	return h
}

// BenchName returns a lock name unique to this call and short enough (22
// bytes) that hashing it allocates nothing, as in most applications.
func BenchName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "lkt.bench." + hex.EncodeToString(b[:])
}

// Backend describes a backend to [Conformance].
type Backend struct {
	// Name is the backend's lockkit.backend attribute.
	Name string
	// DBSystem is the db.system attribute its spans carry; "" for none.
	DBSystem string
	// New returns a Locker of the backend configured with tel.
	New func(t *testing.T, tel *lockkit.Telemetry) lockkit.Locker
}

// Conformance checks what a backend's acquires and releases record: exact
// counts of acquired, busy, timeout and cancelled acquires, a wait at least
// as long as the test held the lock, the held and waiting counters back at
// 0, the hold histogram, and the acquire and release spans inside a
// caller's span. name must be a lock name free on the backend.
func Conformance(t *testing.T, b Backend, name string) {
	rec := New(t)
	l := b.New(t, rec.Telemetry)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	backend := Attrs{"lockkit.backend": b.Name}
	outcome := func(o string) Attrs { return Attrs{"lockkit.backend": b.Name, "lockkit.outcome": o} }

	// Acquired, inside a caller's span.
	sctx, parent := rec.Tracer.Start(ctx, "job")
	lk, err := l.Acquire(sctx, name)
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if got := rec.Sum(t, "lockkit.lock.held", backend); got != 1 {
		t.Errorf("held = %d while one lock is held, want 1", got)
	}

	// Busy.
	if _, err := l.TryAcquire(ctx, name); !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Fatalf("TryAcquire of a held lock: %v", err)
	}
	// Timeout.
	tctx, tcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = l.Acquire(tctx, name)
	tcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with a deadline of a held lock: %v", err)
	}
	// Cancelled.
	cctx, ccancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, ccancel)
	_, err = l.Acquire(cctx, name)
	ccancel()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire of a held lock, cancelled: %v", err)
	}

	// A waiter that waits while the test holds the lock.
	type result struct {
		lk  lockkit.Lock
		err error
	}
	got := make(chan result, 1)
	go func() {
		lk, err := l.Acquire(ctx, name)
		got <- result{lk, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); rec.Sum(t, "lockkit.lock.waiting", backend) != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the waiting counter never reached 1")
		}
		time.Sleep(5 * time.Millisecond)
	}
	const heldFor = 300 * time.Millisecond
	time.Sleep(heldFor)
	if err := lk.Release(sctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	parent.End()
	r := <-got
	if r.err != nil {
		t.Fatalf("waiter: %v", r.err)
	}
	if err := r.lk.Release(ctx); err != nil {
		t.Fatalf("waiter's Release: %v", err)
	}

	rm := rec.Collect(t)
	for o, want := range map[string]int64{"acquired": 2, "busy": 1, "timeout": 1, "cancelled": 1, "error": 0} {
		if got := SumOf(rm, "lockkit.lock.acquires", outcome(o)); got != want {
			t.Errorf("acquires{outcome=%s} = %d, want %d", o, got, want)
		}
		if got := HistogramOf(rm, "lockkit.lock.wait.duration", outcome(o)); got.Count != uint64(want) {
			t.Errorf("wait histogram{outcome=%s} has %d measurements, want %d", o, got.Count, want)
		}
	}
	if h := HistogramOf(rm, "lockkit.lock.wait.duration", outcome("acquired")); h.Max < heldFor.Seconds() {
		t.Errorf("longest acquired wait %.3fs, want at least the %v the lock was held meanwhile", h.Max, heldFor)
	}
	// The deadline starts when the context is made, a moment before the
	// acquire (and its clock) starts: allow that moment.
	if h := HistogramOf(rm, "lockkit.lock.wait.duration", outcome("timeout")); h.Max < 0.09 {
		t.Errorf("timed-out wait %.3fs, want about its 100ms deadline", h.Max)
	}
	if h := HistogramOf(rm, "lockkit.lock.hold.duration", Attrs{"lockkit.backend": b.Name, "lockkit.end": "released"}); h.Count != 2 || h.Max < heldFor.Seconds() {
		t.Errorf("hold histogram: %d released measurements, longest %.3fs; want 2, at least %v", h.Count, h.Max, heldFor)
	}
	for _, inst := range []string{"lockkit.lock.held", "lockkit.lock.waiting", "lockkit.lock.losses"} {
		if got := SumOf(rm, inst, backend); got != 0 {
			t.Errorf("%s = %d at the end, want 0", inst, got)
		}
	}

	// Spans: the first acquire and its release, inside the job.
	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Spans.Ended() {
		if s.Parent().SpanID() == parent.SpanContext().SpanID() {
			spans[s.Name()] = s
		}
	}
	for _, sn := range []string{"lockkit.acquire", "lockkit.release"} {
		s, ok := spans[sn]
		if !ok {
			t.Errorf("no %s span inside the caller's span", sn)
			continue
		}
		attrs := attribute.NewSet(s.Attributes()...)
		want := Attrs{"lockkit.backend": b.Name, "lockkit.lock.name": name}
		if b.DBSystem != "" {
			want["db.system"] = b.DBSystem
		}
		if sn == "lockkit.acquire" {
			want["lockkit.outcome"] = "acquired"
		} else {
			want["lockkit.end"] = "released"
		}
		if !want.match(attrs) {
			t.Errorf("%s span attributes %v, want %v", sn, s.Attributes(), want)
		}
	}
	// Without a span in the context, there are none.
	if n := len(rec.Spans.Ended()); n != 3 {
		t.Errorf("%d spans ended, want 3 (job, acquire, release)", n)
	}
}

// Overhead benchmarks uncontended TryAcquire plus Release of name on a
// Locker without an SDK ("off": OpenTelemetry's global providers, nothing
// installed) and on one with the SDK's meter and tracer providers installed
// ("sdk": every instrument records; no span, as the context carries none).
// "ratio" interleaves blocks of both and reports sdk's time as a multiple
// of off's (x-off), which cancels most of the drift of a shared machine.
// newLocker makes a Locker with the given Telemetry (nil for off); both
// Lockers should share one client (pool), so that they differ only in
// their telemetry.
func Overhead(b *testing.B, newLocker func(b *testing.B, tel *lockkit.Telemetry) lockkit.Locker, name string) {
	rec := New(b)
	off := newLocker(b, nil)
	on := newLocker(b, rec.Telemetry)
	onUsed := false
	ctx := context.Background()
	cycle := func(b *testing.B, l lockkit.Locker) {
		lk, err := l.TryAcquire(ctx, name)
		if err != nil {
			b.Fatal(err)
		}
		if err := lk.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
	for _, v := range []struct {
		name string
		l    lockkit.Locker
	}{{"off", off}, {"sdk", on}} {
		b.Run(v.name, func(b *testing.B) {
			onUsed = onUsed || v.l == on
			cycle(b, v.l) // warm up
			b.ReportAllocs()
			for b.Loop() {
				cycle(b, v.l)
			}
		})
	}
	b.Run("ratio", func(b *testing.B) {
		onUsed = true
		const block = 32
		var toff, ton time.Duration
		run := func(l lockkit.Locker) time.Duration {
			t0 := time.Now()
			for range block {
				cycle(b, l)
			}
			return time.Since(t0)
		}
		odd := false
		for b.Loop() {
			// Alternate which goes first, so that neither always
			// follows the other's release.
			if odd {
				ton += run(on)
				toff += run(off)
			} else {
				toff += run(off)
				ton += run(on)
			}
			odd = !odd
		}
		b.ReportMetric(float64(ton)/float64(toff), "x-off")
		b.ReportMetric(float64(toff)/float64(b.N*block), "off-ns/op")
		b.ReportMetric(float64(ton)/float64(b.N*block), "sdk-ns/op")
	})
	if n := rec.Sum(b, "lockkit.lock.acquires", Attrs{"lockkit.outcome": "acquired"}); onUsed && n == 0 {
		b.Error("the instrumented Locker recorded no acquires")
	}
}
