package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/filelock"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The test takes locks with known outcomes, scrapes /metrics and finds
// every instrument with the values it caused.
func TestMetricsEndpoint(t *testing.T) {
	handler, tel, err := newTelemetry()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	defer srv.Close()
	l, err := filelock.New(t.TempDir(), &filelock.Config{Telemetry: tel})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()

	lk, err := l.Acquire(ctx, "reports:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.TryAcquire(ctx, "reports:1"); !errors.Is(err, lockkit.ErrNotAcquired) {
		t.Fatalf("TryAcquire of a held lock: %v", err)
	}
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = l.Acquire(dctx, "reports:1")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire with a deadline of a held lock: %v", err)
	}
	held := scrape(t, srv.URL)
	time.Sleep(20 * time.Millisecond)
	if err := lk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	after := scrape(t, srv.URL)

	label := map[string]string{"lockkit_backend": "filelock", "lockkit_lock_name": "reports:*"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for k, v := range label {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		fams   map[string]*dto.MetricFamily
		name   string
		labels map[string]string
		want   float64
	}{
		{held, "lockkit_lock_held", label, 1},
		{after, "lockkit_lock_held", label, 0},
		{after, "lockkit_lock_waiting", label, 0},
		{after, "lockkit_lock_acquires_total", with("lockkit_outcome", "acquired"), 1},
		{after, "lockkit_lock_acquires_total", with("lockkit_outcome", "busy"), 1},
		{after, "lockkit_lock_acquires_total", with("lockkit_outcome", "timeout"), 1},
		{after, "lockkit_lock_wait_duration_seconds", with("lockkit_outcome", "timeout"), 1},
		{after, "lockkit_lock_hold_duration_seconds", with("lockkit_end", "released"), 1},
	} {
		m := find(t, c.fams, c.name, c.labels)
		if m == nil {
			continue
		}
		var got float64
		switch {
		case m.Counter != nil:
			got = m.Counter.GetValue()
		case m.Gauge != nil:
			got = m.Gauge.GetValue()
		case m.Histogram != nil:
			got = float64(m.Histogram.GetSampleCount())
		}
		if got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if m := find(t, after, "lockkit_lock_wait_duration_seconds", with("lockkit_outcome", "timeout")); m != nil && m.Histogram.GetSampleSum() < 0.05 {
		t.Errorf("timed-out wait recorded as %vs, want at least its 50ms deadline", m.Histogram.GetSampleSum())
	}
	if m := find(t, after, "lockkit_lock_hold_duration_seconds", with("lockkit_end", "released")); m != nil && m.Histogram.GetSampleSum() < 0.02 {
		t.Errorf("hold recorded as %vs, want at least the 20ms the test held the lock", m.Histogram.GetSampleSum())
	}
	for _, name := range []string{"lockkit_lock_losses_total", "lockkit_lock_renewals_total"} {
		if _, ok := after[name]; ok {
			t.Errorf("%s exported, but nothing was lost or renewed", name)
		}
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// find returns the metric of family name whose labels include labels.
func find(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Errorf("/metrics has no %s", name)
		return nil
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	t.Errorf("/metrics has no %s with labels %v", name, labels)
	return nil
}
