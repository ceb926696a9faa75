package migrations_test

import (
	"testing"
	"time"

	"github.com/lockkit/lockkit/migrations"
)

func TestDiagnoseLatest(t *testing.T) {
	for _, d := range dialects {
		if v := migrations.Latest(d); v < 1 {
			t.Errorf("Latest(%s) = %d", d, v)
		}
	}
	if v := migrations.Latest("oracle"); v != 0 {
		t.Errorf("Latest(oracle) = %d", v)
	}
}

func TestDiagnoseInspect(t *testing.T) {
	for _, d := range dialects {
		t.Run(string(d), func(t *testing.T) {
			db := isolated(t, d)()
			ctx := ctxT(t, time.Minute)
			st, err := migrations.Inspect(ctx, db, d)
			if err != nil || st != (migrations.State{}) {
				t.Fatalf("before Up: %+v, %v", st, err)
			}
			if err := migrations.Up(ctx, db, d, nil); err != nil {
				t.Fatal(err)
			}
			st, err = migrations.Inspect(ctx, db, d)
			want := migrations.State{Table: true, History: true, Applied: true, Version: migrations.Latest(d)}
			if err != nil || st != want {
				t.Fatalf("after Up: %+v, %v; want %+v", st, err, want)
			}
		})
	}
}
