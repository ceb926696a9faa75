package filelock

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/lockkit/lockkit"
)

const (
	// maxRecordName is how much of a lock name the holder record keeps.
	maxRecordName = 512
	// maxRecordMeta bounds Config.Owner, App and Data together.
	maxRecordMeta = 1024
	// maxHolderInfo bounds how much of a lock file a conflict reads: a
	// record with every field at its limit and every byte escaped.
	maxHolderInfo = 6*(maxRecordName+maxRecordMeta) + 1024
)

// holderRecord is the JSON object an exclusive holder writes into its lock
// file, one line:
//
//	{"pid":4121,"host":"web-3","owner":"alice","app":"backup","since":"2026-01-02T10:02:11.123456789Z","name":"nightly"}
type holderRecord struct {
	Token int64     `json:"token,omitempty"` // first, with Config.Fencing
	PID   int       `json:"pid"`
	Host  string    `json:"host"`
	Owner string    `json:"owner,omitempty"`
	App   string    `json:"app,omitempty"`
	Data  string    `json:"data,omitempty"`
	Since time.Time `json:"since"`
	Name  string    `json:"name"`
}

// recordPrefix renders the part of the record that is the same for every
// lock a Locker takes, up to and including `"since":"`.
func recordPrefix(pid int, host, owner, app, data string) []byte {
	b := []byte(`{"pid":`)
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, host)
	if owner != "" {
		b = append(b, `,"owner":`...)
		b = appendJSONString(b, owner)
	}
	if app != "" {
		b = append(b, `,"app":`...)
		b = appendJSONString(b, app)
	}
	if data != "" {
		b = append(b, `,"data":`...)
		b = appendJSONString(b, data)
	}
	return append(b, `,"since":"`...)
}

// appendRecord completes a record started by recordPrefix.
func appendRecord(b, prefix []byte, since time.Time, name string) []byte {
	b = append(b, prefix...)
	b = since.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","name":`...)
	if len(name) > maxRecordName {
		cut := maxRecordName
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut] + "…"
	}
	b = appendJSONString(b, name)
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// parseHolder reads the holder record at the start of a lock file's
// content. The content may be empty or cleared (its first byte overwritten;
// no exclusive holder now), stale (left by a holder that was killed) or
// caught half-written; parseHolder returns nil for anything it cannot read
// as a record. Bytes after the first JSON value are ignored: a new record is
// written over an old, longer one, and the file is never cut.
// It also returns the lock name the record holds.
func parseHolder(content []byte) (*lockkit.Holder, string) {
	content = bytes.TrimLeft(content, " \t\r\n")
	if len(content) == 0 || content[0] != '{' {
		return nil, ""
	}
	var rec holderRecord
	if err := json.NewDecoder(bytes.NewReader(content)).Decode(&rec); err != nil {
		return nil, ""
	}
	if rec.PID == 0 && rec.Host == "" && rec.Since.IsZero() {
		return nil, ""
	}
	return &lockkit.Holder{
		Owner: rec.Owner,
		Host:  rec.Host,
		PID:   rec.PID,
		App:   rec.App,
		Since: rec.Since,
		Data:  rec.Data,
		Token: rec.Token,
	}, rec.Name
}

// tokenKey starts the record of a holder with a fencing token, after its
// '{' (or the ' ' that clears it).
const tokenKey = `"token":`

// parseToken reads the fencing token of the record at the start of a lock
// file's content, cleared or not: the counter of Config.Fencing. It is 0
// when there is none (a new file, or a record written without fencing).
func parseToken(content []byte) int64 {
	if len(content) < 1+len(tokenKey) || content[0] != '{' && content[0] != ' ' {
		return 0
	}
	digits, ok := bytes.CutPrefix(content[1:], []byte(tokenKey))
	if !ok {
		return 0
	}
	end := bytes.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		return 0 // cut short: not a record this package wrote
	}
	t, err := strconv.ParseInt(string(digits[:end]), 10, 64)
	if err != nil || t < 0 {
		return 0
	}
	return t
}

// nextToken is the token after last: one more, or the clock in
// microseconds when that is larger, so that tokens keep increasing when the
// counter was lost (the file removed, or overwritten by a holder without
// fencing), as long as the clock is not set back. While the counter is
// kept, a clock set back does not matter.
func nextToken(last int64, now time.Time) int64 {
	return max(last+1, now.UnixMicro())
}
