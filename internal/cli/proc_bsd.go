//go:build unix && !linux

package cli

// watch waits for the command to exit. Without waitid's WNOWAIT this
// reaps it at once, so a process group signal sent after its exit could in
// theory reach a group whose id was reused; and stops are not relayed.
func (c *child) watch() {
	defer close(c.exited)
	_ = c.cmd.Wait()
	c.state = c.cmd.ProcessState
}
