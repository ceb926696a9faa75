package rowlock

// Statements returns the acquire and release statements of a dialect, so
// that benchmarks can run the very same SQL through the raw driver.
func Statements(d Dialect, table string) (acquire, release string) {
	q := newStatements(d, quote(d, table))
	return q.acquire, q.release
}

func quote(d Dialect, table string) string {
	if d == Postgres {
		return `"` + table + `"`
	}
	return "`" + table + "`"
}
