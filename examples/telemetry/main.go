// Command telemetry runs a small lock workload with lockkit's OpenTelemetry
// metrics exported for Prometheus, and serves them on /metrics.
//
//	go run . -addr :9464 -dir /tmp/lockkit-telemetry
//	curl -s localhost:9464/metrics | grep lockkit_
//
// Workers take file locks named "reports:<n>" under lockkit.Do, hold them
// for a few milliseconds, and sometimes only try (lockkit.TryDo) or give up
// after a short deadline, so that every outcome shows up. Lock names carry a
// record number; Telemetry.NameLabel maps them to the bounded label
// "reports:*". Losses and renewal failures are logged as JSON on stderr.
//
// The exporter is go.opentelemetry.io/otel/exporters/prometheus. This
// program is a module of its own so that neither the exporter nor the SDK
// is a requirement of lockkit's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/filelock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

func main() {
	addr := flag.String("addr", "localhost:9464", "address to serve /metrics on")
	dir := flag.String("dir", "", "lock directory (default: a new temporary directory)")
	workers := flag.Int("workers", 4, "goroutines taking locks")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	handler, tel, err := newTelemetry()
	if err != nil {
		log.Fatal(err)
	}
	if *dir == "" {
		if *dir, err = os.MkdirTemp("", "lockkit-telemetry-"); err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(*dir)
	}
	l, err := filelock.New(*dir, &filelock.Config{Telemetry: tel})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	for i := range *workers {
		go work(ctx, l, i)
	}
	srv := &http.Server{Addr: *addr, Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	log.Printf("serving http://%s/metrics; locks in %s", *addr, *dir)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// newTelemetry returns the handler that serves /metrics and the
// lockkit.Telemetry whose metrics it serves.
func newTelemetry() (http.Handler, *lockkit.Telemetry, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		// Classic Prometheus names: lockkit_lock_wait_duration_seconds,
		// lockkit_lock_acquires_total, lockkit_lock_held.
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	tel := &lockkit.Telemetry{
		MeterProvider: mp,
		Logger:        slog.New(slog.NewJSONHandler(os.Stderr, nil)),
		NameLabel:     lockkit.LabelBefore(":"),
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux, tel, nil
}

// work takes locks until ctx ends: mostly a wait (Do), sometimes a try
// (TryDo), sometimes a wait with a deadline too short to get a busy lock.
func work(ctx context.Context, l lockkit.Locker, id int) {
	for ctx.Err() == nil {
		name := fmt.Sprintf("reports:%d", rand.IntN(3))
		hold := func(ctx context.Context) error {
			select {
			case <-time.After(time.Duration(1+rand.IntN(20)) * time.Millisecond):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var err error
		switch n := rand.IntN(10); {
		case n < 6:
			err = lockkit.Do(ctx, l, name, hold)
		case n < 8:
			err = lockkit.TryDo(ctx, l, name, hold)
		default:
			dctx, cancel := context.WithTimeout(ctx, 2*time.Millisecond)
			err = lockkit.Do(dctx, l, name, hold)
			cancel()
		}
		// A short deadline may also end the hold: not worth a line.
		if err != nil && !errors.Is(err, lockkit.ErrNotAcquired) && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			log.Printf("worker %d: %v", id, err)
		}
	}
}
