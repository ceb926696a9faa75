// Package telemetrytest gives tests a lockkit.Telemetry backed by the
// OpenTelemetry SDK's in-memory metric reader and span recorder, and reads
// the values back. Only tests import it: the SDK stays out of the library's
// build.
package telemetrytest

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"

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
