package auditelasticsearchexporter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exporterhelper/xexporterhelper"
	"go.opentelemetry.io/collector/pdata/plog"
	pdatareq "go.opentelemetry.io/collector/pdata/xpdata/request"

	"github.com/auditpipe/auditpipe/internal/document"
)

// The queue stage. Records are encoded into their documents before the sending queue (convert), so
// the queue holds documents ready for _bulk: the persistent queue writes and reads them as bytes
// instead of marshalling records to protobuf and back, the batcher merges lists instead of copying
// records, and a retry sends the same bytes again without encoding anything twice.

// docsRequest is what exporterhelper queues, batches and retries: documents ready for _bulk.
type docsRequest struct {
	items []*item
	bytes int // BytesSize, counted once
}

var (
	_ xexporterhelper.Request             = (*docsRequest)(nil)
	_ xexporterhelper.RequestErrorHandler = (*docsRequest)(nil)
)

func newDocsRequest(items []*item) *docsRequest {
	r := &docsRequest{items: items}
	for _, it := range items {
		r.bytes += it.size()
	}
	return r
}

func (r *docsRequest) ItemsCount() int { return len(r.items) }

func (r *docsRequest) BytesSize() int { return r.bytes }

// MergeSplit appends r2's documents to r's and cuts the result into requests of at most maxSize
// items (or bytes). A document larger than maxSize bytes travels alone: nothing is ever dropped.
func (r *docsRequest) MergeSplit(_ context.Context, maxSize int, szt exporterhelper.RequestSizerType, r2 xexporterhelper.Request) ([]xexporterhelper.Request, error) {
	if r2 != nil {
		o, ok := r2.(*docsRequest)
		if !ok {
			return nil, fmt.Errorf("cannot merge a %T into audit documents", r2)
		}
		r.items = append(r.items, o.items...)
		r.bytes += o.bytes
	}
	if maxSize <= 0 {
		return []xexporterhelper.Request{r}, nil
	}
	bySize := szt == exporterhelper.RequestSizerTypeBytes
	var out []xexporterhelper.Request
	for rest := r.items; len(rest) > 0; {
		n, size := 0, 0
		for n < len(rest) {
			s := 1
			if bySize {
				s = rest[n].size()
			}
			if n > 0 && size+s > maxSize {
				break
			}
			n, size = n+1, size+s
		}
		out = append(out, newDocsRequest(rest[:n:n]))
		rest = rest[n:]
	}
	return out, nil
}

// OnError keeps, for exporterhelper's next try, only the documents the export did not settle.
func (r *docsRequest) OnError(err error) xexporterhelper.Request {
	if ns, ok := errors.AsType[*notStored](err); ok {
		return newDocsRequest(ns.items)
	}
	return r
}

// notStored is the error of an export that left documents waiting on a condition of the cluster.
// It is never permanent; it wraps a throttle when Elasticsearch asked to slow down.
type notStored struct {
	items []*item
	err   error
}

func (e *notStored) Error() string { return e.err.Error() }
func (e *notStored) Unwrap() error { return e.err }

// queueEncoding is how the persistent queue stores a docsRequest: a version tag, then, compressed
// with S2, each document with its placement, length-prefixed. Compression pays for itself: the
// storage's cost grows with the bytes it writes, and audit documents, which repeat most of their
// field names and many values, compress well (BenchmarkQueueEncoding). Queue entries written by an
// earlier version of the exporter (records as protobuf) are read and converted on the way out, so an
// upgrade loses nothing.
type queueEncoding struct{ e *auditExporter }

const queueFormat = "auditpipe.docs.v1+s2\n"

// maxEntryBytes bounds what a queue entry may claim to expand to, so that a corrupt entry cannot
// make the exporter allocate without limit. An entry is one OTLP request's documents.
const maxEntryBytes = 1 << 30

const (
	kindEvent      = 0
	kindQuarantine = 1
)

func (queueEncoding) Marshal(_ context.Context, req xexporterhelper.Request) ([]byte, error) {
	r, ok := req.(*docsRequest)
	if !ok {
		return nil, fmt.Errorf("cannot queue a %T as audit documents", req)
	}
	size := binary.MaxVarintLen64
	for _, it := range r.items {
		size += 8*binary.MaxVarintLen32 + len(it.index) + len(it.id) + len(it.routing) + len(it.eventID) + len(it.hash) + len(it.doc)
		if it.q != nil {
			size += len(it.q.Stage) + binary.MaxVarintLen32
			for _, reason := range it.q.Reasons {
				size += binary.MaxVarintLen32 + len(reason)
			}
		}
	}
	bp := encodeBufs.Get().(*[]byte)
	defer encodeBufs.Put(bp)
	b := slices.Grow((*bp)[:0], size)
	b = binary.AppendUvarint(b, uint64(len(r.items)))
	for _, it := range r.items {
		if it.q == nil {
			b = append(b, kindEvent)
		} else {
			b = append(b, kindQuarantine)
		}
		for _, s := range [...]string{it.index, it.id, it.routing, it.eventID, it.hash} {
			b = appendField(b, s)
		}
		b = appendField(b, it.doc)
		if it.q != nil {
			b = appendField(b, it.q.Stage)
			b = binary.AppendUvarint(b, uint64(len(it.q.Reasons)))
			for _, reason := range it.q.Reasons {
				b = appendField(b, reason)
			}
		}
	}
	*bp = b
	out := make([]byte, len(queueFormat)+s2.MaxEncodedLen(len(b)))
	copy(out, queueFormat)
	return out[:len(queueFormat)+len(s2.Encode(out[len(queueFormat):], b))], nil
}

var encodeBufs = sync.Pool{New: func() any { return new([]byte) }}

func appendField[S string | []byte](b []byte, s S) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (enc queueEncoding) Unmarshal(data []byte) (context.Context, xexporterhelper.Request, error) {
	ctx := context.Background()
	if len(data) < len(queueFormat) || string(data[:len(queueFormat)]) != queueFormat {
		// An entry of the exporter before documents were queued: a batch of records.
		ctx, ld, err := pdatareq.UnmarshalLogs(data)
		if errors.Is(err, pdatareq.ErrInvalidFormat) { // written without the request context
			ld, err = (&plog.ProtoUnmarshaler{}).UnmarshalLogs(data)
		}
		if err != nil {
			return ctx, nil, err
		}
		req, err := enc.e.convert(ctx, ld)
		return ctx, req, err
	}
	data = data[len(queueFormat):]
	size, err := s2.DecodedLen(data)
	if err == nil && size > maxEntryBytes {
		err = fmt.Errorf("claims %d bytes", size)
	}
	if err == nil {
		data, err = s2.Decode(make([]byte, size), data)
	}
	if err != nil {
		return ctx, nil, fmt.Errorf("queue entry: %w", err)
	}
	// One string for all of the entry's strings, one array for its items: a few allocations per entry.
	d := decoder{data: data, str: string(data)}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(data)) { // every document takes more than a byte
		d.err = errors.New("document count exceeds the entry")
	}
	if d.err != nil {
		return ctx, nil, fmt.Errorf("queue entry: %w", d.err)
	}
	all := make([]item, n)
	items := make([]*item, n)
	for i := range all {
		it := &all[i]
		kind := d.byte()
		it.index, it.id, it.routing, it.eventID, it.hash = d.string(), d.string(), d.string(), d.string(), d.string()
		it.doc = d.bytes()
		if kind == kindQuarantine {
			it.q = &document.Quarantine{Stage: d.string()}
			for k := d.uvarint(); k > 0 && d.err == nil; k-- {
				it.q.Reasons = append(it.q.Reasons, d.string())
			}
		} else if kind != kindEvent && d.err == nil {
			d.err = fmt.Errorf("unknown document kind %d", kind)
		}
		if d.err != nil {
			return ctx, nil, fmt.Errorf("queue entry, document %d: %w", i, d.err)
		}
		items[i] = it
	}
	return ctx, newDocsRequest(items), nil
}

// decoder reads the fields of a queue entry; str holds the same bytes as data, so that strings are
// cut from it without copying each.
type decoder struct {
	data []byte
	str  string
	off  int
	err  error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.data[d.off:])
	if n <= 0 {
		d.err = errors.New("truncated length")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.data) {
		d.err = errors.New("truncated entry")
		return 0
	}
	d.off++
	return d.data[d.off-1]
}

// span returns the bounds of the next length-prefixed field; after an error, an empty one.
func (d *decoder) span() (int, int) {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.data)-d.off) {
		d.err = errors.New("field exceeds the entry")
	}
	if d.err != nil {
		return 0, 0
	}
	start := d.off
	d.off += int(n)
	return start, d.off
}

func (d *decoder) string() string {
	start, end := d.span()
	return d.str[start:end]
}

func (d *decoder) bytes() []byte {
	start, end := d.span()
	return d.data[start:end:end]
}
