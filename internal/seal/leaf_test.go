package seal

import (
	"os"
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
