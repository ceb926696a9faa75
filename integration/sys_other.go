//go:build !linux

package integration

import "syscall"

// setParentDeathSignal does nothing: only Linux can signal a child when its
// parent dies, so elsewhere a private server may outlive a test binary
// that was killed.
func setParentDeathSignal(*syscall.SysProcAttr) {}

// removeSysVSegment does nothing: the stale-segment cleanup reads Linux's
// shared-memory interface.
func removeSysVSegment(string) {}
