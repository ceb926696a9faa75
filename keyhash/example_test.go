package keyhash_test

import (
	"errors"
	"fmt"

	"github.com/lockkit/lockkit"
	"github.com/lockkit/lockkit/keyhash"
)

func ExampleName() {
	k := keyhash.Name("nightly-report")
	fmt.Println(k == keyhash.Int64(keyhash.HashName("nightly-report")))
	fmt.Println(keyhash.Name("orders:42"))
	fmt.Println(keyhash.NamespacedName("billing", "nightly-report"))
	// Output:
	// true
	// -8476019149258318077
	// 8192123173007030350
}

func ExampleRecord() {
	k, err := keyhash.Record(7, 42)
	fmt.Println(k, err)

	table, record, _ := keyhash.Unpack(k)
	fmt.Println(table, record)

	_, err = keyhash.Record(7, 1_000_000)
	fmt.Println(errors.Is(err, lockkit.ErrInvalid))
	// Output:
	// 7000042 <nil>
	// 7 42
	// true
}

func ExamplePacker() {
	p := keyhash.Packer{Base: 1 << 32}
	k, err := p.Pack(3, 12345)
	fmt.Println(k, err)
	// Output:
	// 12884914233 <nil>
}

func ExamplePairRecord() {
	k, _ := keyhash.PairRecord(7, 42)
	fmt.Println(k, k.IsPair())
	// Output:
	// (7,42) true
}

func ExampleValidateName() {
	fmt.Println(keyhash.ValidateName("orders:42"))
	fmt.Println(keyhash.ValidateName(""))
	// Output:
	// <nil>
	// lockkit: invalid argument: keyhash: empty lock name
}

func ExampleNameKeySQL() {
	// From psql, or any SQL client, this takes the same lock as a Go program
	// locking keyhash.Name("nightly-report"):
	fmt.Println("SELECT pg_advisory_lock(" + keyhash.NameKeySQL + ")")
	// Output:
	// SELECT pg_advisory_lock(('x' || left(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 16))::bit(64)::bigint)
}

func ExampleMigratePostgresLockID() {
	// The key golang-migrate's postgres driver locks for database "test",
	// schema "public", table "schema_migrations" (WithInstance)...
	fmt.Println(keyhash.MigratePostgresLockID("test", "public", ""))
	// ...and when it was opened by URL, postgres://host/test, which makes
	// the database name "/test".
	fmt.Println(keyhash.MigratePostgresLockID("/test", "public", ""))
	// Output:
	// 2151868736
	// 912609358
}

func ExampleDescribe() {
	tool, detail, ok := keyhash.Describe(keyhash.Int64(2151868736), keyhash.MigrateTarget{Database: "test"})
	fmt.Println(tool, ok)
	fmt.Println(detail)
	tool, detail, ok = keyhash.Describe(keyhash.Goose())
	fmt.Println(tool, detail, ok)
	// Output:
	// golang-migrate true
	// migrations of database "test", table "public"."schema_migrations"
	// goose goose migration lock true
}

func Example_otherTools() {
	fmt.Println(keyhash.Goose())                                   // goose v3.26.0 and later
	fmt.Println(keyhash.WithAdvisoryLock("deploy", 0))             // Rails with_advisory_lock, PostgreSQL
	fmt.Println(keyhash.WithAdvisoryLockMySQL("myapp_", "deploy")) // with_advisory_lock, MySQL GET_LOCK
	fmt.Println(keyhash.DjangoPGLocksV1("deploy"))                 // django-pglocks 1.x
	fmt.Println(keyhash.Symfony("deploy"))                         // Symfony Lock PostgreSqlStore
	// Output:
	// 4097083626
	// (305871098,0)
	// myapp_deploy
	// -1841612550
	// 2453354746
}
