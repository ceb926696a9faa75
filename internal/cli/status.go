package cli

import "context"

func (e *env) status(ctx context.Context, args []string) int {
	fs := newFlagSet("status")
	if code, done := e.parse(fs, statusUsage, args); done {
		return code
	}
	e.errorf("status: not yet implemented")
	return ExitUnavailable
}
