package migrations

// SessionLock exposes the migrators' session lock to the tests.
var SessionLock = sessionLock
