// The export stage: a team's whole log, or a filter's part of it, in time order.

package query

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/auditpipe/auditpipe/internal/document"
)

// Format of an export.
type Format string

// Export formats.
const (
	CSV    Format = "csv"
	NDJSON Format = "ndjson" // the stored documents, every field of every version (document.Expand)
	Events Format = "events" // NDJSON of document.APIEvent, the customer-facing shape
)

// Check says whether f is a format Export writes.
func (f Format) Check() error {
	if f != CSV && f != NDJSON && f != Events {
		return fmt.Errorf("format %q: use csv, ndjson or events", string(f))
	}
	return nil
}

// Progress is told the total once, then how many events were written so far.
type Progress interface {
	Total(n int64)
	Done(n int64)
}

// PageSize is how many events one search returns; memory use does not grow with the export's size.
const PageSize = 1000

// Export streams every event of the filter's team in time order (then event id) to w, and returns how
// many it wrote. It pages with a point in time and search_after, so it sees one consistent view of the
// index and holds one page in memory however large the log.
func (c *Client) Export(ctx context.Context, f Filter, format Format, w io.Writer, progress Progress) (int64, error) {
	if err := format.Check(); err != nil {
		return 0, err
	}
	if _, err := f.query(); err != nil { // a bad filter fails before the first byte is written
		return 0, err
	}
	if progress != nil {
		cnt, err := c.Count(ctx, f)
		if err != nil {
			return 0, err
		}
		progress.Total(cnt)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var row []byte
	if format == CSV {
		row = AppendCSVRow(row[:0], CSVHeader)
		if _, err := bw.Write(row); err != nil {
			return 0, err
		}
	}
	catalog := c.Catalog()
	var written int64
	var pos *Position
	defer func() { c.ClosePosition(pos) }() // an export that stops early frees its point in time
	for {
		// A slow reader may outlive the point in time: Page goes on from the last event written.
		docs, next, err := c.Page(ctx, f, Asc, PageSize, pos)
		if err != nil {
			return written, err
		}
		pos = next
		for _, hit := range docs {
			switch format {
			case NDJSON:
				doc, err := document.Expand(hit, catalog)
				if err != nil {
					return written, err
				}
				bw.Write(doc)
				bw.WriteByte('\n')
			case Events:
				ev, err := document.ToAPI(hit)
				if err != nil {
					return written, err
				}
				b, _ := json.Marshal(ev) // raw fields are the stored JSON
				bw.Write(b)
				bw.WriteByte('\n')
			default:
				cells, err := csvRow(hit, catalog)
				if err != nil {
					return written, err
				}
				row = AppendCSVRow(row[:0], cells)
				if _, err := bw.Write(row); err != nil {
					return written, err
				}
			}
			written++
		}
		if progress != nil {
			progress.Done(written)
		}
		if err := bw.Flush(); err != nil { // a page at a time, so a client going away ends the export
			return written, err
		}
		if next == nil {
			return written, nil
		}
		if testHooks.page != nil {
			testHooks.page(next.PIT)
		}
	}
}
