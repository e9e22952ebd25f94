package seal

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestRefsRoundTrip(t *testing.T) {
	var r refs
	ids := []string{
		"0b5f2a9e-3c41-4d7a-9f1e-2a6b8c0d4e5f", // canonical: compact
		"0B5F2A9E-3C41-4D7A-9F1E-2A6B8C0D4E5F", // uppercase: as it is, so it comes back the same
		"~0b5f2a9e3c414d7a9f1e2a", "~~x", "~", "", "evt-1", "0b5f2a9e-3c41-4d7a-9f1e-2a6b8c0d4e5", "0b5f2a9e+3c41-4d7a-9f1e-2a6b8c0d4e5f",
	}
	seqs := []int64{7, 9, 3, 1 << 40, 0, 12, 13, 14, 20}
	for i, id := range ids {
		r.add([]string{"a", "b"}[i%2], seqs[i], id)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"id":["~C18qnjxBTXqfHiprjA1OXw","0B5F2A9E-`) {
		t.Errorf("the canonical UUID is not stored compact: %s", b)
	}
	var back refs
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.ID, r.ID) || !slices.Equal(back.Seq, r.Seq) || !slices.Equal(back.P, r.P) || !slices.Equal(back.Parts, r.Parts) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, r)
	}
}

func TestRefsRefuseABadCompactID(t *testing.T) {
	for _, c := range []string{`"~abc"`, `"~!!!!!!!!!!!!!!!!!!!!!!"`} {
		var r refs
		if err := json.Unmarshal([]byte(`{"parts":["a"],"p":[0],"seq_delta":[1],"id":[`+c+`]}`), &r); err == nil {
			t.Errorf("%s: read as %q", c, r.ID)
		}
	}
}

// FuzzCompactID: every id comes back from its stored form as it was.
func FuzzCompactID(f *testing.F) {
	for _, s := range []string{"0b5f2a9e-3c41-4d7a-9f1e-2a6b8c0d4e5f", "~", "~~", "~C18qnjxBTXqfHiprjA1OXw", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		back, err := expandID(compactID(id))
		if err != nil || back != id {
			t.Fatalf("%q came back as %q (%v)", id, back, err)
		}
		_, _ = expandID(id) // any stored string: an error or an id, no panic
	})
}
