//go:build unix && !linux

package cli

import "syscall"

// groupHasLiveMembers reports whether the process group pgid has members;
// here an exited member not yet reaped by its parent counts too.
func groupHasLiveMembers(pgid int) bool { return signalGroupAlive(pgid) }

// setDeathSignal does nothing: only Linux can signal a child when its
// parent dies, so here a command outlives a lockkit that was killed.
func setDeathSignal(*syscall.SysProcAttr) {}

// watch waits for the command to exit. Without waitid's WNOWAIT this
// reaps it at once, so a process group signal sent after its exit could in
// theory reach a group whose id was reused; and stops are not relayed.
func (c *child) watch() {
	defer close(c.exited)
	_ = c.cmd.Wait()
	c.state = c.cmd.ProcessState
}
