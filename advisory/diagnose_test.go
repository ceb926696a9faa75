package advisory

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lockkit/lockkit/integration"
)

func TestDiagnoseServerInfo(t *testing.T) {
	db := pgAdmin(t)
	ctx := pgCtx(t, 30*time.Second)
	info, err := ServerVersion(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != KindPostgres || !strings.HasPrefix(info.Version, "PostgreSQL") || info.VersionNum < 100000 {
		t.Errorf("ServerVersion = %+v", info)
	}
	now, err := ServerTime(ctx, db)
	if err != nil || now.Sub(time.Now()).Abs() > time.Minute {
		t.Errorf("ServerTime = %v, %v", now, err)
	}
	max, reserved, used, err := Connections(ctx, db)
	if err != nil || max <= reserved || used < 1 {
		t.Errorf("Connections = %d, %d, %d, %v", max, reserved, used, err)
	}
}

func TestDiagnoseProbes(t *testing.T) {
	cfg, err := pgx.ParseConfig(integration.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := pgCtx(t, 30*time.Second)
	p, err := ProbePooler(ctx, cfg, "diagnose-test")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Direct || p.Shared || uint32(p.ServerPID) != p.ClientPID {
		t.Errorf("ProbePooler = %+v, want a direct connection", p)
	}
	n, err := ProbeNotify(ctx, cfg, "lockkit_diagnose_Test", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !n.Delivered || n.Listen != nil || n.Notify != nil {
		t.Errorf("ProbeNotify = %+v", n)
	}
}
