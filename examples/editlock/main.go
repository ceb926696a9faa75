// Command editlock is lockkit's edit-lock example: a small CRUD app on
// PostgreSQL where a record being edited by Alice shows "Alice is editing
// since 10:02" to Bob, who may take over.
//
//	go run ./examples/editlock
//
// then open http://localhost:8080 as two users (two browsers, or a private
// window). Flags: -db (default $DATABASE_URL, else the local test
// database), -addr, -window, -heartbeat.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/lockkit/lockkit/examples/editlock/app"
)

func main() {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	flag.StringVar(&dsn, "db", dsn, "PostgreSQL connection string")
	addr := flag.String("addr", "localhost:8080", "listen address")
	window := flag.Duration("window", 30*time.Second, "how long an edit lock outlives its page's last heartbeat")
	heartbeat := flag.Duration("heartbeat", 5*time.Second, "how often an edit page renews its lock")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	a, err := app.New(ctx, db, app.Config{Window: *window, Heartbeat: *heartbeat})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	srv := &http.Server{Addr: *addr, Handler: a, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	slog.Info("edit-lock example listening", "url", "http://"+*addr, "window", *window, "heartbeat", *heartbeat)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
