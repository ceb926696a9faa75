package mysqllock_test

import (
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
	"github.com/lockkit/lockkit/mysqllock"
)

func TestDiagnoseServerInfo(t *testing.T) {
	db := integration.MySQL(t)
	ctx := ctxT(t, 30*time.Second)
	info, err := mysqllock.Diagnose(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version == "" || info.Galera || info.GroupReplication != "" || info.Vitess() {
		t.Errorf("Diagnose = %+v", info)
	}
	now, err := mysqllock.ServerTime(ctx, db)
	if err != nil || now.Sub(time.Now()).Abs() > time.Minute {
		t.Errorf("ServerTime = %v, %v", now, err)
	}
	max, used, err := mysqllock.Connections(ctx, db)
	if err != nil || max < 1 || used < 1 {
		t.Errorf("Connections = %d, %d, %v", max, used, err)
	}
}
