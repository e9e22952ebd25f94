package seal

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// BenchmarkLeaf is the sealer's work per event in Go: one stored document to its leaf hash.
func BenchmarkLeaf(b *testing.B) {
	src, err := os.ReadFile("../document/testdata/event.v3.json")
	if err != nil {
		b.Fatal(err)
	}
	h := esHit{ID: "191796:ev-1", Source: src}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := h.leaf(); err != nil {
			b.Fatal(err)
		}
	}
}

// A page decodes in one pass to the leaves that decoding each hit gives; a source that does not
// decode as a stored document leaves only its own hit unreadable.
func TestReadPage(t *testing.T) {
	src, err := os.ReadFile("../document/testdata/event.v3.json")
	if err != nil {
		t.Fatal(err)
	}
	hit := func(id string, seq int, source string) string {
		return fmt.Sprintf(`{"_index":"audit-x","_id":"191796:%s","_seq_no":%d,"_version":1,"_routing":"191796","_source":%s,"sort":[%d]}`, id, seq, source, seq)
	}
	v4 := `{"@timestamp":"2026-12-01T10:00:00.123Z","action":"user.login","team_id":"191796","actor":{"type":"user","id":"u1"},"metadata":{"n":1.50,"s":"\u00e9"}}`
	good := []string{hit("ev-1", 1, string(src)), hit("ev-2", 2, v4)}
	page := func(hits ...string) []byte {
		return []byte(`{"pit_id":"p2","hits":{"hits":[` + strings.Join(hits, ",") + `]}}`)
	}
	evs, pit, last, n, err := readPage(page(good...))
	if err != nil || pit != "p2" || n != 2 || fmt.Sprint(last) != "[2]" {
		t.Fatalf("readPage: %v %q %v %d", err, pit, last, n)
	}
	for i, h := range []esHit{{ID: "191796:ev-1", Source: src}, {ID: "191796:ev-2", Source: []byte(v4)}} {
		team, id, hash, err := h.leaf()
		if err != nil || evs[i].skip != "" || evs[i].team != team || evs[i].id != id || evs[i].hash != hash {
			t.Errorf("hit %d: one pass gave %+v, hit by hit %s %s %x %v", i, evs[i], team, id, hash, err)
		}
	}
	bad := hit("ev-3", 3, `{"@timestamp":"2026-12-01T10:00:00Z","action":5,"team_id":"191796"}`)
	evs2, _, _, n, err := readPage(page(good[0], bad, good[1]))
	if err != nil || n != 3 {
		t.Fatalf("readPage with a bad source: %v, %d hits", err, n)
	}
	if evs2[0] != evs[0] || evs2[2] != evs[1] || !strings.HasPrefix(evs2[1].skip, "unreadable") {
		t.Errorf("with a bad source: %+v", evs2)
	}
	if _, _, _, _, err := readPage([]byte(`{"hits":`)); err == nil {
		t.Error("a truncated answer was read")
	}
}

// FuzzReadPage: any answer, any source in it, is events or an error, never a panic; a hit that
// reads is a leaf the hit-by-hit path gives too.
func FuzzReadPage(f *testing.F) {
	src, err := os.ReadFile("../document/testdata/event.v3.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(`{"hits":{"hits":[{"_index":"a","_id":"191796:ev-1","_seq_no":1,"_version":1,"_routing":"191796","_source":` + string(src) + `,"sort":[1]}]}}`)
	f.Add(`{"hits":{"hits":[{"_id":"1:x","_source":{"@timestamp":"2026-12-01T10:00:00Z","action":"a","team_id":"1","metadata":{"n":1e400}}}]}}`)
	f.Add(`{"pit_id":"x","hits":{"hits":[{"_source":null}]}}`)
	f.Fuzz(func(t *testing.T, body string) {
		evs, _, _, n, err := readPage([]byte(body))
		if err != nil {
			return
		}
		if len(evs) != n {
			t.Fatalf("%d events of %d hits", len(evs), n)
		}
		var slow struct {
			Hits struct {
				Hits []esHit `json:"hits"`
			} `json:"hits"`
		}
		if err := json.Unmarshal([]byte(body), &slow); err != nil {
			t.Fatalf("read in one pass, not hit by hit: %v", err)
		}
		for i, h := range slow.Hits.Hits {
			if evs[i].skip != "" {
				continue
			}
			team, id, hash, err := h.leaf()
			if err != nil || team != evs[i].team || id != evs[i].id || hash != evs[i].hash {
				t.Fatalf("hit %d: one pass %+v, hit by hit %s %s %x %v", i, evs[i], team, id, hash, err)
			}
		}
	})
}
