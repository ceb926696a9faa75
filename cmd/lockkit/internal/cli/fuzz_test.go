package cli_test

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lockkit/lockkit/cmd/lockkit/internal/cli"
)

// FuzzCLIBackendURL: whatever the user, password and database in a backend
// URL, lockkit's output never carries the password — not when the URL is
// malformed, not in the drivers' connection errors. The host is always a
// refused local port, so no input reaches the network.
func FuzzCLIBackendURL(f *testing.F) {
	f.Add("postgres", "u", "S3CRET", "db")
	f.Add("mysql", "root", "p@ss:w/rd S3CRET", "test")
	f.Add("redis", "", "S3CRET%zz", "0")
	f.Add("postgresql", "u:x", "S3CRET'\"", "d b")
	f.Add("redis", "default", "S3CRET\n", "")
	f.Fuzz(func(t *testing.T, scheme, user, password, db string) {
		switch scheme {
		case "postgres", "postgresql", "mysql", "redis":
		default:
			return
		}
		// A password the output could contain for another reason (the
		// user name, a fixed word) proves nothing.
		if len(password) < 6 || strings.ContainsAny(password, "\x00") || strings.Contains(user, password) ||
			strings.Contains(db, password) || strings.Contains("lockkit: cannot reach the database connection refused 127.0.0.1", password) {
			return
		}
		u := url.URL{Scheme: scheme, User: url.UserPassword(user, password), Host: "127.0.0.1:1", Path: "/" + db}
		raw := u.String()
		for _, args := range [][]string{{"status", "-b", raw}, {"run", "--no-wait", "-b", raw, "n", "--", "true"}} {
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			code := (&cli.Program{Stdout: &out, Stderr: &out, Env: []string{"HOME=" + t.TempDir()}}).Main(ctx, args)
			cancel()
			if code == 0 {
				t.Fatalf("lockkit %q succeeded against a refused port", args)
			}
			for _, form := range []string{password, url.QueryEscape(password), url.PathEscape(password)} {
				if len(form) >= 6 && strings.Contains(out.String(), form) {
					t.Fatalf("lockkit %q printed the password (%q):\n%s", args, form, out.String())
				}
			}
		}
	})
}
