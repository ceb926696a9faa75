//go:build unix && !linux

package cli

import "syscall"

// groupHasLiveMembers reports whether the process group pgid has members;
// here an exited member not yet reaped by its parent counts too. (watch
// has reaped the command itself.)
func groupHasLiveMembers(pgid int, _ *int) bool { return signalGroupAlive(pgid) }

// setDeathSignal does nothing: lockkit sets a parent-death signal on Linux
// only, so here a command outlives a lockkit that was killed.
func setDeathSignal(*syscall.SysProcAttr) {}

// watch waits for the command to exit. Without waitid's WNOWAIT this
// reaps it at once, so a process group signal sent after its exit could in
// theory reach a group whose id was reused; and stops are not relayed.
func (c *child) watch() {
	defer close(c.exited)
	_ = c.cmd.Wait()
	c.state = c.cmd.ProcessState
}
