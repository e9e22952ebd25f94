package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/auditlog"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// The prebuilt sender: the load generator of the benchmarks. It shares the machine with the collector
// and Elasticsearch, so every microsecond it spends is taken from what it measures; the SDK path costs
// about 60 µs of CPU per event, more than the collector. Prebuild makes, before anything is measured,
// a pool of OTLP requests with the same events as the SDK path (auditlog's record shape), marshaled;
// each request Run sends is a copy of one of them with fresh UUIDv7 event ids written over
// placeholders, which costs about a microsecond per event.

// Prebuilt is a pool of requests for Config.Prebuilt.
type Prebuilt struct {
	templates []template
}

const (
	prebuiltSenders = 2   // requests in flight, as from a few services
	maxTemplates    = 256 // × Batch events: enough distinct (team, event) slots for 100,000 Zipf teams
	exportMethod    = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
)

// template is one marshaled request and where each of its events' id placeholder sits.
type template struct {
	payload []byte
	ids     [][]int // per event: offsets of its id placeholder (in audit.id and, routed, the _id)
	teams   []string
}

// placeholder is the id of slot n while the templates are built: a UUID's length, so that a UUID
// can be written over it.
func placeholder(n int) string { return fmt.Sprintf("%s%012d", placeholderPrefix, n) }

const placeholderPrefix = "00000000-0000-0000-0000-"

// Prebuild makes the requests of a plain load (no Bad, Poison, Resend or Rate) shaped by cfg's
// Count, Batch, Teams, Zipf, MetadataBytes and Route.
func Prebuild(cfg Config) (*Prebuilt, error) {
	if cfg.Bad > 0 || cfg.Poison > 0 || cfg.Resend != "" || cfg.Rate > 0 {
		return nil, errors.New("loadgen: Prebuilt sends plain load only (no Bad, Poison, Resend or Rate)")
	}
	cfg.defaults()
	k := maxTemplates
	if cfg.Count > 0 {
		k = min(k, (cfg.Count+cfg.Batch-1)/cfg.Batch)
	}
	rng := rand.New(rand.NewPCG(1, 2)) // the same run produces the same events
	var zipf *rand.Zipf
	if cfg.Zipf && cfg.Teams > 1 {
		zipf = rand.NewZipf(rand.New(rand.NewPCG(3, 4)), 1.1, 1, uint64(cfg.Teams-1))
	}
	actions := audit.DefaultCatalog().ActionNames()
	var m plog.ProtoMarshaler
	out := make([]template, k)
	slot := 0
	for t := range out {
		ld := plog.NewLogs()
		rl := ld.ResourceLogs().AppendEmpty()
		rl.Resource().Attributes().PutStr("service.name", "auditload")
		sl := rl.ScopeLogs().AppendEmpty()
		sl.Scope().SetName("auditload")
		if cfg.Route != nil {
			// contrib's exporter takes its mapping mode from the scope: the body map is the document.
			sl.Scope().Attributes().PutStr("elastic.mapping.mode", "bodymap")
		}
		tpl := &out[t]
		for range cfg.Batch {
			team := slot % cfg.Teams
			if zipf != nil {
				team = int(zipf.Uint64())
			}
			ev := Event(rng, actions, slot, team, cfg.MetadataBytes)
			ev.ID = placeholder(slot)
			lr := sl.LogRecords().AppendEmpty()
			lr.SetEventName(audit.EventNamePrefix + ev.Action)
			lr.SetTimestamp(pcommon.NewTimestampFromTime(ev.Time))
			lr.SetSeverityNumber(plog.SeverityNumberInfo)
			putValue(lr.Body(), auditlog.Body(ev))
			lr.Attributes().PutStr(audit.AttrID, ev.ID)
			if cfg.Route != nil {
				lr.Attributes().PutStr("elasticsearch.index", cfg.Route.Index(ev.TeamID, ev.Time))
				lr.Attributes().PutStr("elasticsearch.document_id", layout.DocID(ev.TeamID, ev.ID))
			}
			tpl.teams = append(tpl.teams, ev.TeamID)
			slot++
		}
		b, err := m.MarshalLogs(ld)
		if err != nil {
			return nil, err
		}
		tpl.payload = b
		// One pass over the request finds every placeholder and the slot it names.
		tpl.ids = make([][]int, len(tpl.teams))
		first := slot - len(tpl.teams)
		for off := 0; ; {
			j := bytes.Index(b[off:], []byte(placeholderPrefix))
			if j < 0 {
				break
			}
			at := off + j
			n, err := strconv.Atoi(string(b[at+len(placeholderPrefix) : at+len(placeholder(0))]))
			if err != nil || n < first || n >= slot {
				return nil, fmt.Errorf("a placeholder at %d names no event of its request", at)
			}
			tpl.ids[n-first] = append(tpl.ids[n-first], at)
			off = at + len(placeholder(0))
		}
		for i, offs := range tpl.ids {
			if len(offs) == 0 {
				return nil, fmt.Errorf("the id of event %d is not in its request", first+i)
			}
		}
	}
	return &Prebuilt{templates: out}, nil
}

// putValue sets dst to the OpenTelemetry API value v, as the SDK's OTLP exporter encodes it.
func putValue(dst pcommon.Value, v attribute.Value) {
	switch v.Type() {
	case attribute.BOOL:
		dst.SetBool(v.AsBool())
	case attribute.INT64:
		dst.SetInt(v.AsInt64())
	case attribute.FLOAT64:
		dst.SetDouble(v.AsFloat64())
	case attribute.STRING:
		dst.SetStr(v.AsString())
	case attribute.SLICE:
		s := dst.SetEmptySlice()
		for _, e := range v.AsSlice() {
			putValue(s.AppendEmpty(), e)
		}
	case attribute.MAP:
		m := dst.SetEmptyMap()
		for _, kv := range v.AsMap() {
			putValue(m.PutEmpty(string(kv.Key)), kv.Value)
		}
	}
}

// rawCodec sends request bytes (a marshaled ExportLogsServiceRequest) as they are and ignores the answer's content (a partial success
// is not expected from this collector: it acknowledges or fails a whole request).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { return nil }
func (rawCodec) Name() string                       { return "proto" }

func runPrebuilt(ctx context.Context, cfg Config) (Result, error) {
	templates := cfg.Prebuilt.templates
	conn, err := grpc.NewClient(cfg.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		return Result{}, err
	}
	defer conn.Close()

	res := Result{PerTeam: map[string]int64{}, Acked: map[string]Expect{}}
	var mu sync.Mutex // guards res
	var wg sync.WaitGroup
	begin := time.Now()
	res.Began = begin
	next := make(chan int) // request numbers, handed out while the run lasts
	go func() {
		defer close(next)
		for n := 0; ; n++ {
			if cfg.Count > 0 && n*cfg.Batch >= cfg.Count || cfg.Duration > 0 && time.Since(begin) >= cfg.Duration {
				return
			}
			select {
			case next <- n:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range prebuiltSenders {
		wg.Go(func() {
			var buf []byte
			ids := make([]string, 0, cfg.Batch)
			for n := range next {
				tpl := &templates[n%len(templates)]
				buf = append(buf[:0], tpl.payload...)
				ids = ids[:0]
				for _, offs := range tpl.ids {
					id := uuid.Must(uuid.NewV7()).String()
					for _, off := range offs {
						copy(buf[off:], id)
					}
					ids = append(ids, id)
				}
				for attempt := 0; ; attempt++ {
					err := conn.Invoke(ctx, exportMethod, &buf, new([]byte))
					if err == nil {
						break
					}
					mu.Lock()
					res.Retries++
					if res.FirstErr == nil {
						res.FirstErr = err
					}
					mu.Unlock()
					select {
					case <-ctx.Done():
						mu.Lock()
						res.Unacked += int64(len(ids))
						mu.Unlock()
						return
					case <-time.After(retryDelay(attempt)):
					}
				}
				mu.Lock()
				for i, id := range ids {
					res.Acked[id] = Expect{Team: tpl.teams[i]}
					res.PerTeam[tpl.teams[i]]++
				}
				res.Sent += int64(len(ids))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(begin)
	if res.Unacked > 0 {
		return res, fmt.Errorf("%d records were not acknowledged within the deadline of %s: %v", res.Unacked, cfg.Deadline, ctx.Err())
	}
	return res, nil
}
