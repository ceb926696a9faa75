package redislock

import (
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
)

func TestServerRoleAndInfo(t *testing.T) {
	c := integration.Redis(t)
	ctx := ctxT(t, 30*time.Second)
	r, err := ServerRole(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Primary() || r.Replica() || r.Master != "" || len(r.Reply) == 0 {
		t.Errorf("ServerRole = %+v, want a primary", r)
	}
	srv, err := Info(ctx, c, "server")
	if err != nil {
		t.Fatal(err)
	}
	if srv["redis_version"] == "" || srv["redis_mode"] == "" {
		t.Errorf("INFO server = %v", srv)
	}
}

func TestDecodeRole(t *testing.T) {
	r := decodeRole([]any{"slave", "10.0.0.1", int64(6379), "connected", int64(42)})
	if !r.Replica() || r.Master != "10.0.0.1:6379" {
		t.Errorf("replica: %+v", r)
	}
	r = decodeRole([]any{"master", int64(7), []any{[]any{"10.0.0.2", "6379", "7"}}})
	if !r.Primary() || r.Replicas != 1 {
		t.Errorf("primary: %+v", r)
	}
	if r := decodeRole(nil); r.Primary() || r.Replica() || r.Name != "" {
		t.Errorf("empty: %+v", r)
	}
}
