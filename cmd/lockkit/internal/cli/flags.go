package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// The flag layer: the standard flag package, with each flag registered
// under its short and long names (-b and --backend are one flag; the flag
// package accepts one or two dashes for either).

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are printed by parse, help by the command
	fs.Usage = func() {}
	return fs
}

func boolVar(fs *flag.FlagSet, p *bool, names ...string) {
	for _, n := range names {
		fs.BoolVar(p, n, *p, "")
	}
}

func stringVar(fs *flag.FlagSet, p *string, names ...string) {
	for _, n := range names {
		fs.StringVar(p, n, *p, "")
	}
}

func varFlag(fs *flag.FlagSet, v flag.Value, names ...string) {
	for _, n := range names {
		fs.Var(v, n, "")
	}
}

// durationValue is a flag.Value for a non-negative duration: a Go duration
// ("90s", "1m30s", "250ms") or a plain number of seconds ("10", "0.5"), as
// flock(1) and timeout(1) take it.
type durationValue struct {
	d   *time.Duration
	set *bool
}

func (v durationValue) String() string {
	if v.d == nil {
		return ""
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	if v.set != nil {
		*v.set = true
	}
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f > float64(1<<62)/float64(time.Second) {
			return 0, errors.New("duration out of range")
		}
		d = time.Duration(f * float64(time.Second))
	} else {
		var perr error
		d, perr = time.ParseDuration(s)
		if perr != nil {
			return 0, fmt.Errorf("%q is not a duration (use e.g. 30s, 5m, 1h30m or a number of seconds)", s)
		}
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// intValue is a flag.Value for an integer.
type intValue struct {
	p   *int
	set *bool
}

func (v intValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	*v.p = n
	if v.set != nil {
		*v.set = true
	}
	return nil
}

// exitCodeValue is a flag.Value for an exit status, 0 to 255.
type exitCodeValue struct{ p *int }

func (v exitCodeValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v exitCodeValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 255 {
		return fmt.Errorf("%q is not an exit status (0 to 255)", s)
	}
	*v.p = n
	return nil
}

// parse parses args into fs. On -h it prints usage on stdout; on a bad flag
// it prints the error and a hint on stderr. done reports that the command
// should return code at once.
func (e *env) parse(fs *flag.FlagSet, usage string, args []string) (code int, done bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(e.stdout, usage)
		return ExitOK, true
	default:
		return e.usageErr(usage, "%s", flagError(err)), true
	}
}

// flagError rewrites the flag package's messages to name flags the way
// the help does.
func flagError(err error) string {
	msg := err.Error()
	msg = strings.Replace(msg, "flag provided but not defined: ", "unknown flag ", 1)
	return msg
}

// parseInterspersed parses flags that may come before and after the first
// positional argument, up to "--" or the second positional argument:
// "run -n NAME -w 5s -- CMD". It returns the positional arguments: the
// first one, then everything after "--" or from the second one on.
func (e *env) parseInterspersed(fs *flag.FlagSet, usage string, args []string) (pos []string, code int, done bool) {
	if code, done := e.parse(fs, usage, args); done {
		return nil, code, true
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return nil, 0, false
	}
	first := rest[0]
	rest = rest[1:]
	// Flags after the first positional argument, up to "--" or the next
	// non-flag argument.
	if len(rest) > 0 && strings.HasPrefix(rest[0], "-") && rest[0] != "-" {
		if rest[0] == "--" {
			return append([]string{first}, rest[1:]...), 0, false
		}
		if code, done := e.parse(fs, usage, rest); done {
			return nil, code, true
		}
		rest = fs.Args()
	}
	return append([]string{first}, rest...), 0, false
}

// parseAll parses flags anywhere among the arguments, up to "--", and
// returns the positional arguments in order: "status a --json b".
func (e *env) parseAll(fs *flag.FlagSet, usage string, args []string) (pos []string, code int, done bool) {
	for {
		if code, done := e.parse(fs, usage, args); done {
			return nil, code, true
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), 0, false
		}
		if len(rest) == 0 {
			return pos, 0, false
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
