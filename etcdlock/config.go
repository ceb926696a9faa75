package etcdlock

import (
	"cmp"
	"encoding/json"
	"os"
	"strings"
	"time"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/internal/invalid"
)

// Defaults and limits.
const (
	// DefaultPrefix is the key prefix when Config.Prefix is empty.
	DefaultPrefix = "lockkit/"

	// DefaultTTL is the lease when Config.TTL is zero.
	DefaultTTL = 30 * time.Second

	// MaxPrefixLen is the longest key prefix accepted, in bytes.
	MaxPrefixLen = 256

	// MaxHolderLen is the longest Owner or Data accepted, in bytes.
	MaxHolderLen = 1024
)

// Config configures a [Locker]. The zero value, and a nil *Config, give a
// 30-second lease renewed every 10 seconds under the "lockkit/" prefix.
type Config struct {
	// Prefix is prepended to every key. Empty means DefaultPrefix.
	// Lockers that should exclude each other must use the same prefix;
	// it should end in "/" so that listing one prefix does not list
	// another.
	Prefix string

	// TTL is the Locker's lease: how long its locks outlive a holder that
	// stops renewing (a crashed or paused process, a cut network). etcd
	// counts leases in whole seconds, so it is rounded up to one; zero
	// means DefaultTTL. The server may grant more than asked (etcd's
	// minimum is 1.5 election timeouts), and then the granted TTL is used.
	TTL time.Duration

	// RenewInterval is how often the lease is renewed. Zero means TTL/3.
	// It must be positive and at most TTL/2, so that a keepalive can fail
	// once and be retried before the lease runs out.
	RenewInterval time.Duration

	// Owner names the holder in conflict errors and status output, such as
	// a service or user name. Optional; at most MaxHolderLen bytes.
	Owner string

	// Data is free-form holder metadata shown with the owner. Optional; at
	// most MaxHolderLen bytes.
	Data string

	// Telemetry says where the Locker's metrics, spans and logs go; nil
	// means OpenTelemetry's global providers and no logs. See
	// [lockkit.Telemetry]. The renewals counted are the keepalives of the
	// Locker's one lease, which all its locks share, so they carry no lock
	// name.
	Telemetry *lockkit.Telemetry
}

// settings are a validated Config.
type settings struct {
	prefix     string
	ttl        time.Duration // whole seconds
	renewEvery time.Duration
	owner      string
	host       string
	pid        int
	data       string
	tel        *lockkit.Telemetry
}

func (c *Config) settings() (settings, error) {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	s := settings{
		prefix: cmp.Or(cfg.Prefix, DefaultPrefix),
		ttl:    cmp.Or(cfg.TTL, DefaultTTL),
		owner:  cfg.Owner,
		data:   cfg.Data,
		tel:    cfg.Telemetry,
		pid:    os.Getpid(),
	}
	s.host, _ = os.Hostname()
	if len(s.prefix) > MaxPrefixLen {
		return s, invalid.Errorf("etcdlock: prefix is %d bytes, more than %d", len(s.prefix), MaxPrefixLen)
	}
	if strings.IndexByte(s.prefix, 0) >= 0 {
		return s, invalid.Errorf("etcdlock: prefix %q contains a NUL byte", s.prefix)
	}
	if s.ttl <= 0 {
		return s, invalid.Errorf("etcdlock: TTL %v is not positive", s.ttl)
	}
	s.ttl = (s.ttl + time.Second - 1).Truncate(time.Second)
	s.renewEvery = cmp.Or(cfg.RenewInterval, s.ttl/3)
	if s.renewEvery <= 0 || s.renewEvery > s.ttl/2 {
		return s, invalid.Errorf("etcdlock: RenewInterval %v must be positive and at most half the TTL %v", cfg.RenewInterval, s.ttl)
	}
	if len(cfg.Owner) > MaxHolderLen || len(cfg.Data) > MaxHolderLen {
		return s, invalid.Errorf("etcdlock: Owner and Data must be at most %d bytes", MaxHolderLen)
	}
	return s, nil
}

// holderJSON is the value of a lock key: who asked for the lock, and since
// when (Unix milliseconds on the holder's clock).
type holderJSON struct {
	Owner string `json:"owner,omitempty"`
	Host  string `json:"host,omitempty"`
	PID   int    `json:"pid,omitempty"`
	Data  string `json:"data,omitempty"`
	Since int64  `json:"since,omitempty"`
}

// value renders the key's value for an acquire at since.
func (s *settings) value(since time.Time) string {
	b, _ := json.Marshal(holderJSON{Owner: s.owner, Host: s.host, PID: s.pid, Data: s.data, Since: since.UnixMilli()})
	return string(b)
}

// decodeHolder reads a key's value; a value lockkit did not write gives a
// Holder with the token alone.
func decodeHolder(value []byte, token int64) lockkit.Holder {
	h := lockkit.Holder{Token: token}
	var j holderJSON
	if json.Unmarshal(value, &j) == nil {
		h.Owner, h.Host, h.PID, h.Data = j.Owner, j.Host, j.PID, j.Data
		if j.Since != 0 {
			h.Since = time.UnixMilli(j.Since)
		}
	}
	return h
}
