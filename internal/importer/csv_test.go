package importer

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/internal/query"
)

type csvRecord struct {
	cells []string
	line  int
	bad   string
}

func readAll(t *testing.T, s string) []csvRecord {
	t.Helper()
	r := newCSVReader(strings.NewReader(s))
	var out []csvRecord
	for {
		cells, line, err := r.Read()
		if err == io.EOF {
			return out
		}
		var bad *badRecord
		if errors.As(err, &bad) {
			out = append(out, csvRecord{line: bad.line, bad: bad.reason})
			continue
		}
		require.NoError(t, err)
		out = append(out, csvRecord{cells: cells, line: line})
	}
}

func TestCSVReaderKeepsEveryByteAndCountsLines(t *testing.T) {
	got := readAll(t, "\xEF\xBB\xBFa,b\r\n\"x\r\ny\",\"q\"\"\",\" lead\"\nlast,\"cr\rkept\"")
	assert.Equal(t, []csvRecord{
		{cells: []string{"a", "b"}, line: 1},
		{cells: []string{"x\r\ny", `q"`, " lead"}, line: 2},
		{cells: []string{"last", "cr\rkept"}, line: 4},
	}, got)
}

func TestCSVReaderGoesOnAfterAMalformedRecord(t *testing.T) {
	got := readAll(t, "h1,h2\na\"b,c\nok,1\n\"x\"y,2\nfine,3\n\"never closed,4\n")
	require.Len(t, got, 6)
	assert.Equal(t, []string{"h1", "h2"}, got[0].cells)
	assert.Equal(t, csvRecord{line: 2, bad: "a quote inside an unquoted cell"}, got[1])
	assert.Equal(t, csvRecord{cells: []string{"ok", "1"}, line: 3}, got[2])
	assert.Equal(t, 4, got[3].line)
	assert.NotEmpty(t, got[3].bad)
	assert.Equal(t, csvRecord{cells: []string{"fine", "3"}, line: 5}, got[4])
	assert.Equal(t, csvRecord{line: 6, bad: reasonUnclosed}, got[5])
}

// FuzzCSVReader: any input reads without a panic, and any row auditctl export writes reads back
// exactly.
func FuzzCSVReader(f *testing.F) {
	f.Add("a,b\r\nc,d\r\n", "x\r\ny", "=1")
	f.Add("\"\"\"\"\n\"", "\r", "")
	f.Add("\xEF\xBB\xBF\"a\rb\",x\r", " lead", "q\"")
	f.Fuzz(func(t *testing.T, input, c1, c2 string) {
		r := newCSVReader(strings.NewReader(input))
		for i := 0; i < 1000; i++ {
			if _, _, err := r.Read(); err == io.EOF {
				break
			}
		}
		row := []string{c1, c2, "z"}
		if strings.HasPrefix(c1, "\xEF\xBB\xBF") {
			return // a byte order mark at the start of a file is not a cell's
		}
		back, line, err := newCSVReader(strings.NewReader(string(query.AppendCSVRow(nil, row)))).Read()
		require.NoError(t, err)
		assert.Equal(t, 1, line)
		if !slices.Equal(row, back) {
			t.Fatalf("wrote %q, read %q", row, back)
		}
	})
}
