// Package importer brings the audit history kept before this pipeline into the teams' logs: CSV
// files of auditctl export's columns (or renamed ones) and NDJSON of the API's events or the stored
// documents. Every row goes through the recorder, the collector's own processor and exporter, so an
// imported event is stored exactly as the collector would store it; a row that is not an event is
// quarantined with its line and reason; an event past its team's retention is counted and reported,
// not written. Ids make it idempotent: an id from the file, else the pipeline's content hash.
package importer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/query"
	"github.com/auditpipe/auditpipe/internal/recorder"
)

// Formats.
const (
	CSV    = "csv"
	NDJSON = "ndjson"
)

// Attributes an imported record carries, so that a quarantined row says where it came from.
const (
	AttrFile = "import.file"
	AttrLine = "import.line"
)

// Options say what to import and how.
type Options struct {
	Files    []string          // paths, or "-" for Stdin; a name ending in .gz is decompressed
	Format   string            // CSV or NDJSON
	Team     string            // the team of rows that name none; a team_id column or field overrides it
	Columns  map[string]string // CSV: a header name (lowercase) → the field it gives
	Operator string            // who imports, recorded in each team's log
	DryRun   bool              // read and check everything, write nothing
	Workers  int               // passes through the pipeline at once (default 2, as the collector's consumers)
	Batch    int               // records a pass (default 5,000)
	Stdin    io.Reader
	// Report, when set, gets one JSON line per row not stored: expired or quarantined.
	Report io.Writer
	// Progress, when set, is told the bytes read so far of total (0 when unknown, such as stdin).
	Progress func(read, total int64)
	// NewRecorder makes the pipelines (Workers of them) that store the rows and the import's
	// record, writing where Client reads.
	NewRecorder func(ctx context.Context) (*recorder.Recorder, error)
	Client      *query.Client
}

// Counts are what happened to rows.
type Counts struct {
	Rows        int64            `json:"rows"`
	Stored      int64            `json:"stored"`
	Duplicates  int64            `json:"duplicates"`
	Quarantined int64            `json:"quarantined"`
	ByReason    map[string]int64 `json:"quarantined_by_reason"`
	Expired     int64            `json:"expired"`
}

func (c *Counts) add(result string, reasons []string) {
	c.Rows++
	switch result {
	case recorder.Stored:
		c.Stored++
	case recorder.Duplicate:
		c.Duplicates++
	case recorder.Expired:
		c.Expired++
	default:
		c.Quarantined++
		if c.ByReason == nil {
			c.ByReason = map[string]int64{}
		}
		code := "unknown"
		if len(reasons) > 0 {
			code = audit.ProblemCode(reasons[0])
		}
		c.ByReason[code]++
	}
}

// File is one file read.
type File struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Rows   int64  `json:"rows"`
}

// Summary is what an import did: in all and per team (as the rows named it).
type Summary struct {
	Counts
	DryRun   bool              `json:"dry_run"`
	Files    []File            `json:"files"`
	Teams    map[string]Counts `json:"teams"`
	Recorded map[string]string `json:"recorded"` // team → the id of its audit_log_imported event
}

// input is one file, opened and, for CSV, with its header read.
type input struct {
	name   string
	raw    io.ReadCloser
	sum    *hashReader
	r      io.Reader // decompressed
	csv    *csvReader
	cols   *columns
	header []string
	ndjson *bufio.Reader
	line   int // NDJSON: the last line read
}

// hashReader hashes a file as it is read (the file's bytes, before any decompression) and counts
// the bytes read for the progress bar.
type hashReader struct {
	r    io.Reader
	h    hash.Hash
	read *atomic.Int64
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.read.Add(int64(n))
	return n, err
}

// Check refuses, before anything is read or stored, what cannot work: an unknown format, a --team
// that is not a valid team id, column renames to unknown fields.
func (o *Options) Check() error {
	if o.Format != CSV && o.Format != NDJSON {
		return fmt.Errorf("--format %q: use csv or ndjson", o.Format)
	}
	if len(o.Files) == 0 {
		return errors.New("--file is required (- for standard input)")
	}
	if o.Team != "" {
		if err := audit.CheckTeamID(o.Team); err != nil {
			return fmt.Errorf("--team %w", err)
		}
	}
	for name, f := range o.Columns {
		if !isField(f) {
			return fmt.Errorf("--column %s=%s: %q is not one of %s", name, f, f, strings.Join(Fields(), ", "))
		}
	}
	if o.Format != CSV && len(o.Columns) > 0 {
		return errors.New("--column is for csv files")
	}
	if !o.DryRun && o.Operator == "" {
		return errors.New("--operator is required (or AUDITCTL_OPERATOR): imports are recorded in the teams' logs")
	}
	return nil
}

// Import reads the files and stores their events. Every file is opened and, for CSV, its header
// checked before anything is stored.
func Import(ctx context.Context, o Options) (Summary, error) {
	sum := Summary{DryRun: o.DryRun, Teams: map[string]Counts{}, Recorded: map[string]string{}}
	if err := o.Check(); err != nil {
		return sum, err
	}
	if o.NewRecorder == nil || (o.Client == nil && !o.DryRun) {
		return sum, errors.New("importer: Options.NewRecorder and Options.Client are required")
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.Batch <= 0 {
		o.Batch = 5000 // as the collector's batches: larger bulks cost the node less per event
	}
	var read atomic.Int64
	var total int64
	inputs := make([]*input, 0, len(o.Files))
	defer func() {
		for _, in := range inputs {
			in.raw.Close()
		}
	}()
	for _, name := range o.Files {
		in, size, err := open(name, o, &read)
		if err != nil {
			return sum, err
		}
		inputs = append(inputs, in)
		total += size
	}
	if o.Progress != nil {
		o.Progress(0, total)
	}

	recs := make([]*recorder.Recorder, o.Workers)
	for i := range recs {
		r, err := o.NewRecorder(ctx)
		if err != nil {
			return sum, err
		}
		defer r.Close()
		recs[i] = r
	}
	if !o.DryRun {
		if err := o.Client.CheckTemplates(ctx); err != nil {
			return sum, err
		}
	}

	var mu sync.Mutex // guards sum and the report
	tally := func(b *batch, outs []recorder.Outcome) error {
		mu.Lock()
		defer mu.Unlock()
		places := b.places()
		for i, out := range outs {
			team := places[i].team
			sum.Counts.add(out.Result, out.Reasons)
			c := sum.Teams[team]
			c.add(out.Result, out.Reasons)
			sum.Teams[team] = c
			if o.Report != nil && out.Result != recorder.Stored && out.Result != recorder.Duplicate {
				line, _ := json.Marshal(map[string]any{"file": b.file, "line": places[i].line, "team_id": team, "event_id": out.EventID, "result": out.Result, "reasons": out.Reasons})
				if _, err := o.Report.Write(append(line, '\n')); err != nil {
					return fmt.Errorf("--report: %w", err)
				}
			}
		}
		return nil
	}
	// Each worker has a pipeline and a queue of its own; a row goes to the worker its identity
	// (routeOf) names, so that two rows of one id are never in two passes at once, and each pass
	// can tell a new event from one stored already.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make([]chan *batch, o.Workers)
	var wg sync.WaitGroup
	for i, rec := range recs {
		work[i] = make(chan *batch, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work[i] {
				if err := b.run(ctx, rec, o.DryRun, tally); err != nil {
					cancel(err)
				}
			}
		}()
	}
	var readErr error
	for i, in := range inputs {
		rows, err := in.each(ctx, o, func(worker int, b *batch) error {
			select {
			case work[worker] <- b:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}, func() {
			if o.Progress != nil {
				o.Progress(read.Load(), total)
			}
		})
		if err != nil {
			readErr = err
			break
		}
		if _, err := io.Copy(io.Discard, in.sum); err != nil { // the whole file's hash, a gzip trailer included
			readErr = err
			break
		}
		sum.Files = append(sum.Files, File{Name: filepath.Base(o.Files[i]), SHA256: hex.EncodeToString(in.sum.h.Sum(nil)), Rows: rows})
	}
	for _, w := range work {
		close(w)
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && readErr == nil {
		readErr = err
	}
	if readErr != nil {
		return sum, readErr
	}
	if o.DryRun {
		return sum, nil
	}
	if err := record(ctx, recs[0], o, &sum); err != nil {
		return sum, err
	}
	// Searchable now, for an export or a list right after the import.
	if err := o.Client.Refresh(ctx); err != nil {
		return sum, fmt.Errorf("the import is stored, but refreshing the indices failed: %w", err)
	}
	return sum, nil
}

// open opens a file (or standard input), decompresses it if its name ends in .gz, and reads a CSV
// file's header. size is the file's size, 0 for standard input.
func open(name string, o Options, read *atomic.Int64) (*input, int64, error) {
	in := &input{name: filepath.Base(name)}
	var size int64
	if name == "-" {
		if o.Stdin == nil {
			return nil, 0, errors.New("--file -: no standard input")
		}
		in.raw, in.name = io.NopCloser(o.Stdin), "-"
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, 0, err
		}
		st, err := f.Stat()
		if err != nil || st.IsDir() {
			f.Close()
			return nil, 0, fmt.Errorf("%s: not a file", name)
		}
		in.raw, size = f, st.Size()
	}
	in.sum = &hashReader{r: in.raw, h: sha256.New(), read: read}
	in.r = in.sum
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(in.sum)
		if err != nil {
			in.raw.Close()
			return nil, 0, fmt.Errorf("%s: %w", name, err)
		}
		in.r = zr
	}
	if o.Format == NDJSON {
		in.ndjson = bufio.NewReaderSize(in.r, 64<<10)
		return in, size, nil
	}
	in.csv = newCSVReader(in.r)
	header, _, err := in.csv.Read()
	if err == io.EOF {
		in.raw.Close()
		return nil, 0, fmt.Errorf("%s: %w", name, errNoHeader)
	}
	if err != nil {
		in.raw.Close()
		return nil, 0, fmt.Errorf("%s: the header: %w", name, err)
	}
	if in.cols, err = newColumns(header, o.Columns, o.Team); err != nil {
		in.raw.Close()
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	in.header = header
	return in, size, nil
}

// batch is a pass's worth of rows: events for the pipeline, and rows that are not events.
type batch struct {
	file     string
	good     plog.Logs
	bad      plog.Logs
	goodRows []place // per record of good, in order
	badRows  []place // per record of bad
	refused  []recorder.Outcome
}

// place is where a row was and the team it named.
type place struct {
	line int
	team string
}

func newBatch(file string) *batch {
	b := &batch{file: file, good: plog.NewLogs(), bad: plog.NewLogs()}
	for _, ld := range []plog.Logs{b.good, b.bad} {
		rl := ld.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("service.name", "auditctl-import")
		rl.ScopeLogs().AppendEmpty()
	}
	return b
}

func records(ld plog.Logs) plog.LogRecordSlice {
	return ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
}

func (b *batch) len() int { return len(b.goodRows) + len(b.badRows) }

// places lists the rows in the order of the batch's outcomes: its events, then the others.
func (b *batch) places() []place { return append(append([]place(nil), b.goodRows...), b.badRows...) }

// addEvent adds a row made into an event body.
func (b *batch) addEvent(r row) {
	lr := records(b.good).AppendEmpty()
	lr.SetEventName(audit.EventName)
	lr.SetTimestamp(pcommon.NewTimestampFromTime(r.at))
	r.body.MoveTo(lr.Body().SetEmptyMap())
	if r.id != "" {
		lr.Attributes().PutStr(audit.AttrID, r.id)
	}
	lr.Attributes().PutStr(AttrFile, b.file)
	lr.Attributes().PutInt(AttrLine, int64(r.line))
	b.goodRows = append(b.goodRows, place{r.line, r.teamID})
}

// addRefused adds a row that is not an event, for the quarantine, with the reason.
func (b *batch) addRefused(line int, team string, raw []byte, code, reason string) {
	lr := records(b.bad).AppendEmpty()
	lr.SetEventName(audit.EventName)
	lr.Body().SetStr(string(raw))
	attrs := lr.Attributes()
	attrs.PutStr(AttrFile, b.file)
	attrs.PutInt(AttrLine, int64(line))
	if team != "" {
		attrs.PutStr(audit.AttrQuarantineTeamID, audit.Truncate(team, audit.MaxGivenTeamIDBytes))
	}
	problem := audit.FormatProblem(code, fmt.Sprintf("%s line %d: %s", b.file, line, reason))
	attrs.PutEmptySlice(audit.AttrProblems).AppendEmpty().SetStr(problem)
	b.badRows = append(b.badRows, place{line, team})
	b.refused = append(b.refused, recorder.Outcome{Result: recorder.Quarantined, Team: team, Reasons: []string{problem}})
}

// run stores the batch: its events through the pipeline, its other rows into the quarantine.
func (b *batch) run(ctx context.Context, rec *recorder.Recorder, dryRun bool, tally func(*batch, []recorder.Outcome) error) error {
	var outs []recorder.Outcome
	var err error
	if len(b.goodRows) > 0 {
		if dryRun {
			outs, err = rec.Check(ctx, b.good)
		} else {
			outs, err = rec.Store(ctx, b.good)
		}
		if err != nil {
			return fmt.Errorf("%s: storing the rows from line %d: %w", b.file, b.goodRows[0].line, err)
		}
	}
	if len(b.badRows) > 0 && !dryRun {
		if err := rec.Refuse(ctx, b.bad); err != nil {
			return fmt.Errorf("%s: quarantining %d rows from line %d: %w", b.file, len(b.badRows), b.badRows[0].line, err)
		}
	}
	return tally(b, append(outs, b.refused...))
}

// each reads the rows of a file into a batch per worker, hands each on as it fills (o.Batch) and
// the rest at the end. It returns the rows read.
func (in *input) each(ctx context.Context, o Options, send func(worker int, b *batch) error, progress func()) (int64, error) {
	var rows int64
	bs := make([]*batch, o.Workers)
	for i := range bs {
		bs[i] = newBatch(in.name)
	}
	flush := func(w int) error {
		if bs[w].len() == 0 {
			return nil
		}
		err := send(w, bs[w])
		bs[w] = newBatch(in.name)
		progress()
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return rows, context.Cause(ctx)
		}
		w, more, err := in.next(o, bs)
		if err != nil {
			return rows, err
		}
		if !more {
			break
		}
		rows++
		if bs[w].len() >= o.Batch {
			if err := flush(w); err != nil {
				return rows, err
			}
		}
	}
	for w := range bs {
		if err := flush(w); err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// routeOf picks the worker of a row by what makes its id: the file's id, else what the row says
// (its cells, or its line), from which the pipeline's content hash is made.
func routeOf(r row, workers int) int {
	h := fnv.New32a()
	h.Write([]byte(r.teamID + "\x00"))
	if r.id != "" {
		h.Write([]byte(r.id))
	} else {
		h.Write(r.key)
	}
	return int(h.Sum32() % uint32(workers))
}

// next reads one row into the batch of its worker: an event, or a row for the quarantine (any
// worker). It returns the worker, and false at the end.
func (in *input) next(o Options, bs []*batch) (int, bool, error) {
	if in.csv != nil {
		cells, line, err := in.csv.Read()
		var bad *badRecord
		switch {
		case err == io.EOF:
			return 0, false, nil
		case errors.As(err, &bad):
			w := bad.line % len(bs)
			bs[w].addRefused(bad.line, o.Team, rawRow(nil, nil, bad.raw), problemMalformedFile, "not RFC 4180 CSV: "+bad.reason)
			return w, true, nil
		case err != nil:
			return 0, false, fmt.Errorf("%s: %w", in.name, err)
		}
		r, err := in.cols.row(cells, line, o.Team)
		if err != nil {
			w := line % len(bs)
			bs[w].addRefused(line, r.teamID, rawRow(in.header, cells, ""), problemMalformedRow, err.Error())
			return w, true, nil
		}
		w := routeOf(r, len(bs))
		bs[w].addEvent(r)
		return w, true, nil
	}
	for {
		raw, err := in.ndjson.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return 0, false, fmt.Errorf("%s: %w", in.name, err)
		}
		if len(raw) == 0 && err == io.EOF {
			return 0, false, nil
		}
		in.line++
		text := bytes.TrimRight(raw, "\r\n")
		if in.line == 1 {
			text = bytes.TrimPrefix(text, []byte("\xEF\xBB\xBF"))
		}
		if len(bytes.TrimSpace(text)) == 0 {
			continue // blank lines are no rows
		}
		w := in.line % len(bs)
		if len(text) > maxRecordBytes {
			bs[w].addRefused(in.line, o.Team, rawRow(nil, nil, string(text[:1024])), problemMalformedFile, fmt.Sprintf("a line longer than %d bytes", maxRecordBytes))
			return w, true, nil
		}
		r, perr := ndjsonRow(text, in.line, o.Team)
		if perr != nil {
			bs[w].addRefused(in.line, r.teamID, rawRow(nil, nil, string(text)), problemMalformedRow, "not a JSON event: "+perr.Error())
			return w, true, nil
		}
		w = routeOf(r, len(bs))
		bs[w].addEvent(r)
		return w, true, nil
	}
}

// record writes one audit_log_imported event in the log of each team the files named (a valid
// team id), with the files and that team's counts, all in one pass through the pipeline.
func record(ctx context.Context, rec *recorder.Recorder, o Options, sum *Summary) error {
	files := make([]any, len(sum.Files))
	for i, f := range sum.Files {
		files[i] = map[string]any{"name": f.Name, "sha256": f.SHA256}
	}
	var teams []string
	var events []audit.Event
	for _, team := range slices.Sorted(maps.Keys(sum.Teams)) {
		if audit.CheckTeamID(team) != nil {
			continue // a hostile or malformed team id: its rows are in the quarantine
		}
		c := sum.Teams[team]
		md := map[string]any{"kind": "auditctl", "format": o.Format, "files": files, "rows": c.Rows, "stored": c.Stored,
			"duplicates": c.Duplicates, "quarantined": c.Quarantined, "expired": c.Expired}
		teams = append(teams, team)
		events = append(events, audit.Event{
			Action: audit.ActionAuditLogImported, TeamID: team, Actor: auditlog.User(o.Operator, "", ""),
			Targets: []audit.Target{{Type: "audit_log", ID: team}}, Metadata: md,
		})
	}
	ids, err := rec.RecordAll(ctx, events)
	if err != nil {
		return fmt.Errorf("the events are imported, but recording the import in the teams' logs failed: %w", err)
	}
	for i, team := range teams {
		sum.Recorded[team] = ids[i]
	}
	return nil
}
