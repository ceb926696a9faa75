package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/etcdlock"
)

// etcdBackend is an etcd cluster.
type etcdBackend struct {
	c      *clientv3.Client
	prefix string
	el     *etcdlock.Locker // made by locker; closed by close
}

// etcdPrefix is the key prefix a backend URL's path names: "/PREFIX" gives
// "PREFIX/", and no path etcdlock.DefaultPrefix.
func etcdPrefix(path string) string {
	p := strings.Trim(path, "/")
	if p == "" {
		return etcdlock.DefaultPrefix
	}
	return p + "/"
}

// etcdTLS builds the TLS configuration of an etcds:// URL from its cacert,
// cert and key parameters; the system's roots without cacert.
func etcdTLS(b *backendURL) (*tls.Config, error) {
	q := b.u.Query()
	for k := range q {
		switch k {
		case "cacert", "cert", "key":
		default:
			return nil, usagef("%s: unknown parameter %q: etcd URLs take cacert, cert and key (with etcds://)", b.display, k)
		}
	}
	if !strings.EqualFold(b.u.Scheme, "etcds") {
		if len(q) > 0 {
			return nil, usagef("%s: cacert, cert and key need etcds://", b.display)
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := q.Get("cacert"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("etcd CA certificate: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA certificate %s: no PEM certificate in it", ca)
		}
	}
	cert, key := q.Get("cert"), q.Get("key")
	if (cert == "") != (key == "") {
		return nil, usagef("%s: cert and key go together", b.display)
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func openEtcd(ctx context.Context, e *env, b *backendURL) (backend, error) {
	tlsCfg, err := etcdTLS(b)
	if err != nil {
		return nil, err
	}
	var endpoints []string
	for _, h := range strings.Split(b.u.Host, ",") {
		if h = strings.TrimSpace(h); h != "" {
			if !strings.Contains(h, ":") {
				h += ":2379"
			}
			endpoints = append(endpoints, h)
		}
	}
	cfg := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: pingTimeout,
		TLS:         tlsCfg,
		// The client logs reconnects with addresses to stderr, past
		// lockkit's scrubbed output; lockkit reports errors itself.
		Logger: zap.NewNop(),
	}
	if u := b.u.User; u != nil {
		cfg.Username = u.Username()
		cfg.Password, _ = u.Password()
		e.scrub.add(cfg.Password)
	}
	// The client retries reads on an unreachable endpoint until the
	// deadline: find out first whether any endpoint takes a connection.
	if err := dialAny(ctx, endpoints); err != nil {
		return nil, fmt.Errorf("cannot reach etcd: %w", err)
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot reach etcd: %w", err)
	}
	prefix := etcdPrefix(b.u.Path)
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := c.Get(pctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		_ = c.Close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("cannot reach etcd: %w", err)
	}
	return &etcdBackend{c: c, prefix: prefix}, nil
}

// dialAny reports whether any endpoint accepts a TCP connection within 5s.
func dialAny(ctx context.Context, endpoints []string) error {
	var errs []error
	for _, ep := range endpoints {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", ep)
		cancel()
		if err == nil {
			_ = conn.Close()
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// close closes the Locker first, which revokes its lease: a lock that an
// acquire abandoned by --wait or a signal may have left goes with it.
func (r *etcdBackend) close() error {
	if r.el != nil {
		_ = r.el.Close()
	}
	return r.c.Close()
}

// locker returns an etcd locker with a lease of --ttl
// (etcdlock.DefaultTTL without it); its tokens are the keys' create
// revisions (LOCKKIT_TOKEN).
func (r *etcdBackend) locker(opts lockOptions) (lockkit.Locker, error) {
	l, err := etcdlock.New(r.c, &etcdlock.Config{Prefix: r.prefix, TTL: opts.ttl, Owner: opts.owner})
	if err != nil {
		return nil, err
	}
	r.el = l
	return l, nil
}

// lister returns an etcd locker on the URL's prefix for status; close
// closes it.
func (r *etcdBackend) lister(bool) (lockkit.Lister, error) {
	l, err := etcdlock.New(r.c, &etcdlock.Config{Prefix: r.prefix})
	if err != nil {
		return nil, err
	}
	r.el = l
	return l, nil
}
