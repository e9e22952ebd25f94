package auditelasticsearchexporter

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/plog"
	pdatareq "go.opentelemetry.io/collector/pdata/xpdata/request"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/document"
)

func offlineExporter(t testing.TB) *auditExporter {
	cfg := createDefaultConfig()
	cfg.Endpoints = []string{"http://127.0.0.1:9"}
	e, err := newExporter(exportertest.NewNopSettings(NewFactory().Type()), cfg)
	require.NoError(t, err)
	return e
}

// mixedBatch is events of three teams, an invalid record and a record that is not an audit record.
func mixedBatch(t *testing.T) plog.Logs {
	ld := normalized(t, seedSample, rawEvent(7, "job_created", `,"metadata":{"n":1}`), rawEvent("acme-corp", "user_login", ""),
		rawEvent("../x", "job_created", ""))
	lr := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().AppendEmpty()
	lr.Body().SetStr("GET /health 200") // no audit.status: not an audit record
	return ld
}

func converted(t *testing.T, e *auditExporter, ld plog.Logs) *docsRequest {
	req, err := e.convert(context.Background(), ld)
	require.NoError(t, err)
	return req.(*docsRequest)
}

// sameItems compares what a queued item must keep: its placement, its document and, for a quarantine
// document, its stage and reasons.
func sameItems(t *testing.T, want, got []*item) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		w, g := want[i], got[i]
		assert.Equal(t, [5]string{w.index, w.id, w.routing, w.eventID, w.hash}, [5]string{g.index, g.id, g.routing, g.eventID, g.hash}, "item %d", i)
		assert.Equal(t, string(w.doc), string(g.doc), "item %d", i)
		assert.Equal(t, w.q == nil, g.q == nil, "item %d", i)
		if w.q != nil && g.q != nil {
			assert.Equal(t, w.q.Stage, g.q.Stage)
			assert.Equal(t, w.q.Reasons, g.q.Reasons)
		}
	}
}

func TestQueueEncodingRoundTrips(t *testing.T) {
	e := offlineExporter(t)
	req := converted(t, e, mixedBatch(t))
	require.Equal(t, 4, req.ItemsCount(), "the plain log record is not an audit record")
	require.NotNil(t, req.items[3].q, "the invalid record is a quarantine document")

	enc := queueEncoding{e}
	b, err := enc.Marshal(context.Background(), req)
	require.NoError(t, err)
	_, back, err := enc.Unmarshal(b)
	require.NoError(t, err)
	sameItems(t, req.items, back.(*docsRequest).items)
	assert.Equal(t, req.BytesSize(), back.BytesSize())

	// Every cut of an entry is refused with an error, never a panic or a shorter request.
	for n := len(queueFormat); n < len(b); n++ {
		_, _, err := enc.Unmarshal(b[:n])
		require.Error(t, err, "an entry cut at %d bytes", n)
	}
}

// An entry the exporter queued before documents were (records as protobuf, with or without the
// request context) is converted when read: an upgrade with a full persistent queue loses nothing.
func TestQueueEncodingReadsEntriesOfRecords(t *testing.T) {
	e := offlineExporter(t)
	ld := mixedBatch(t)
	want := converted(t, e, ld)
	withCtx, err := pdatareq.MarshalLogs(context.Background(), ld)
	require.NoError(t, err)
	bare, err := (&plog.ProtoMarshaler{}).MarshalLogs(ld)
	require.NoError(t, err)
	for name, b := range map[string][]byte{"with context": withCtx, "records only": bare} {
		t.Run(name, func(t *testing.T) {
			_, got, err := queueEncoding{e}.Unmarshal(b)
			require.NoError(t, err)
			// The documents are encoded again, at a later ingest time: compare everything but that.
			g := got.(*docsRequest).items
			require.Len(t, g, len(want.items))
			for i := range g {
				assert.Equal(t, want.items[i].id, g[i].id)
				assert.Equal(t, want.items[i].index, g[i].index)
				assert.Equal(t, want.items[i].hash, g[i].hash)
			}
		})
	}
}

func FuzzQueueEntry(f *testing.F) {
	for _, payload := range []string{
		"\x01\x00\x01a\x01b\x01c\x01d\x01e\x02{}",
		"\x01\x01\x01a\x01b\x00\x00\x00\x02{}\x0avalidation\x01\x01r",
		"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
		"\x02\x00\x01a\x01b\x01c\x01d\x01e\x7f{}",
	} {
		f.Add(append([]byte(queueFormat), s2.Encode(nil, []byte(payload))...))
	}
	f.Add([]byte{0x0a, 0x02})
	e := offlineExporter(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, req, err := queueEncoding{e}.Unmarshal(b)
		if err != nil {
			return
		}
		// What decodes must encode to an entry that decodes to the same documents.
		again, err := queueEncoding{e}.Marshal(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		_, back, err := queueEncoding{e}.Unmarshal(again)
		if err != nil {
			t.Fatalf("re-encoded entry: %v", err)
		}
		if back.ItemsCount() != req.ItemsCount() {
			t.Fatalf("%d documents, then %d", req.ItemsCount(), back.ItemsCount())
		}
	})
}

func TestMergeSplitKeepsEveryDocument(t *testing.T) {
	mk := func(sizes ...int) *docsRequest {
		items := make([]*item, len(sizes))
		for i, n := range sizes {
			items[i] = &item{index: "i", id: string(rune('a' + i)), doc: make([]byte, n)}
		}
		return newDocsRequest(items)
	}
	count := func(rs []*docsRequest) (n int) {
		for _, r := range rs {
			n += r.ItemsCount()
		}
		return n
	}

	t.Run("items", func(t *testing.T) {
		out, err := mk(1, 1, 1).MergeSplit(context.Background(), 2, exporterhelper.RequestSizerTypeItems, mk(1, 1, 1, 1))
		require.NoError(t, err)
		var rs []*docsRequest
		for _, r := range out {
			rs = append(rs, r.(*docsRequest))
		}
		require.Len(t, rs, 4)
		assert.Equal(t, 7, count(rs))
		for _, r := range rs[:3] {
			assert.Equal(t, 2, r.ItemsCount())
		}
		assert.Equal(t, 1, rs[3].ItemsCount(), "the last request is the smallest")
	})
	t.Run("bytes, with a document larger than the limit", func(t *testing.T) {
		out, err := mk(100, 100).MergeSplit(context.Background(), 400, exporterhelper.RequestSizerTypeBytes, mk(1000, 100))
		require.NoError(t, err)
		var rs []*docsRequest
		for _, r := range out {
			rs = append(rs, r.(*docsRequest))
			assert.True(t, r.BytesSize() <= 400 || r.ItemsCount() == 1, "a request over the limit holds one document")
		}
		assert.Equal(t, 4, count(rs), "the oversized document travels alone, it is not dropped")
	})
	t.Run("no limit", func(t *testing.T) {
		out, err := mk(1).MergeSplit(context.Background(), 0, exporterhelper.RequestSizerTypeItems, mk(1, 1))
		require.NoError(t, err)
		require.Len(t, out, 1)
		assert.Equal(t, 3, out[0].ItemsCount())
	})
}

func TestOnErrorRetriesOnlyWhatWaits(t *testing.T) {
	a, b := &item{id: "a"}, &item{id: "b"}
	req := newDocsRequest([]*item{a, b})
	err := exporterhelper.NewThrottleRetry(errors.New("429"), 0)
	assert.Same(t, req, req.OnError(err), "an error without documents retries the whole request")
	left := req.OnError(&notStored{items: []*item{b}, err: err})
	assert.Equal(t, []*item{b}, left.(*docsRequest).items)
}

// A document Elasticsearch refuses after the queue is quarantined with a record rebuilt from the
// document: the canonical event, its id and time, which a replay takes like any other record.
func TestDocRecordIsTheCanonicalEvent(t *testing.T) {
	e := offlineExporter(t)
	req := converted(t, e, normalized(t, seedSample))
	it := req.items[0]
	rebuilt := plog.NewLogs()
	_, _, lr := document.EventRecord(rebuilt, it.doc, it.eventID)
	got, err := json.Marshal(lr.Body().AsRaw())
	require.NoError(t, err)
	var seed, body map[string]any
	require.NoError(t, json.Unmarshal([]byte(seedSample), &seed))
	require.NoError(t, json.Unmarshal(got, &body))
	for _, f := range audit.BodyFields {
		if _, ok := seed[f]; ok {
			assert.Contains(t, body, f)
		}
	}
	assert.Len(t, body, len(seed), "only the specification's fields: %v", body)
	id, _ := lr.Attributes().Get(audit.AttrID)
	assert.Equal(t, it.eventID, id.Str())
	assert.False(t, lr.Timestamp() == 0)

	// Through the processor again, it is the same event: same id, same content hash.
	again := converted(t, e, processed(t, rebuilt))
	require.Nil(t, again.items[0].q, "the rebuilt record is a valid event")
	assert.Equal(t, it.id, again.items[0].id)
	assert.Equal(t, it.hash, again.items[0].hash)
}

// BenchmarkQueueEncoding is the queue's own cost per document: encoding a request of 500 documents
// for the persistent queue and decoding it again.
func BenchmarkQueueEncoding(b *testing.B) {
	e := offlineExporter(b)
	bodies := make([]string, 500)
	for i := range bodies {
		bodies[i] = rawEvent(i%100, "team_settings_changed", `,"metadata":{"setting":"sso","before":{"enabled":false},"after":{"enabled":true},"reason":"quarterly access review of the engineering team"}`)
	}
	req, err := e.convert(context.Background(), normalized(b, bodies...))
	require.NoError(b, err)
	enc := queueEncoding{e}
	b.ReportAllocs()
	for b.Loop() {
		raw, err := enc.Marshal(context.Background(), req)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := enc.Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
	}
	raw, _ := enc.Marshal(context.Background(), req)
	b.ReportMetric(float64(len(raw))/500, "stored-bytes/doc")
	b.ReportMetric(float64(req.BytesSize())/500, "doc-bytes/doc")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/500, "ns/doc")
}
