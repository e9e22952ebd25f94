package importer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// csvReader reads RFC 4180 records strictly and keeps every byte of a cell: a quoted cell may hold
// commas, quotes (doubled), CR and LF, and keeps a CR or CRLF inside it as it is (encoding/csv turns
// a quoted CRLF into LF, which would change a user agent or a metadata value on the way back in).
// Records end in CRLF or LF; a UTF-8 byte order mark at the start is dropped.
type csvReader struct {
	r    *bufio.Reader
	line int // the line the next record starts on, 1-based
	cell bytes.Buffer
	raw  bytes.Buffer // the bytes of the current record, for the quarantine
	bom  bool
}

func newCSVReader(r io.Reader) *csvReader {
	return &csvReader{r: bufio.NewReaderSize(r, 64<<10), line: 1}
}

// maxRecordBytes bounds one record, so that a file with an unclosed quote cannot take the memory.
const maxRecordBytes = 8 << 20

// badRecord is a record that is not RFC 4180. The reader has skipped to the end of its line (or of
// the input) and goes on with the next record.
type badRecord struct {
	line   int
	raw    string
	reason string
}

func (e *badRecord) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.reason) }

// Read returns the next record and the line it starts on; io.EOF after the last. A malformed record
// is a *badRecord, after which Read goes on.
func (c *csvReader) Read() ([]string, int, error) {
	if !c.bom {
		c.bom = true
		if b, err := c.r.Peek(3); err == nil && bytes.Equal(b, []byte("\xEF\xBB\xBF")) {
			c.r.Discard(3)
		}
	}
	start := c.line
	c.raw.Reset()
	var cells []string
	for {
		c.cell.Reset()
		first, err := c.r.Peek(1)
		if err == io.EOF {
			if len(cells) == 0 {
				return nil, start, io.EOF
			}
			return append(cells, ""), start, nil // a last line ending in a comma and no newline
		}
		if err != nil {
			return nil, start, err
		}
		var end byte // ',' or '\n', or 0 at the end of the input
		if first[0] == '"' {
			c.next()
			end, err = c.quoted()
		} else {
			end, err = c.plain()
		}
		var bad *badRecord
		if errors.As(err, &bad) {
			bad.line = start
			if !bad.atEnd() {
				c.skipLine()
			}
			bad.raw = c.raw.String()
			return nil, start, bad
		}
		if err != nil {
			return nil, start, err
		}
		cells = append(cells, c.cell.String())
		if end != ',' {
			return cells, start, nil
		}
	}
}

// atEnd tells a record that ran to the end of the input (an unclosed quote), after which there is
// no line to skip to.
func (e *badRecord) atEnd() bool { return e.reason == reasonUnclosed }

const reasonUnclosed = "a quoted cell is not closed before the end of the file"

// next reads a byte of the current record. Every newline read, inside a cell or ending the record,
// is counted here and in skipLine, and nowhere else.
func (c *csvReader) next() (byte, error) {
	b, err := c.r.ReadByte()
	if err != nil {
		return 0, err
	}
	if b == '\n' {
		c.line++
	}
	if c.raw.Len() >= maxRecordBytes {
		return 0, &badRecord{reason: fmt.Sprintf("a record is longer than %d bytes (an unclosed quote?)", maxRecordBytes)}
	}
	c.raw.WriteByte(b)
	return b, nil
}

// skipLine reads to the end of the current line.
func (c *csvReader) skipLine() {
	for {
		b, err := c.r.ReadByte()
		if err != nil {
			return
		}
		if b == '\n' {
			c.line++
			return
		}
		if c.raw.Len() < maxRecordBytes {
			c.raw.WriteByte(b)
		}
	}
}

// plain reads an unquoted cell up to a comma, a line end or the end of the input.
func (c *csvReader) plain() (byte, error) {
	for {
		b, err := c.next()
		if err == io.EOF {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		switch b {
		case ',':
			return ',', nil
		case '\n':
			return '\n', nil
		case '\r':
			n, err := c.r.Peek(1)
			if err == io.EOF {
				return '\n', nil
			}
			if err == nil && n[0] == '\n' {
				c.next()
				return '\n', nil
			}
			return 0, &badRecord{reason: "a CR inside an unquoted cell"}
		case '"':
			return 0, &badRecord{reason: "a quote inside an unquoted cell"}
		}
		c.cell.WriteByte(b)
	}
}

// quoted reads a quoted cell after its opening quote, and what follows its closing quote.
func (c *csvReader) quoted() (byte, error) {
	for {
		b, err := c.next()
		if err == io.EOF {
			return 0, &badRecord{reason: reasonUnclosed}
		}
		if err != nil {
			return 0, err
		}
		if b != '"' {
			c.cell.WriteByte(b)
			continue
		}
		next, err := c.next()
		switch {
		case err == io.EOF:
			return 0, nil
		case err != nil:
			return 0, err
		case next == '"':
			c.cell.WriteByte('"')
		case next == ',':
			return ',', nil
		case next == '\n':
			return '\n', nil
		case next == '\r':
			n, err := c.next()
			if err == io.EOF {
				return '\n', nil
			}
			if err == nil && n == '\n' {
				return '\n', nil
			}
			return 0, &badRecord{reason: "a CR after a closing quote that does not end the line"}
		default:
			return 0, &badRecord{reason: fmt.Sprintf("%q after a closing quote", next)}
		}
	}
}
