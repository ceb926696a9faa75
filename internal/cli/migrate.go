package cli

import "context"

func (e *env) migrate(ctx context.Context, args []string) int {
	fs := newFlagSet("migrate")
	if code, done := e.parse(fs, migrateUsage, args); done {
		return code
	}
	e.errorf("migrate: not yet implemented")
	return ExitUnavailable
}
