// Package loadgen sends realistic audit events to a collector over OTLP/gRPC with the auditlog
// package, and counts exactly which events the collector acknowledged: every batch is retried until
// accepted, so "sent" means "the collector has it".
package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
)

// Config of a load run.
type Config struct {
	Endpoint      string        // OTLP/gRPC endpoint of the collector
	Rate          int           // events per second; 0 sends as fast as the collector accepts
	Duration      time.Duration // how long to send; 0 with Count
	Count         int           // how many events; 0 with Duration
	Teams         int           // events are spread over teams 1..Teams (numeric ids from 1000)
	MetadataBytes int           // approximate size of each event's metadata
	Batch         int           // events per OTLP request (default 500)
	// Bad, when set, mixes in one malformed record every Bad events (see Malformed).
	Bad int
}

// Result counts what the collector acknowledged.
type Result struct {
	Sent      int64 // valid events acknowledged
	Malformed int64 // malformed records acknowledged (expected in quarantine)
	PerTeam   map[string]int64
	Elapsed   time.Duration
	Retries   int64 // OTLP requests that failed and were sent again
}

// Run sends the configured load and returns when every emitted event was acknowledged.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.Teams <= 0 {
		cfg.Teams = 10
	}
	exp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(cfg.Endpoint), otlploggrpc.WithInsecure(),
		otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false})) // we retry, forever, and count
	if err != nil {
		return Result{}, err
	}
	sender := &ackingProcessor{exp: exp, batch: cfg.Batch, ch: make(chan []sdklog.Record, 4)}
	sender.start(ctx)
	provider := sdklog.NewLoggerProvider(
		sdklog.WithResource(resource.NewSchemaless(semconv.ServiceName("auditload"))),
		sdklog.WithProcessor(sender))
	al := auditlog.New(provider)
	raw := provider.Logger("auditload")

	res := Result{PerTeam: map[string]int64{}}
	rng := rand.New(rand.NewPCG(1, 2)) // the same run produces the same events
	actions := audit.DefaultCatalog().ActionNames()
	begin := time.Now()
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
			raw.Emit(ctx, Malformed(int(res.Malformed)))
			res.Malformed++
			continue
		}
		ev := Event(rng, actions, i, cfg.Teams, cfg.MetadataBytes)
		if _, err := al.Emit(ctx, ev); err != nil {
			return res, err
		}
		res.Sent++
		res.PerTeam[ev.TeamID]++
	}
	if err := provider.Shutdown(ctx); err != nil {
		return res, err
	}
	res.Elapsed = time.Since(begin)
	res.Retries = sender.retries.Load()
	return res, sender.err
}

// Event returns the i-th event of a run: a catalog action, a user (two in three) or the system, one to
// three targets, and metadata of about metadataBytes in a shape that varies by action.
func Event(rng *rand.Rand, actions []string, i, teams, metadataBytes int) audit.Event {
	action := actions[rng.IntN(len(actions))]
	ev := audit.Event{
		Action: action,
		TeamID: fmt.Sprint(1000 + i%teams),
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
func Malformed(k int) sdklogRecord {
	bodies := []string{
		`{"action":"job_updated","team_id":1000,"actor":{"type":"system"},"metadata":{"blob":"` + strings.Repeat("x", 1536<<10) + `"}}`,
		`{"action":"job_created","team_id":`,
		`{"action":"job_created","actor":{"type":"system"}}`,
		`{"action":"job_created","team_id":"../1000","actor":{"type":"system"}}`,
		`{"action":"job_created","team_id":"1000,1001","actor":{"type":"system"}}`,
		`{"action":"job_created","team_id":"*","actor":{"type":"system"}}`,
		`{"action":"job_created","team_id":1000,"actor":{"type":"robot"}}`,
	}
	return malformedRecord(fmt.Sprintf("malformed-%d", k), bodies[k%len(bodies)])
}

// ackingProcessor batches records and exports each batch until the collector accepts it.
type ackingProcessor struct {
	exp     sdklog.Exporter
	batch   int
	mu      sync.Mutex
	pending []sdklog.Record
	ch      chan []sdklog.Record
	wg      sync.WaitGroup
	retries atomic.Int64
	err     error
}

func (p *ackingProcessor) start(ctx context.Context) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for recs := range p.ch {
			for attempt := 0; ; attempt++ {
				err := p.exp.Export(ctx, recs)
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					p.err = ctx.Err()
					return
				}
				p.retries.Add(1)
				time.Sleep(min(time.Duration(attempt+1)*100*time.Millisecond, 2*time.Second))
			}
		}
	}()
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
