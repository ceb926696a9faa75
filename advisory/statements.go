package advisory

// KeysSQL holds the statements a [Locker] sends for a session lock on
// several keys at once ([Locker.TryLockKeys], [Locker.LockKeys]) and for
// its release, on a connection known to reach its own server session (a
// direct connection; the first statement on a connection also looks in
// pg_locks, see the package documentation, Poolers and look-alike servers).
// It is for tools that must send exactly what lockkit sends, such as a
// benchmark's floor. A lock taken with them is not a [Lock]: the caller
// reads the rows and makes the checks a Locker makes.
//
// The keys are bound as three arrays, in the order keyhash.Compare sorts
// them, without duplicates: the bigint keys (bigint[]), then the two
// halves of the pair keys (two integer[] of equal length, see
// keyhash.Key.Pair). Every statement takes one round trip and returns one
// row per key.
type KeysSQL struct {
	// Try takes every key or none (pg_try_advisory_lock, or _shared).
	// Args: $1 the holder id (text), $2 the bigint keys, $3 and $4 the
	// pair halves. It takes no key when the session's marker (the custom
	// setting lockkit.holder) is not empty, and sets the marker to $1 when
	// every key was granted. Columns: prev (text: the marker before, NULL
	// when none), pid (integer: the server session's), why (integer: 0,
	// or 1 when the marker was not empty and nothing was tried), pair
	// (boolean: the row is a pair key), k (bigint), a, b (integer), r
	// (boolean: granted; NULL when why is not 0), undone (boolean: when
	// not every key was granted, whether the unlock of this granted key
	// returned true; else NULL), marked (boolean: the marker was set).
	Try string
	// Lock waits for every key in order (pg_advisory_lock, or _shared).
	// Args and columns as Try's; undone is always NULL.
	Lock string
	// Unlock gives back the keys Try or Lock took (pg_advisory_unlock, or
	// _shared). Args: $1 the holder id, $2 the pid the lock's rows gave
	// (integer), $3, $4 and $5 the keys as for Try. It unlocks only when
	// the marker is $1 and the session's pid is $2, then clears the
	// marker if every unlock returned true. Columns: prev (text), pid
	// (integer), mine (boolean: the marker and pid matched), pair, k, a, b,
	// r (boolean: the unlock's result; NULL when not mine), cleared
	// (boolean: every unlock returned true and the marker was cleared).
	Unlock string
}

// KeysStatements returns the statements of [KeysSQL] for mode m. A mode
// other than Exclusive and Shared gives an error matching
// lockkit.ErrInvalid.
func KeysStatements(m Mode) (KeysSQL, error) {
	m, err := (&Options{Mode: m}).check()
	if err != nil {
		return KeysSQL{}, err
	}
	return KeysSQL{
		Try:    sessionLockSQL[0][fnTry][m][shapeMulti],
		Lock:   sessionLockSQL[0][fnLock][m][shapeMulti],
		Unlock: sessionUnlockSQL[m][shapeMulti],
	}, nil
}
