package lockkit

import (
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry says where a Locker sends its metrics, spans and logs. Every
// backend's Config has a Telemetry field; a nil *Telemetry, and every zero
// field, means the default.
//
// The instruments, their units and attributes are listed in the README's
// Telemetry section. Every backend records the same set:
//
//	lockkit.lock.wait.duration   histogram, s    lockkit.backend, lockkit.outcome
//	lockkit.lock.hold.duration   histogram, s    lockkit.backend, lockkit.end
//	lockkit.lock.acquires        counter         lockkit.backend, lockkit.outcome
//	lockkit.lock.losses          counter         lockkit.backend, lockkit.reason
//	lockkit.lock.held            up-down counter lockkit.backend
//	lockkit.lock.waiting         up-down counter lockkit.backend
//	lockkit.lock.renewals        counter         lockkit.backend, lockkit.result
//
// The lock name is not a metric attribute, because names often hold record
// ids; [Telemetry.NameLabel] adds a bounded label instead.
//
// Spans: an acquire and a release start a span ("lockkit.acquire",
// "lockkit.release", with db.system and the lock name) only when their
// context carries a recording span, so that lock operations show up inside
// the traces of the requests and jobs that take them, and an untraced call
// pays nothing for tracing.
type Telemetry struct {
	// MeterProvider makes the instruments. Nil means OpenTelemetry's
	// global provider (otel.GetMeterProvider), which records nothing
	// until an SDK is installed with otel.SetMeterProvider.
	MeterProvider metric.MeterProvider

	// TracerProvider makes the spans. Nil means OpenTelemetry's global
	// provider (otel.GetTracerProvider).
	TracerProvider trace.TracerProvider

	// Logger, when set, reports losses (at Error), failed lease renewals
	// (at Warn), and leases that an abandoned acquire took and gave back
	// (at Info; at Warn when the give-back failed and the lease is left to
	// expire). Nil means no logs.
	Logger *slog.Logger

	// NameLabel, when set, maps a lock name to a label recorded as the
	// lockkit.lock.name attribute of every measurement of that lock. It
	// must return few distinct values (such as "invoices:*" for
	// "invoices:1042"), since every value makes time series of its own;
	// an empty label adds no attribute. See [LabelBefore].
	NameLabel func(name string) string
}

// LabelBefore returns a [Telemetry.NameLabel] that keeps a name up to the
// first of the separators in seps and replaces the rest with "*":
// LabelBefore(":/") maps "invoices:1042" to "invoices:*" and "jobs/nightly"
// to "jobs/*". A name without a separator maps to "*", never to itself, so
// the labels stay bounded.
func LabelBefore(seps string) func(name string) string {
	return func(name string) string {
		i := strings.IndexAny(name, seps)
		if i < 0 {
			return "*"
		}
		return name[:i+1] + "*"
	}
}
