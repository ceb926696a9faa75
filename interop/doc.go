// Package interop holds lockkit's tests against other tools' own locks
// whose code lockkit does not otherwise need: goose's PostgreSQL session
// locker, River's leader election (Go modules), and the real tools of
// other ecosystems run as child processes: Rails migrations (Ruby;
// Debian's ruby-activerecord, ruby-pg and ruby-mysql2), node-pg-migrate,
// pg-boss and Knex (Node.js scripts in testdata/node, whose npm packages,
// pinned in its package.json, the first test installs into a cache
// directory: LOCKKIT_INTEROP_CACHE, else the user's cache directory).
//
// It is a module of its own, like bench, so that those tools stay out of
// lockkit's go.mod and so out of the builds of lockkit's users. Its tests
// take their servers from package integration: set LOCKKIT_TEST_POSTGRES
// (and LOCKKIT_TEST_MYSQL for Rails on MySQL). A tool that cannot be had
// here (no node, npm install failing, no ActiveRecord) skips its test, or
// fails it under LOCKKIT_TEST_REQUIRE=1.
package interop
