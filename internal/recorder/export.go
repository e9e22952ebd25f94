package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/query"
)

// Export is one recorded export: the filter's events written between two data_export events in the
// team's log, "started" before the first row leaves (a killed or piped export is still on record)
// and "completed" or "failed" after the last, with the count and the start's id. auditctl export
// and the API's GET /v1/export are both this.
type Export struct {
	Client *query.Client
	Filter query.Filter
	Format query.Format
	// Record records one data_export event with the given metadata in the filter's team's log and
	// returns its id: the caller says who exports and how (the operator, or the API key and its
	// request).
	Record func(ctx context.Context, md map[string]any) (string, error)
	// Metadata goes into both events: how the export was asked for (kind, format, filters, reason).
	Metadata map[string]any
	// Started, if set, is called once the start is recorded and before the first row: an HTTP
	// answer's headers go out there.
	Started func(startID string)
	// Write, if set, writes the export in place of the filter's rows in Format (a bundle of the
	// signed log) and returns the number of events written.
	Write func(ctx context.Context, w io.Writer) (int64, error)
	// Finish, if set, is called after the last row and before the end is recorded: a file is made
	// whole there (synced and renamed). Its error fails the export.
	Finish func() error
}

// ExportResult is what a recorded export did.
type ExportResult struct {
	Events         int64
	StartID, EndID string
	// RecordErr is set when the export itself ran but its end could not be recorded.
	RecordErr error
}

// ErrNotRecorded is returned, wrapped, when an export's start cannot be recorded: nothing is
// exported then.
var ErrNotRecorded = errors.New("recording the export in the team's log failed, so nothing was exported")

// endTimeout bounds recording the end of an export, which happens even when the export was
// interrupted (a fresh context).
const endTimeout = 30 * time.Second

// Run writes the export to w. It returns the export's own error (the rows stopped early, or Finish
// failed); the end is recorded either way, and a failure to record it is ExportResult.RecordErr.
func (x Export) Run(ctx context.Context, w io.Writer, progress query.Progress) (ExportResult, error) {
	md := func(extra map[string]any) map[string]any {
		m := maps.Clone(x.Metadata)
		if m == nil {
			m = map[string]any{}
		}
		maps.Copy(m, extra)
		return m
	}
	var res ExportResult
	var err error
	if res.StartID, err = x.Record(ctx, md(map[string]any{"state": "started"})); err != nil {
		return res, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	if x.Started != nil {
		x.Started(res.StartID)
	}
	if x.Write != nil {
		res.Events, err = x.Write(ctx, w)
	} else {
		res.Events, err = x.Client.Export(ctx, x.Filter, x.Format, w, progress)
	}
	if err == nil && x.Finish != nil {
		err = x.Finish()
	}
	end := map[string]any{"state": "completed", "events": res.Events, "started_event_id": res.StartID}
	if err != nil {
		end["state"], end["error"] = "failed", audit.Truncate(err.Error(), 1024)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
	defer cancel()
	res.EndID, res.RecordErr = x.Record(rctx, md(end))
	return res, err
}
