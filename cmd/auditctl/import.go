// auditctl import: the history kept before this pipeline, into the teams' logs.

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/auditpipe/auditpipe/internal/importer"
	"github.com/auditpipe/auditpipe/internal/recorder"
)

// stdin is what --file - reads (tests set it).
var stdin io.Reader = os.Stdin

func importCmd(ctx context.Context, fs *flag.FlagSet, connect *recorder.Flags, args []string, stdout, stderr io.Writer) error {
	var files, columns multi
	fs.Var(&files, "file", "a file to import, - for standard input; .gz files are decompressed (repeatable)")
	format := fs.String("format", "", "csv (auditctl export's columns) or ndjson (the API's events, or the stored documents of export --format ndjson)")
	team := fs.String("team", "", "the team of rows that name none (a team_id column or field overrides it)")
	fs.Var(&columns, "column", "NAME=FIELD: the file's column NAME gives FIELD (FIELD - leaves it out); repeatable")
	operator := operatorFlag(fs, "who runs the import, recorded in each team's log")
	dryRun := fs.Bool("dry-run", false, "read and check everything, store nothing")
	report := fs.String("report", "", "write every row not stored (expired, quarantined) to this file, one JSON line each")
	progress := fs.String("progress", "auto", "progress on standard error: auto (when it is a terminal), on, off")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("import: unexpected arguments %q", fs.Args())
	}
	o := importer.Options{Files: files, Format: *format, Team: *team, Operator: *operator, DryRun: *dryRun, Stdin: stdin, Columns: map[string]string{}}
	for _, c := range columns {
		name, field, ok := strings.Cut(c, "=")
		if !ok || name == "" {
			return fmt.Errorf("--column %q: use NAME=FIELD", c)
		}
		o.Columns[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(field)
	}
	if err := o.Check(); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	switch *progress {
	case "on", "off", "auto":
	default:
		return fmt.Errorf("--progress %q: use auto, on or off", *progress)
	}
	c, err := connect.Client()
	if err != nil {
		return err
	}
	pcfg, err := connect.ProcessorConfig(ctx)
	if err != nil {
		return err
	}
	o.Client = c
	o.NewRecorder = func(ctx context.Context) (*recorder.Recorder, error) { return recorder.New(ctx, c, pcfg) }
	if *report != "" {
		f, err := os.Create(*report)
		if err != nil {
			return err
		}
		defer f.Close()
		o.Report = f
	}
	showProgress := *progress == "on" || (*progress == "auto" && isTerminal(stderr))
	if showProgress {
		o.Progress = func(read, total int64) { bytesProgress(stderr, read, total) }
	}
	sum, err := importer.Import(ctx, o)
	if showProgress {
		fmt.Fprintln(stderr)
	}
	if err != nil && len(sum.Files) == 0 && sum.Rows == 0 {
		return fmt.Errorf("import: %w", err) // nothing was read: the summary says nothing
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if encErr := enc.Encode(sum); encErr != nil {
			return encErr
		}
	} else {
		printSummary(stdout, sum)
	}
	if err != nil {
		return fmt.Errorf("import stopped after %d rows (run it again: what is stored is not stored twice): %w", sum.Rows, err)
	}
	return nil
}

func printSummary(w io.Writer, s importer.Summary) {
	verb := "stored"
	if s.DryRun {
		verb = "would store"
	}
	fmt.Fprintf(w, "%d rows: %s %d, %d already stored, %d quarantined, %d expired (past retention, not written)\n",
		s.Rows, verb, s.Stored, s.Duplicates, s.Quarantined, s.Expired)
	for _, code := range slices.Sorted(maps.Keys(s.ByReason)) {
		fmt.Fprintf(w, "  quarantined for %s: %d\n", code, s.ByReason[code])
	}
	fmt.Fprintf(w, "%-24s %10s %10s %10s %12s %10s\n", "TEAM", "ROWS", "STORED", "DUPLICATES", "QUARANTINED", "EXPIRED")
	for _, team := range slices.Sorted(maps.Keys(s.Teams)) {
		c := s.Teams[team]
		fmt.Fprintf(w, "%-24q %10d %10d %10d %12d %10d\n", team, c.Rows, c.Stored, c.Duplicates, c.Quarantined, c.Expired)
	}
	for _, f := range s.Files {
		fmt.Fprintf(w, "file %s: %d rows, sha256 %s\n", f.Name, f.Rows, f.SHA256)
	}
	for _, team := range slices.Sorted(maps.Keys(s.Recorded)) {
		fmt.Fprintf(w, "recorded in team %s's log as audit_log_imported event %s\n", team, s.Recorded[team])
	}
}

// bytesProgress draws a bar of bytes read (or a count where the total is unknown, as for stdin).
func bytesProgress(w io.Writer, read, total int64) {
	if total <= 0 {
		fmt.Fprintf(w, "\r%.1f MiB read", float64(read)/(1<<20))
		return
	}
	b, pct := bar(read, total)
	fmt.Fprintf(w, "\r%s %.1f/%.1f MiB (%.0f%%)", b, float64(read)/(1<<20), float64(total)/(1<<20), min(100, pct))
}
