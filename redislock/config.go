package redislock

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
	DefaultPrefix = "lockkit:"

	// DefaultTTL is the lease when Config.TTL is zero.
	DefaultTTL = 30 * time.Second

	// MaxNameLen is the longest lock name accepted, in bytes.
	MaxNameLen = 1024

	// MaxPrefixLen is the longest key prefix accepted, in bytes.
	MaxPrefixLen = 256

	// MaxHolderLen is the longest Owner or Data accepted, in bytes.
	MaxHolderLen = 1024
)

// Config configures a [Locker]. The zero value, and a nil *Config, give
// auto-renewed 30-second leases under the "lockkit:" prefix without fencing
// tokens.
type Config struct {
	// Prefix is prepended to every key and channel name. Empty means
	// DefaultPrefix. Lockers that should exclude each other must use the
	// same prefix. A prefix whose first "{" is followed by "}" is refused:
	// that empty Redis Cluster hash tag would scatter a name's keys over
	// slots. (A prefix with a tag such as "{app}:" puts every lock in one
	// slot, that tag's.)
	Prefix string

	// TTL is the lease: how long the lock outlives a holder that stops
	// renewing it (a crashed or paused process, a cut network). Zero means
	// DefaultTTL; it must be at least a millisecond and is rounded up to a
	// whole millisecond.
	TTL time.Duration

	// RenewInterval is how often a held lock's lease is renewed. Zero
	// means TTL/3. It must be positive and at most TTL/2, so that a renewal
	// can fail once and be retried before the lease runs out. It is also
	// the bound on how soon a lock whose key was deleted or overwritten
	// behind the holder's back is reported lost. Ignored with NoAutoRenew.
	RenewInterval time.Duration

	// NoAutoRenew turns automatic renewal off: the lease then ends TTL
	// after the acquire or the last successful [Lock.Renew], and the lock
	// is reported lost at that moment.
	NoAutoRenew bool

	// Fencing makes every acquire also issue a fencing token (Lock.Token),
	// strictly increasing per name, from a counter key next to the lock
	// key. The counter key has no expiry: it stays in Redis, one small key
	// per name, so that tokens keep increasing.
	Fencing bool

	// WaitReplicas, when positive, makes every acquire and every renewal
	// wait until that many replicas have acknowledged it (Redis WAIT, sent
	// in the same pipeline, on the same connection, as the script), so
	// that a failover to one of those replicas keeps the lock and its
	// fencing counter. An acquire that fewer replicas acknowledged within
	// WaitTimeout gives the lock back and fails with [ErrNotReplicated];
	// such a renewal does not extend the lease on the holder's side and is
	// retried. The client must be a *redis.Client (a Sentinel failover
	// client is one) or a *redis.ClusterClient. Zero means no waiting.
	// See the package documentation, Replicas and failover.
	WaitReplicas int

	// WaitTimeout bounds each WAIT of WaitReplicas. Zero means the
	// shortest of 1 s, TTL/4 and RenewInterval/2; it must be at most
	// TTL/2.
	WaitTimeout time.Duration

	// Owner names the holder in conflict errors and status output, such as
	// a service or user name. Optional; at most MaxHolderLen bytes.
	Owner string

	// Data is free-form holder metadata shown with the owner. Optional; at
	// most MaxHolderLen bytes.
	Data string

	// Telemetry says where the Locker's metrics, spans and logs go; nil
	// means OpenTelemetry's global providers and no logs. See
	// [lockkit.Telemetry].
	Telemetry *lockkit.Telemetry
}

// settings are a validated Config.
type settings struct {
	prefix     string
	ttl        time.Duration
	ttlMs      int64
	renewEvery time.Duration // 0: no automatic renewal
	fencing    bool
	waitN      int        // Config.WaitReplicas
	waitMs     int64      // Config.WaitTimeout in ms
	meta       string     // holder JSON
	holder     holderJSON // meta, decoded
	tel        *lockkit.Telemetry
}

// holderJSON is the holder part of a lock key's value.
type holderJSON struct {
	Owner string `json:"owner,omitempty"`
	Host  string `json:"host,omitempty"`
	PID   int    `json:"pid,omitempty"`
	Data  string `json:"data,omitempty"`
}

func (c *Config) settings() (settings, error) {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	s := settings{
		prefix:  cmp.Or(cfg.Prefix, DefaultPrefix),
		ttl:     cmp.Or(cfg.TTL, DefaultTTL),
		fencing: cfg.Fencing,
		tel:     cfg.Telemetry,
	}
	if len(s.prefix) > MaxPrefixLen {
		return s, invalid.Errorf("redislock: prefix is %d bytes, more than %d", len(s.prefix), MaxPrefixLen)
	}
	if i := strings.IndexByte(s.prefix, '{'); i >= 0 && strings.HasPrefix(s.prefix[i+1:], "}") {
		return s, invalid.Errorf("redislock: prefix %q holds an empty Redis Cluster hash tag ({}): a name's keys would not share a slot", s.prefix)
	}
	if s.ttl < time.Millisecond {
		return s, invalid.Errorf("redislock: TTL %v is not at least 1ms", s.ttl)
	}
	s.ttlMs = int64((s.ttl + time.Millisecond - 1) / time.Millisecond)
	s.ttl = time.Duration(s.ttlMs) * time.Millisecond
	if !cfg.NoAutoRenew {
		s.renewEvery = cmp.Or(cfg.RenewInterval, s.ttl/3)
		if s.renewEvery <= 0 || s.renewEvery > s.ttl/2 {
			return s, invalid.Errorf("redislock: RenewInterval %v must be positive and at most half the TTL %v", cfg.RenewInterval, s.ttl)
		}
	}
	if cfg.WaitReplicas < 0 {
		return s, invalid.Errorf("redislock: WaitReplicas %d is negative", cfg.WaitReplicas)
	}
	if cfg.WaitReplicas > 0 {
		def := min(time.Second, s.ttl/4)
		if s.renewEvery > 0 {
			def = min(def, s.renewEvery/2) // a renewal's WAIT ends within its interval
		}
		wait := cmp.Or(cfg.WaitTimeout, def)
		if wait < time.Millisecond || wait > s.ttl/2 {
			return s, invalid.Errorf("redislock: WaitTimeout %v must be at least 1ms and at most half the TTL %v", wait, s.ttl)
		}
		s.waitN, s.waitMs = cfg.WaitReplicas, wait.Milliseconds()
	}
	if len(cfg.Owner) > MaxHolderLen || len(cfg.Data) > MaxHolderLen {
		return s, invalid.Errorf("redislock: Owner and Data must be at most %d bytes", MaxHolderLen)
	}
	host, _ := os.Hostname()
	s.holder = holderJSON{Owner: cfg.Owner, Host: host, PID: os.Getpid(), Data: cfg.Data}
	meta, err := json.Marshal(s.holder)
	if err != nil {
		return s, invalid.Errorf("redislock: holder metadata: %v", err)
	}
	s.meta = string(meta)
	return s, nil
}
