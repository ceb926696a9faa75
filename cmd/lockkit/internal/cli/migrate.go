package cli

import (
	"context"
	"fmt"

	"github.com/lockkit/lockkit/migrations"
)

// migrate is lockkit migrate.
func (e *env) migrate(ctx context.Context, args []string) int {
	var backendFlag string
	fs := newFlagSet("migrate")
	stringVar(fs, &backendFlag, "b", "backend")
	pos, code, done := e.parseAll(fs, migrateUsage, args)
	if done {
		return code
	}
	switch {
	case len(pos) == 0:
		return e.usageErr(migrateUsage, "missing up, down or version")
	case len(pos) > 1:
		return e.usageErr(migrateUsage, "one of up, down or version, not %q", pos)
	}
	action := pos[0]
	if action != "up" && action != "down" && action != "version" {
		return e.usageErr(migrateUsage, "unknown migration %q: use up, down or version", action)
	}
	given := fsHas(fs, "b", "backend")
	if !given && e.getenv(EnvBackend) == "" {
		return e.usageErr(migrateUsage, "migrate needs a postgres:// or mysql:// backend: give --backend or set %s", EnvBackend)
	}
	b, err := e.resolveBackend(backendFlag, given)
	if err != nil {
		return e.fail(err, ExitNotAcquired)
	}
	var dialect migrations.Dialect
	switch b.kind {
	case kindPostgres:
		dialect = migrations.Postgres
	case kindMySQL:
		dialect = migrations.MySQL
	default:
		return e.usageErr(migrateUsage, "the lock table lives in PostgreSQL or MySQL, not %s", b.display)
	}

	ctx, stop := e.interruptible(ctx)
	code = e.migrateOn(ctx, b, dialect, action)
	if sig := stop(); sig != nil {
		return signalExit(sig)
	}
	return code
}

func (e *env) migrateOn(ctx context.Context, b *backendURL, dialect migrations.Dialect, action string) int {
	be, err := e.openBackend(ctx, b)
	if err != nil {
		return e.fail(fmt.Errorf("%s: %w", b.display, err), ExitNotAcquired)
	}
	defer be.close()
	db := be.(*sqlBackend).db
	switch action {
	case "up":
		err = migrations.Up(ctx, db, dialect, nil)
	case "down":
		err = migrations.Down(ctx, db, dialect, nil)
	}
	if err != nil {
		return e.fail(fmt.Errorf("%s: migrate %s: %w", b.display, action, err), ExitNotAcquired)
	}
	v, dirty, err := migrations.Version(ctx, db, dialect, nil)
	if err != nil {
		return e.fail(fmt.Errorf("%s: migration version: %w", b.display, err), ExitNotAcquired)
	}
	switch action {
	case "version":
		if dirty {
			fmt.Fprintf(e.stdout, "%d (dirty)\n", v)
		} else {
			fmt.Fprintf(e.stdout, "%d\n", v)
		}
	case "up":
		fmt.Fprintf(e.stderr, "lockkit: lock table %s is at version %d\n", migrations.TableName, v)
	case "down":
		fmt.Fprintf(e.stderr, "lockkit: lock table %s dropped\n", migrations.TableName)
	}
	if dirty {
		e.errorf("the last migration failed halfway (dirty): fix the database by hand")
		return ExitUnavailable
	}
	return ExitOK
}
