package auditelasticsearchexporter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/document"
	"github.com/auditpipe/auditpipe/internal/shared/pjson"
)

// The exporter's one rule: a record leaves the exporter only as indexed, as a verified duplicate, or
// quarantined. classifyResponse and classifyItem decide, from Elasticsearch's answers, which of those
// paths a document takes next; nothing they return drops a document.

// requestOutcome is what a whole _bulk answer means for the documents it carried.
type requestOutcome int

const (
	// requestItems: the request ran; each item has its own answer.
	requestItems requestOutcome = iota
	// requestRetry: the request did not run, or its answer is lost (429, 5xx, 401/403, a network
	// error, an unreadable answer): send every document again after a backoff.
	requestRetry
	// requestSplit: 413 (too large) or 400 (one bad document fails the whole request, such as an _id
	// Elasticsearch refuses): send each half on its own, down to the single document at fault.
	requestSplit
)

func classifyResponse(status int) requestOutcome {
	switch status {
	case http.StatusOK:
		return requestItems
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return requestSplit
	}
	return requestRetry
}

// itemOutcome is what one bulk item's answer means for its document.
type itemOutcome int

const (
	itemStored   itemOutcome = iota // 200/201: written
	itemConflict                    // 409: this _id is stored already; compare event.hash to tell a redelivery from a reused id
	itemRetry                       // a condition of the cluster, the index or the node: retry with backoff, never quarantine
	itemReject                      // the document's own fault (mapping, parsing): quarantine it with the reason
)

// transientErrors are item error types about the cluster, the index or the node, never about the
// document. They are retried whatever the item's status says: the shard limit's validation_exception
// and a write block's cluster_block_exception come as 400 and 403.
var transientErrors = map[string]bool{
	"cluster_block_exception":                 true, // read-only index or cluster, flood-stage disk
	"index_closed_exception":                  true,
	"index_not_found_exception":               true, // deleted, or automatic creation restricted
	"validation_exception":                    true, // the new index would exceed cluster.max_shards_per_node
	"unavailable_shards_exception":            true,
	"no_shard_available_action_exception":     true,
	"primary_missing_action_exception":        true,
	"es_rejected_execution_exception":         true,
	"circuit_breaking_exception":              true,
	"process_cluster_event_timeout_exception": true,
	"resource_already_exists_exception":       true, // two creations of one index raced
	"node_closed_exception":                   true,
	"node_not_connected_exception":            true,
	"connect_transport_exception":             true,
	"receive_timeout_transport_exception":     true,
	"security_exception":                      true, // credentials or privileges: an operator's fix, not the document's
}

func classifyItem(status int, errType string) itemOutcome {
	switch {
	case status == http.StatusOK || status == http.StatusCreated:
		return itemStored
	case status == http.StatusConflict:
		return itemConflict
	case transientErrors[errType]:
		return itemRetry
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusNotFound,
		status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		return itemRetry
	case status >= 400:
		return itemReject
	}
	return itemRetry // an answer not understood drops nothing
}

// sorted is what one pass over a set of documents found, beside the documents it document.
type sorted struct {
	retry    []*item // to send again after a backoff
	reject   []*item // refused for their own fault
	conflict []*item // 409: to verify
	stored   []*item // written (events and quarantine documents)
	// throttle is the longest Retry-After of the whole-request answers; err the last whole-request
	// error, for the log and for exporterhelper.
	throttle time.Duration
	err      error
}

// bulkResponse is the part of a _bulk answer the exporter reads (see filterPath).
type bulkResponse struct {
	Items []struct {
		Create struct {
			Status int       `json:"status"`
			Error  errorBody `json:"error"`
		} `json:"create"`
	} `json:"items"`
}

type errorBody struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

const filterPath = "items.*.status,items.*.error.type,items.*.error.reason"

// bulk sends items in requests of at most flush.bytes and sorts them by answer.
func (e *auditExporter) bulk(ctx context.Context, items []*item) sorted {
	var out sorted
	for start := 0; start < len(items); {
		end, size := start, 0
		for end < len(items) && (end == start || size+items[end].size() <= e.cfg.Flush.Bytes) {
			size += items[end].size()
			end++
		}
		e.send(ctx, items[start:end], &out)
		start = end
	}
	return out
}

// size is the bytes an item takes in a bulk request, near enough.
func (it *item) size() int { return len(it.doc) + len(it.id) + len(it.index) + len(it.routing) + 52 }

// send posts one bulk request and sorts its documents into out; a 400 or 413 splits the request.
func (e *auditExporter) send(ctx context.Context, batch []*item, out *sorted) {
	size := 0
	for _, it := range batch {
		size += it.size()
	}
	bp := e.bufs.Get().(*[]byte)
	// Grown once to the request's size: a pooled buffer may be gone after a garbage collection, and
	// growing by doubling would copy the request several times.
	b := slices.Grow((*bp)[:0], size)
	for _, it := range batch {
		b = append(b, `{"create":{"_index":`...)
		b = pjson.AppendString(b, it.index)
		b = append(b, `,"_id":`...)
		b = pjson.AppendString(b, it.id)
		if it.routing != "" {
			b = append(b, `,"routing":`...)
			b = pjson.AppendString(b, it.routing)
		}
		b = append(b, "}}\n"...)
		b = append(b, it.doc...)
		b = append(b, '\n')
	}
	*bp = b
	status, raw, retryAfter, err := e.post(ctx, b)
	if err == nil && status == http.StatusOK {
		// Elasticsearch answered every item, so it has read the whole body: the transport is done with
		// the buffer. After any other outcome it may still be reading it, and the buffer is left to
		// the garbage collector.
		e.bufs.Put(bp)
	}
	if err != nil {
		out.retry = append(out.retry, batch...)
		out.err = err
		return
	}
	switch classifyResponse(status) {
	case requestRetry:
		out.retry = append(out.retry, batch...)
		out.throttle = max(out.throttle, retryAfter)
		out.err = fmt.Errorf("bulk request: %d %s: %s", status, http.StatusText(status), audit.Truncate(string(raw), 512))
		return
	case requestSplit:
		if len(batch) == 1 {
			eb := requestError(raw)
			if eb.Type == "" {
				eb.Type = "status_" + strconv.Itoa(status)
			}
			batch[0].errType, batch[0].errReason = eb.Type, eb.Reason
			out.reject = append(out.reject, batch[0])
			return
		}
		e.set.Logger.Warn("bulk request refused whole; sending each half on its own to find the document at fault",
			zap.Int("status", status), zap.Int("documents", len(batch)), zap.String("error", audit.Truncate(string(raw), 256)))
		half := len(batch) / 2
		e.send(ctx, batch[:half], out)
		e.send(ctx, batch[half:], out)
		return
	}
	var br bulkResponse
	if err := json.Unmarshal(raw, &br); err != nil || len(br.Items) != len(batch) {
		out.retry = append(out.retry, batch...)
		out.err = fmt.Errorf("bulk response has %d items for %d documents (%v)", len(br.Items), len(batch), err)
		return
	}
	for i, entry := range br.Items {
		it, r := batch[i], entry.Create
		switch classifyItem(r.Status, r.Error.Type) {
		case itemStored:
			out.stored = append(out.stored, it)
		case itemConflict:
			out.conflict = append(out.conflict, it)
		case itemRetry:
			it.errType, it.errReason = r.Error.Type, r.Error.Reason
			out.retry = append(out.retry, it)
		case itemReject:
			it.errType, it.errReason = r.Error.Type, r.Error.Reason
			if it.errType == "" {
				it.errType = "status_" + strconv.Itoa(r.Status)
			}
			out.reject = append(out.reject, it)
		}
	}
}

// post sends a _bulk request and reads the whole answer.
func (e *auditExporter) post(ctx context.Context, body []byte) (status int, raw []byte, retryAfter time.Duration, err error) {
	e.telemetry.ExporterAuditBulkBytes.Add(ctx, int64(len(body)))
	began := time.Now()
	res, err := e.es.Bulk(bytes.NewReader(body), e.es.Bulk.WithContext(ctx), e.es.Bulk.WithFilterPath(filterPath))
	e.telemetry.ExporterAuditBulkLatency.Record(ctx, float64(time.Since(began).Microseconds())/1000)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("bulk request: %w", err)
	}
	defer res.Body.Close()
	raw, err = io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("bulk response: %w", err)
	}
	return res.StatusCode, raw, parseRetryAfter(res.Header.Get("Retry-After")), nil
}

// parseRetryAfter reads a Retry-After header: seconds, or an HTTP date.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// requestError reads the error of a failed whole request: {"error":{"type":…,"reason":…},"status":…}.
func requestError(raw []byte) errorBody {
	var r struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(raw, &r) != nil || len(r.Error) == 0 {
		return errorBody{Reason: audit.Truncate(string(raw), 512)}
	}
	var eb errorBody
	if json.Unmarshal(r.Error, &eb) != nil {
		var s string
		json.Unmarshal(r.Error, &s)
		return errorBody{Reason: s}
	}
	return eb
}

// verify reads the stored event.hash of documents answered 409. The same hash means a redelivery of
// a stored event (duplicate); another hash means a different event under a reused id, which goes to
// quarantine as id_conflict with both hashes. Documents that cannot be checked now are retried.
func (e *auditExporter) verify(ctx context.Context, items []*item) (dups, differ, retry []*item, err error) {
	refs := make([]document.Ref, len(items))
	for i, it := range items {
		refs[i] = document.Ref{Index: it.index, ID: it.id, Routing: it.routing}
	}
	docs, err := document.Hashes(ctx, e.es, refs)
	if err != nil {
		return nil, nil, items, fmt.Errorf("verifying duplicates: %w", err)
	}
	for i, d := range docs {
		it := items[i]
		switch {
		case d.ErrorType != "" || !d.Found:
			// Not readable now, or gone since the 409: send it again.
			retry = append(retry, it)
		case d.Hash == it.hash:
			dups = append(dups, it)
		default:
			it.storedHash = d.Hash
			differ = append(differ, it)
		}
	}
	return dups, differ, retry, nil
}
