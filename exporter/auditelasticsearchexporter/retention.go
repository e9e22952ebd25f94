package auditelasticsearchexporter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/exporter/auditelasticsearchexporter/internal/metadata"
	"github.com/auditpipe/auditpipe/internal/shared/layout"
)

// Retention: expired data leaves by whole partitions, which works on any cluster (no ILM needed).
// Each purge is recorded first, as audit_partition_purged in the platform team's log; an event id
// derived from the partition makes that record once however many collectors purge.

func (e *auditExporter) startPurge() {
	every := e.cfg.Layout.PurgeInterval
	if every <= 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stopPurge, e.purgeDone = cancel, make(chan struct{})
	go func() {
		defer close(e.purgeDone)
		// The first purge a minute after start, not an interval later: a collector restarted more
		// often than purge_interval still purges.
		t := time.NewTimer(min(every, time.Minute))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if purged, err := e.purge(ctx); err != nil && ctx.Err() == nil {
				e.set.Logger.Warn("retention: purge incomplete; will try again", zap.Strings("purged", purged), zap.Error(err))
			}
			t.Reset(every)
		}
	}()
}

func (e *auditExporter) stopPurgeLoop() {
	if e.stopPurge != nil {
		e.stopPurge()
		<-e.purgeDone
	}
}

// purge deletes every partition past its retention class (and layout.PurgeGrace), after recording
// the purge in the platform log. It returns the partitions it deleted.
func (e *auditExporter) purge(ctx context.Context) ([]string, error) {
	now := e.now()
	res, err := e.es.Cat.Indices(e.es.Cat.Indices.WithContext(ctx), e.es.Cat.Indices.WithIndex(e.layout.PartitionPatterns()...),
		e.es.Cat.Indices.WithFormat("json"), e.es.Cat.Indices.WithH("index", "docs.count"), e.es.Cat.Indices.WithExpandWildcards("all"))
	if err != nil {
		return nil, fmt.Errorf("listing partitions: %w", err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.IsError() {
		return nil, fmt.Errorf("listing partitions: %s: %s", res.Status(), audit.Truncate(string(raw), 512))
	}
	var indices []struct {
		Index string `json:"index"`
		Docs  string `json:"docs.count"`
	}
	if err := json.Unmarshal(raw, &indices); err != nil {
		return nil, fmt.Errorf("listing partitions: %w", err)
	}
	var purged []string
	for _, ix := range indices {
		p, ok := e.layout.Parse(ix.Index)
		if !ok {
			continue
		}
		at, expired := e.layout.Expired(p, now)
		if !expired {
			continue
		}
		docs, _ := strconv.ParseInt(ix.Docs, 10, 64)
		if err := e.recordPurge(ctx, p, at, docs); err != nil {
			return purged, fmt.Errorf("recording the purge of %s: %w", p.Index, err)
		}
		res, err := e.es.Indices.Delete([]string{p.Index}, e.es.Indices.Delete.WithContext(ctx))
		if err != nil {
			return purged, fmt.Errorf("deleting %s: %w", p.Index, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.IsError() && res.StatusCode != http.StatusNotFound {
			return purged, fmt.Errorf("deleting %s: %s: %s", p.Index, res.Status(), audit.Truncate(string(b), 512))
		}
		e.set.Logger.Info("retention: partition deleted", zap.String("index", p.Index), zap.String("class", p.Class),
			zap.Time("expired", at), zap.Int64("documents", docs))
		purged = append(purged, p.Index)
	}
	return purged, nil
}

// recordPurge stores the audit_partition_purged event of a partition, through the same path as any
// event: it is stored, found stored already, or quarantined, never dropped. It is timed at the
// partition's expiry, and its id names the partition, so every purger records the same event.
func (e *auditExporter) recordPurge(ctx context.Context, p layout.Partition, expired time.Time, docs int64) error {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "otelcol-audit")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(metadata.ScopeName)
	lr := sl.LogRecords().AppendEmpty()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(expired))
	lr.SetObservedTimestamp(lr.Timestamp())
	lr.SetEventName(audit.EventName)
	lr.Attributes().PutStr(audit.AttrStatus, audit.StatusValid)
	lr.Attributes().PutStr(audit.AttrID, "purge:"+p.Index)
	body := lr.Body().SetEmptyMap()
	body.PutStr(audit.FieldAction, audit.ActionAuditPartitionPurged)
	body.PutStr(audit.FieldTeamID, e.layout.PlatformTeam())
	actor := body.PutEmptyMap(audit.FieldActor)
	actor.PutStr(audit.FieldType, string(audit.ActorSystem))
	actor.PutEmptyMap(audit.FieldMetadata).PutStr("name", "auditelasticsearch retention")
	target := body.PutEmptySlice(audit.FieldTargets).AppendEmpty().SetEmptyMap()
	target.PutStr(audit.FieldType, "index")
	target.PutStr(audit.FieldID, p.Index)
	md := body.PutEmptyMap(audit.FieldMetadata)
	md.PutStr("tier", p.Tier)
	if p.Team != "" {
		md.PutStr("team", p.Team)
	}
	md.PutStr("retention_class", p.Class)
	if r, ok := e.layout.Retention(p.Class); ok {
		md.PutStr("retention", r.String())
	}
	md.PutStr("period_start", p.Start.Format(time.RFC3339))
	md.PutStr("period_end", p.End.Format(time.RFC3339))
	md.PutInt("documents", docs)

	it := &item{}
	e.prepare(it, source{rl.Resource(), sl.Scope(), lr}, e.now(), nil)
	if _, err := e.deliver(ctx, []*item{it}, e.now()); err != nil {
		return err
	}
	if it.q != nil {
		e.set.Logger.Error("retention: the purge record was quarantined", zap.String("index", p.Index), zap.Strings("reasons", it.q.Reasons))
	}
	return nil
}
