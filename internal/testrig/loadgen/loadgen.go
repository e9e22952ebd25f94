// Package loadgen sends realistic audit events to a collector over OTLP/gRPC with the auditlog
// package, and records exactly which events the collector acknowledged, by id and team: every batch
// is retried until accepted or the run's deadline, so "acknowledged" means "the collector has it".
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// Config of a load run.
type Config struct {
	Endpoint string        // OTLP/gRPC endpoint of the collector
	Rate     int           // events per second; 0 sends as fast as the collector accepts
	Duration time.Duration // how long to send; 0 with Count
	Count    int           // how many events; 0 with Duration
	Teams    int           // events are spread over Teams teams (numeric ids from 1000), round robin
	// Zipf spreads events by a Zipf distribution instead (s = 1.1): a few teams send most events
	// and most teams send few, as in real life.
	Zipf          bool
	MetadataBytes int // approximate size of each event's metadata
	Batch         int // events per OTLP request (default 500)
	// Bad, when set, mixes in one malformed record every Bad events (see Malformed).
	Bad int
	// Poison, when set, gives every Poison-th event an id of 200 bytes of invalid UTF-8, which the
	// pipeline stores under the id's hash (audit.SafeID). The OTLP SDK refuses to encode invalid
	// UTF-8, so those records go as OTLP/protobuf over HTTP to PoisonHTTP (the collector's
	// host:port), encoded with pdata as any other OTLP client could.
	Poison     int
	PoisonHTTP string
	// Resend, when set, is a second collector's endpoint: every ResendEvery-th acknowledged batch is
	// sent to it too, as a client that failed over after its answer was lost would.
	Resend      string
	ResendEvery int
	// Route, when set, gives each event the attributes elasticsearch.index and
	// elasticsearch.document_id: the index and _id this layout gives it, for an exporter that routes
	// by attribute (contrib's, in the side-by-side benchmark).
	Route *layout.Layout
	// Prebuilt, made by Prebuild before anything is measured, holds the requests to send
	// (prebuilt.go): the generator then costs about 1 µs of CPU per event instead of ~60.
	Prebuilt *Prebuilt
	// Deadline bounds the whole run, acknowledgements included (default 10 minutes): a collector
	// that never answers fails the run instead of hanging it.
	Deadline time.Duration
}

func (cfg *Config) defaults() {
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.Teams <= 0 {
		cfg.Teams = 10
	}
	if cfg.Deadline <= 0 {
		cfg.Deadline = 10 * time.Minute
	}
}

// retryDelay is how long the generator waits before sending a refused request again: growing by
// 100 ms per attempt, at most 2 s.
func retryDelay(attempt int) time.Duration {
	return min(time.Duration(attempt+1)*100*time.Millisecond, 2*time.Second)
}

// Expect is where an acknowledged record must end: in its team's log, or in quarantine.
type Expect struct {
	Team       string // the team id the record named
	Quarantine bool
}

// Result says what the collector acknowledged.
type Result struct {
	Sent      int64 // valid events emitted (all acknowledged unless Unacked > 0)
	Malformed int64 // malformed records emitted (expected in quarantine)
	PerTeam   map[string]int64
	// Acked maps the id under which each acknowledged record must be stored to where.
	Acked    map[string]Expect
	Unacked  int64     // records emitted but not acknowledged by the deadline
	Resent   int64     // records sent to the second collector too
	Began    time.Time // when the first event was sent
	Elapsed  time.Duration
	Retries  int64 // OTLP requests that failed and were sent again
	FirstErr error // the first failed OTLP request, if any
}

// Run sends the configured load and returns when every emitted record was acknowledged, or at the
// deadline with an error.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.defaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()
	if cfg.Prebuilt != nil {
		return runPrebuilt(ctx, cfg)
	}
	newExporter := func(endpoint string) (sdklog.Exporter, error) {
		return otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(endpoint), otlploggrpc.WithInsecure(),
			otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false})) // we retry, and count
	}
	exp, err := newExporter(cfg.Endpoint)
	if err != nil {
		return Result{}, err
	}
	sender := &ackingProcessor{exp: exp, batch: cfg.Batch, ch: make(chan []sdklog.Record, 4), expect: map[string]Expect{}, acked: map[string]Expect{}, resendEvery: cfg.ResendEvery}
	if cfg.Resend != "" {
		if sender.resend, err = newExporter(cfg.Resend); err != nil {
			return Result{}, err
		}
	}
	sender.start(ctx)
	provider := sdklog.NewLoggerProvider(
		sdklog.WithResource(resource.NewSchemaless(semconv.ServiceName("auditload"))),
		sdklog.WithProcessor(sender))
	al := auditlog.New(provider)
	raw := provider.Logger("auditload")
	routed := raw
	if cfg.Route != nil {
		// contrib's exporter takes its mapping mode from the scope: the body map is the document.
		routed = provider.Logger("auditload", log.WithInstrumentationAttributes(attribute.String("elastic.mapping.mode", "bodymap")))
	}

	res := Result{PerTeam: map[string]int64{}}
	rng := rand.New(rand.NewPCG(1, 2)) // the same run produces the same events
	var zipf *rand.Zipf
	if cfg.Zipf && cfg.Teams > 1 {
		zipf = rand.NewZipf(rand.New(rand.NewPCG(3, 4)), 1.1, 1, uint64(cfg.Teams-1))
	}
	actions := audit.DefaultCatalog().ActionNames()
	begin := time.Now()
	res.Began = begin
	var interval time.Duration
	if cfg.Rate > 0 {
		interval = time.Second / time.Duration(cfg.Rate)
	}
	next := begin
	for i := 0; ; i++ {
		if cfg.Count > 0 && i >= cfg.Count || cfg.Duration > 0 && time.Since(begin) >= cfg.Duration {
			break
		}
		if ctx.Err() != nil {
			break
		}
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
		}
		if cfg.Bad > 0 && i%cfg.Bad == cfg.Bad-1 {
			rec, team := Malformed(int(res.Malformed))
			sender.expectID(fmt.Sprintf("malformed-%d", res.Malformed), Expect{Team: team, Quarantine: true})
			raw.Emit(ctx, rec)
			res.Malformed++
			continue
		}
		team := i % cfg.Teams
		if zipf != nil {
			team = int(zipf.Uint64())
		}
		ev := Event(rng, actions, i, team, cfg.MetadataBytes)
		id, err := uuid.NewV7()
		if err != nil {
			return res, err
		}
		ev.ID = id.String()
		if cfg.Poison > 0 && i%cfg.Poison == cfg.Poison-1 {
			stored, err := sendPoisoned(ctx, cfg.PoisonHTTP, ev, i)
			if err != nil {
				return res, err
			}
			sender.mu.Lock()
			sender.acked[stored] = Expect{Team: ev.TeamID}
			sender.mu.Unlock()
		} else {
			sender.expectID(ev.ID, Expect{Team: ev.TeamID})
			if cfg.Route != nil {
				r := auditlog.Record(ev)
				r.AddAttributes(attribute.String("elasticsearch.index", cfg.Route.Index(ev.TeamID, ev.Time)),
					attribute.String("elasticsearch.document_id", layout.DocID(ev.TeamID, ev.ID)))
				routed.Emit(ctx, r)
			} else if _, err := al.Emit(ctx, ev); err != nil {
				return res, err
			}
		}
		res.Sent++
		res.PerTeam[ev.TeamID]++
	}
	err = provider.Shutdown(ctx)
	res.Elapsed = time.Since(begin)
	res.Retries = sender.retries.Load()
	res.Resent = sender.resent.Load()
	res.FirstErr = sender.firstErr
	res.Acked = sender.acked
	res.Unacked = int64(len(sender.expect))
	if err == nil {
		err = sender.err
	}
	if res.Unacked > 0 {
		return res, fmt.Errorf("%d records were not acknowledged within the deadline of %s: %v", res.Unacked, cfg.Deadline, err)
	}
	return res, err
}

// sendPoisoned sends ev with an audit.id of 200 bytes of invalid UTF-8 (unique to i) as OTLP/protobuf
// over HTTP, until the collector accepts it, and returns the id the pipeline must store it under.
func sendPoisoned(ctx context.Context, endpoint string, ev audit.Event, i int) (string, error) {
	id := strings.Repeat("\xff", 190) + fmt.Sprintf("%010d", i)
	body, err := json.Marshal(ev)
	if err != nil {
		return "", err
	}
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "auditload")
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetEventName(audit.EventNamePrefix + ev.Action)
	lr.SetTimestamp(pcommon.NewTimestampFromTime(ev.Time))
	lr.Body().SetStr(string(body))
	lr.Attributes().PutStr(audit.AttrID, id)
	payload, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	if err != nil {
		return "", err
	}
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+endpoint+"/v1/logs", bytes.NewReader(payload))
		req.Header.Set("Content-Type", "application/x-protobuf")
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				stored, _ := audit.SafeID(id)
				return stored, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("poisoned record %d not accepted: %w", i, ctx.Err())
		case <-time.After(retryDelay(attempt)):
		}
	}
}

// Event returns the i-th event of a run, for the team-th team: a catalog action, a user (two in three)
// or the system, one to three targets, and metadata of about metadataBytes in a shape that varies by
// action.
func Event(rng *rand.Rand, actions []string, i, team, metadataBytes int) audit.Event {
	action := actions[rng.IntN(len(actions))]
	ev := audit.Event{
		Action: action,
		TeamID: fmt.Sprint(1000 + team),
		Time:   time.Now(),
	}
	if rng.IntN(3) > 0 {
		u := rng.IntN(5000)
		ev.Actor = auditlog.User(fmt.Sprint(u), fmt.Sprintf("user%d@example.com", u), fmt.Sprintf("User %d", u))
		ev.AccessRoute = []string{fmt.Sprintf("203.0.113.%d", rng.IntN(250)), "10.0.0.1"}
		ev.RemoteAddr = "10.0.0.1"
		if i%10 == 0 {
			ev.RemoteAddr = "unknown" // not an IP: indexed as text, kept out of ip fields
		}
		ev.UserAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36"
	} else {
		ev.Actor = auditlog.System()
	}
	for t := 0; t <= rng.IntN(3); t++ {
		ev.Targets = append(ev.Targets, audit.Target{Type: strings.SplitN(action, "_", 2)[0], ID: fmt.Sprint(rng.IntN(1_000_000))})
	}
	md := map[string]any{"seq": i}
	switch i % 3 { // the same key holds different types across events, as the specification warns
	case 0:
		md["value"] = rng.IntN(10000)
	case 1:
		md["value"] = map[string]any{"nested": true, "level": rng.IntN(10)}
	case 2:
		md["value"] = "text"
	}
	if metadataBytes > 0 {
		auditlog.Changed(md, "description", strings.Repeat("a", metadataBytes/2), strings.Repeat("b", metadataBytes/2))
	}
	ev.Metadata = md
	return ev
}

// Malformed returns the k-th of a rotation of records that must end in quarantine: bad JSON, a
// missing team, hostile team ids, a bad actor (the processor refuses them) and metadata too large to
// index (the exporter refuses it).
func Malformed(k int) (rec sdklogRecord, team string) {
	bodies := []string{
		`{"action":"job_updated","team_id":1000,"actor":{"type":"system"},"metadata":{"blob":"` + strings.Repeat("x", 1536<<10) + `"}}`,
		`{"action":"job_created","team_id":`,
		`{"action":"job_created","actor":{"type":"system"}}`,
		`{"action":"job_created","team_id":"../1000","actor":{"type":"system"}}`,
		`{"action":"job_created","team_id":"1000,1001","actor":{"type":"system"}}`,
		`{"action":"job_created","team_id":"*","actor":{"type":"system"}}`,
		`{"action":"job_created","team_id":1000,"actor":{"type":"robot"}}`,
	}
	teams := []string{"1000", "", "", "../1000", "1000,1001", "*", "1000"}
	return malformedRecord(fmt.Sprintf("malformed-%d", k), bodies[k%len(bodies)]), teams[k%len(teams)]
}

// ackingProcessor batches records and exports each batch until the collector accepts it, noting the
// ids it acknowledged.
type ackingProcessor struct {
	exp     sdklog.Exporter
	batch   int
	mu      sync.Mutex
	pending []sdklog.Record
	ch      chan []sdklog.Record
	wg      sync.WaitGroup
	retries atomic.Int64
	err     error
	// expect holds the records emitted and not yet acknowledged; acked the acknowledged ones.
	expect, acked map[string]Expect
	firstErr      error
	resend        sdklog.Exporter
	resendEvery   int
	resent        atomic.Int64
}

func (p *ackingProcessor) expectID(id string, e Expect) {
	p.mu.Lock()
	p.expect[id] = e
	p.mu.Unlock()
}

// exportUntilAccepted sends recs to exp until it accepts them or ctx ends.
func (p *ackingProcessor) exportUntilAccepted(ctx context.Context, exp sdklog.Exporter, recs []sdklog.Record) error {
	for attempt := 0; ; attempt++ {
		err := exp.Export(ctx, recs)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.mu.Lock()
		if p.firstErr == nil {
			p.firstErr = err
		}
		p.mu.Unlock()
		p.retries.Add(1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retryDelay(attempt)):
		}
	}
}

func (p *ackingProcessor) start(ctx context.Context) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		n := 0
		for recs := range p.ch {
			if p.err != nil {
				continue // past the deadline: drain, acknowledging nothing more
			}
			if err := p.exportUntilAccepted(ctx, p.exp, recs); err != nil {
				p.err = err
				continue
			}
			p.ack(recs)
			n++
			if p.resend != nil && p.resendEvery > 0 && n%p.resendEvery == 0 {
				if err := p.exportUntilAccepted(ctx, p.resend, recs); err != nil {
					p.err = err
					continue
				}
				p.resent.Add(int64(len(recs)))
			}
		}
	}()
}

// ack moves the records' ids from expected to acknowledged.
func (p *ackingProcessor) ack(recs []sdklog.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range recs {
		recs[i].WalkAttributes(func(kv attribute.KeyValue) bool {
			if kv.Key != audit.AttrID {
				return true
			}
			id := kv.Value.AsString()
			if e, ok := p.expect[id]; ok {
				delete(p.expect, id)
				p.acked[id] = e
			}
			return false
		})
	}
}

func (p *ackingProcessor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }

func (p *ackingProcessor) OnEmit(_ context.Context, r *sdklog.Record) error {
	p.mu.Lock()
	p.pending = append(p.pending, r.Clone())
	var full []sdklog.Record
	if len(p.pending) >= p.batch {
		full, p.pending = p.pending, nil
	}
	p.mu.Unlock()
	if full != nil {
		p.ch <- full // blocks while the collector pushes back: the load adapts
	}
	return nil
}

func (p *ackingProcessor) ForceFlush(context.Context) error {
	p.mu.Lock()
	rest := p.pending
	p.pending = nil
	p.mu.Unlock()
	if len(rest) > 0 {
		p.ch <- rest
	}
	return nil
}

func (p *ackingProcessor) Shutdown(ctx context.Context) error {
	_ = p.ForceFlush(ctx)
	close(p.ch)
	p.wg.Wait()
	return p.exp.Shutdown(ctx)
}
