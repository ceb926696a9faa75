package memlock

// Waiters returns how many Lock calls wait for name.
func (l *Locker) Waiters(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.names[name]; e != nil {
		return len(e.queue)
	}
	return 0
}

// Entries returns how many names the Locker keeps state for: held names.
func (l *Locker) Entries() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.names)
}
