package reliability

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// A resource is what a lock guards: here a JSON file that processes
// read-modify-write. It keeps its own consistency with an flock of its own
// (as a database keeps a row consistent), and it can check fencing tokens:
// a write carrying a token lower than the newest one it has accepted is
// refused. That check, done by the resource and not by the lock, is what
// keeps a holder that lost its lock without knowing it (a paused process, a
// cut network) from doing harm.
type resState struct {
	Counter  int64 `json:"counter"`  // incremented by every accepted read-modify-write
	Token    int64 `json:"token"`    // the newest fencing token accepted
	Writes   int64 `json:"writes"`   // accepted writes
	Rejected int64 `json:"rejected"` // writes refused for a stale token
	Writer   int   `json:"writer"`   // pid of the last accepted writer

	// Inside lists who is inside the critical section now: "worker/seq"
	// -> what they hold. Used by the torture test to see overlaps.
	Inside map[string]insideRef `json:"inside,omitempty"`
}

type insideRef struct {
	Worker  int    `json:"worker"`
	Seq     int    `json:"seq"`
	Session string `json:"session"`
	Token   int64  `json:"token"`
	PID     int    `json:"pid"`
	At      int64  `json:"at"` // when it entered, Unix ns
}

// errStale is what the resource answers a write with an old token.
var errStale = errors.New("resource: stale fencing token refused")

// updateResource runs fn on the resource in dir under the resource's own
// mutex, and saves the state unless fn fails.
func updateResource(dir string, fn func(st *resState) error) error {
	mu, err := os.OpenFile(filepath.Join(dir, "mu"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return err
	}
	defer mu.Close()
	for {
		err = syscall.Flock(int(mu.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "state.json")
	var st resState
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("resource state: %w", err)
		}
	}
	if err := fn(&st); err != nil {
		return err
	}
	b, _ = json.Marshal(&st)
	return os.WriteFile(path, b, 0o666)
}

// readResource returns the resource's state.
func readResource(dir string) (resState, error) {
	var st resState
	err := updateResource(dir, func(s *resState) error { st = *s; return nil })
	return st, err
}

// fencedWrite is one write to the resource in dir that carries a fencing
// token: refused with errStale unless token is above every token accepted
// before.
func fencedWrite(dir string, token int64, pid int) error {
	var stale error
	err := updateResource(dir, func(st *resState) error {
		if token <= st.Token {
			st.Rejected++
			stale = fmt.Errorf("%w: token %d, newest %d", errStale, token, st.Token)
			return nil
		}
		st.Token, st.Writer = token, pid
		st.Writes++
		st.Counter++
		return nil
	})
	if err != nil {
		return err
	}
	return stale
}
