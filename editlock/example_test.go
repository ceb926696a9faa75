package editlock_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strconv"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/editlock"
	"github.com/lockkit/lockkit/migrations"
)

// sessionUser stands for the application's own session lookup.
func sessionUser(r *http.Request) (id, name string, ok bool) {
	c, err := r.Cookie("session")
	if err != nil {
		return "", "", false
	}
	return c.Value, c.Value, true
}

// Edit locks for products: mount the Manager, include its script on the
// edit page, and guard the save with Check.
func Example() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if err := migrations.Up(ctx, db, migrations.Postgres, nil); err != nil {
		log.Fatal(err)
	}
	locks, err := editlock.New(db, &editlock.Config{
		Kind: "products",
		Identify: func(r *http.Request) (editlock.User, bool) {
			id, name, ok := sessionUser(r)
			return editlock.User{ID: id, Name: name}, ok
		},
		Window:    2 * time.Minute,  // a silent page gives the record up after this
		Heartbeat: 15 * time.Second, // how often the page renews its lock
		OnTakeOver: func(ctx context.Context, t editlock.TakeOver) {
			log.Printf("%s took product %s over from %s: %q", t.By.ID, t.Record, t.FromID, t.Reason)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer locks.Close()

	mux := http.NewServeMux()
	mux.Handle("/edit-locks/products/", locks)
	mux.HandleFunc("GET /products/{id}/edit", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		// The script takes the lock, beats, shows the banner and puts
		// the fencing token into the hidden field editlock_token.
		fmt.Fprintf(w, `<form method="post" action="/products/%[1]d"
  data-editlock="/edit-locks/products/" data-editlock-record="%[1]d">
  <input name="title"> <button>Save</button>
</form>
<script src="/edit-locks/products/editlock.js"></script>`, id)
	})
	mux.HandleFunc("POST /products/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		token, _ := strconv.ParseInt(r.FormValue(editlock.TokenField), 10, 64)
		lease, err := locks.Check(r, id, token)
		var cause *editlock.LostCause
		switch {
		case errors.As(err, &cause) && cause.Holder != nil:
			http.Error(w, "Not saved: "+cause.Holder.Name+" is editing this product now.", http.StatusConflict)
			return
		case errors.Is(err, lockkit.ErrLost):
			http.Error(w, "Not saved: your edit lock expired.", http.StatusConflict)
			return
		case err != nil:
			http.Error(w, "Not saved.", http.StatusBadRequest)
			return
		}
		// Fence the write with the token too: a newer holder's write is
		// never overwritten by an older one's.
		_, err = db.ExecContext(r.Context(),
			`UPDATE products SET title = $1, lock_token = $2 WHERE id = $3 AND lock_token <= $2`,
			r.FormValue("title"), lease.Token(), id)
		if err != nil {
			http.Error(w, "Not saved.", http.StatusInternalServerError)
			return
		}
		_ = lease.Release(r.Context()) // editing ends with the save
		http.Redirect(w, r, "/products", http.StatusSeeOther)
	})
	// CrossOriginProtection for the app's own forms too.
	log.Fatal(http.ListenAndServe("localhost:8080", http.NewCrossOriginProtection().Handler(mux)))
}

// A list page shows who is editing each record.
func ExampleManager_Status() {
	var locks *editlock.Manager // from editlock.New
	var r *http.Request         // the list page's request
	for _, id := range []string{"1", "2", "3"} {
		h, err := locks.Status(r.Context(), editlock.User{}, id)
		if err != nil {
			log.Fatal(err)
		}
		if h != nil {
			fmt.Printf("product %s: %s is editing since %s\n", id, h.Name, h.Since.Local().Format("15:04"))
		}
	}
}
