//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package filelock

import (
	"context"
	"time"
)

// notifier is Linux-only (inotify); elsewhere waiting is polling alone.
type notifier struct{}

func newNotifier() *notifier { return nil }

func (*notifier) arm(int, string) bool                              { return false }
func (*notifier) wait(context.Context, time.Duration) (bool, error) { return false, nil }
func (*notifier) close()                                            {}
