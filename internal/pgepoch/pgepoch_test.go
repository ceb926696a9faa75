package pgepoch

import (
	"strconv"
	"strings"
	"testing"
)

func TestSQLShift(t *testing.T) {
	if !strings.HasSuffix(SQL, ", "+strconv.Itoa(Shift)+")") {
		t.Errorf("SQL does not shift by Shift (%d): %s", Shift, SQL)
	}
	if got := Timeline(3<<Shift + 12345); got != 3 {
		t.Errorf("Timeline = %d, want 3", got)
	}
}
