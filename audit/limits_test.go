package audit

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestSafeID(t *testing.T) {
	if got, rep := SafeID("abc"); got != "abc" || rep {
		t.Fatalf("SafeID(abc) = %q, %v", got, rep)
	}
	if got, rep := SafeID(""); got != "" || rep {
		t.Fatalf("SafeID('') = %q, %v", got, rep)
	}
	at := strings.Repeat("é", MaxIDBytes/2) // exactly 512 bytes
	if got, rep := SafeID(at); got != at || rep {
		t.Fatal("an id of exactly MaxIDBytes must be kept")
	}
	bad := strings.Repeat("\xff", 200)
	got, rep := SafeID(bad)
	if !rep || !strings.HasPrefix(got, "sha256-") || len(got) != 7+64 {
		t.Fatalf("invalid UTF-8 id: %q, %v", got, rep)
	}
	if again, _ := SafeID(bad); again != got {
		t.Fatal("the replacement must be deterministic")
	}
	if other, _ := SafeID(strings.Repeat("\xfe", 200)); other == got {
		t.Fatal("two different invalid ids must not collide")
	}
	if _, rep := SafeID(strings.Repeat("a", MaxIDBytes+1)); !rep {
		t.Fatal("an id over MaxIDBytes must be replaced")
	}
}

func TestCheckTime(t *testing.T) {
	for _, tc := range []struct {
		ns uint64
		ok bool
	}{
		{0, false}, {1, true}, {uint64(time.Date(2025, 8, 1, 0, 0, 0, 0, time.UTC).UnixNano()), true},
		{math.MaxInt64, true}, {1 << 63, false}, {math.MaxUint64, false},
	} {
		if err := CheckTimestamp(tc.ns); (err == nil) != tc.ok {
			t.Errorf("CheckTimestamp(%d) = %v", tc.ns, err)
		}
	}
	if CheckTime(time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)) == nil {
		t.Error("a time before 1970 must be refused")
	}
	if CheckTime(MaxTime) != nil || CheckTime(MaxTime.Add(time.Nanosecond)) == nil {
		t.Error("MaxTime is the last storable instant")
	}
}
