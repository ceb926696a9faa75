package mysqllock

import (
	"context"
	"testing"
	"time"

	"github.com/lockkit/lockkit/integration"
)

func TestDiagnoseGlobalVariable(t *testing.T) {
	db := integration.MySQL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if v := globalVariable(ctx, db, "max_connections"); v == "" {
		t.Error("max_connections reads empty")
	}
	if v := globalVariable(ctx, db, "lockkit_no_such_variable"); v != "" {
		t.Errorf("an unknown variable reads %q", v)
	}
}
