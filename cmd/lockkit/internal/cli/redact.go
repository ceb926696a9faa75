package cli

import (
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// redacted replaces a secret in everything lockkit prints.
const redacted = "xxxxx"

// scrubber removes secrets (a backend URL's password, in every spelling it
// may take) from text. The zero value scrubs nothing until secrets are
// added.
type scrubber struct {
	mu      sync.Mutex
	secrets []string // longest first
}

// add registers a secret, with its URL-escaped spellings.
func (s *scrubber) add(secret string) {
	if secret == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The password as given, and as a URL's userinfo, path or query
	// would escape it (url.UserPassword renders ":escaped").
	userinfo := strings.TrimPrefix(url.UserPassword("", secret).String(), ":")
	for _, v := range []string{secret, userinfo, url.PathEscape(secret), url.QueryEscape(secret)} {
		if v == "" || v == redacted {
			continue
		}
		dup := false
		for _, have := range s.secrets {
			if have == v {
				dup = true
			}
		}
		if !dup {
			s.secrets = append(s.secrets, v)
		}
	}
	sort.Slice(s.secrets, func(i, j int) bool { return len(s.secrets[i]) > len(s.secrets[j]) })
}

// String returns text with every secret replaced.
func (s *scrubber) String(text string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sec := range s.secrets {
		text = strings.ReplaceAll(text, sec, redacted)
	}
	return text
}

// writer returns a writer that scrubs each write before passing it to w.
// lockkit writes each message with one call, so a secret is never split
// across writes.
func (s *scrubber) writer(w io.Writer) io.Writer { return &scrubWriter{s: s, w: w} }

type scrubWriter struct {
	s *scrubber
	w io.Writer
}

func (sw *scrubWriter) Write(p []byte) (int, error) {
	clean := sw.s.String(string(p))
	if _, err := io.WriteString(sw.w, clean); err != nil {
		return 0, err
	}
	return len(p), nil
}

// passwordParams are the query parameters drivers accept a password in.
var passwordParams = []string{"password", "pass", "passwd", "pwd", "sslpassword"}

// redactURL renders u with its password, and any password query parameter,
// replaced by "xxxxx".
func redactURL(u *url.URL) string {
	c := *u
	if c.User != nil {
		if _, has := c.User.Password(); has {
			c.User = url.UserPassword(c.User.Username(), redacted)
		}
	}
	if c.RawQuery != "" {
		q := c.Query()
		changed := false
		for k := range q {
			if isPasswordParam(k) {
				q.Set(k, redacted)
				changed = true
			}
		}
		if changed {
			c.RawQuery = q.Encode()
		}
	}
	return c.String()
}

func isPasswordParam(k string) bool {
	for _, p := range passwordParams {
		if strings.EqualFold(k, p) {
			return true
		}
	}
	return false
}

// urlSecrets returns the secrets in u: the password, and the values of
// password query parameters.
func urlSecrets(u *url.URL) []string {
	var out []string
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			out = append(out, p)
		}
	}
	for k, vs := range u.Query() {
		if isPasswordParam(k) {
			out = append(out, vs...)
		}
	}
	return out
}
