package advisory

import (
	"context"
	"database/sql"

	"github.com/lockkit/lockkit/internal/telemetry"
)

// txTelemetry records a WithTxLock call: the acquire ends when fn is
// called (the locks were granted) or when the call returns without calling
// it; the hold ends when the call returns.
type txTelemetry struct {
	caller  context.Context // the caller's context, without the acquire's span
	name    string
	op      telemetry.Acquire
	hold    telemetry.Hold
	granted bool
}

func startTxTelemetry(ctx context.Context, opts *TxOptions, name string, try bool) (context.Context, *txTelemetry) {
	r := telemetry.Shared(nil, telemetryBackend)
	if opts != nil && opts.Telemetry != nil {
		r = telemetry.Shared(opts.Telemetry, telemetryBackend)
	}
	t := &txTelemetry{caller: ctx, name: name}
	ctx, t.op = r.StartAcquire(ctx, name, !try)
	return ctx, t
}

// wrap returns fn, recording the acquire as granted when it is called. fn
// gets the caller's context (which ends when the acquire's does), not one
// carrying the acquire's span, which has ended.
func (t *txTelemetry) wrap(fn func(context.Context, *sql.Tx) error) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		t.granted = true
		t.hold = t.op.End(ctx, nil)
		t.hold.Begin()
		return fn(t.caller, tx)
	}
}

// end records the end of the call, whose error is err.
func (t *txTelemetry) end(ctx context.Context, err error) {
	if !t.granted {
		t.op.End(ctx, err)
		return
	}
	t.hold.End(t.name, telemetry.Released, nil, false)
}
