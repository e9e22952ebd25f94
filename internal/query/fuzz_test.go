package query

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/document"
)

// FuzzCSVRow renders arbitrary stored documents as CSV rows: no panic, no cell a spreadsheet would run
// as a formula, and encoding/csv reads back exactly the row written.
func FuzzCSVRow(f *testing.F) {
	f.Add([]byte(`{"@timestamp":"2025-08-01T21:00:00Z","action":"job_user_access_changed","actor":{"type":"user","id":"445177","metadata":{"email":"ann+oats@gem.com","name":"Ann Samuelson"}},"targets":[{"type":"job","id":"313520"}],"access_route":["::1"],"remote_addr":"::1","user_agent":"Mozilla/5.0","metadata":{"previous_access_level_id":7347}}`))
	f.Add([]byte(`{"action":"=cmd","actor":{"type":"user","id":"-1","metadata":"x"},"metadata":[1,"@a",{"b":null}],"user_agent":"\r\n\"quoted\", comma"}`))
	f.Add([]byte(`{"metadata":1e400}`))
	f.Add([]byte(`{"action":"＝cmd","user_agent":"a\rb","remote_addr":" lead","metadata":{"x":"＠y"}}`))
	catalog := audit.DefaultCatalog()
	f.Fuzz(func(t *testing.T, src []byte) {
		row, err := csvRow(document.Hit{ID: "7:x", Source: src}, catalog)
		if err != nil {
			return
		}
		if len(row) != len(CSVHeader) {
			t.Fatalf("%d cells", len(row))
		}
		for _, cell := range row {
			if r, _ := utf8.DecodeRuneInString(cell); cell != "" && strings.ContainsRune("=+-@\t\r＝＋－＠", r) {
				t.Fatalf("cell %q starts a formula", cell)
			}
		}
		line := AppendCSVRow(nil, row)
		back, err := parseCSVRecord(line)
		if err != nil {
			t.Fatalf("reading back %q: %v", line, err)
		}
		if !slices.Equal(back, row) {
			t.Fatalf("round trip changed the row:\n%q\n%q", row, back)
		}
	})
}

// parseCSVRecord reads exactly one RFC 4180 record ending in CRLF, strictly: every byte of a quoted
// cell is kept, a lone CR included.
func parseCSVRecord(b []byte) ([]string, error) {
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		return nil, errors.New("no CRLF at the end")
	}
	b = b[:len(b)-2]
	var cells []string
	for {
		var cell []byte
		if len(b) > 0 && b[0] == '"' {
			i := 1
			for {
				if i >= len(b) {
					return nil, errors.New("unterminated quoted cell")
				}
				if b[i] == '"' {
					if i+1 < len(b) && b[i+1] == '"' {
						cell = append(cell, '"')
						i += 2
						continue
					}
					i++
					break
				}
				cell = append(cell, b[i])
				i++
			}
			b = b[i:]
		} else {
			j := bytes.IndexByte(b, ',')
			if j < 0 {
				j = len(b)
			}
			cell = b[:j]
			if bytes.ContainsAny(cell, "\"\r\n") {
				return nil, fmt.Errorf("unquoted cell %q", cell)
			}
			b = b[j:]
		}
		cells = append(cells, string(cell))
		if len(b) == 0 {
			return cells, nil
		}
		if b[0] != ',' {
			return nil, fmt.Errorf("unexpected %q after a cell", b[0])
		}
		b = b[1:]
	}
}
