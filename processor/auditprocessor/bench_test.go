package auditprocessor

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/auditpipe/auditpipe/internal/shared/pjson"
)

const benchBatch = 1000

// benchLogs builds a batch of realistic audit records in one encoding: a third the seed sample, a third
// a system actor, a third a team_settings_changed with large metadata.
func benchLogs(b *testing.B, encoding string) plog.Logs {
	seed := seedJSON(b)
	system := `{"action":"data_export","team_id":"acme-corp","actor":{"type":"system","id":null,"metadata":null},"targets":[{"type":"team","id":"acme-corp","metadata":{"kind":"nightly"}}],"access_route":[],"remote_addr":null,"user_agent":null,"metadata":{"format":"csv","rows":120394}}`
	var big strings.Builder
	big.WriteString(`{"action":"team_settings_changed","team_id":88231,"actor":{"type":"user","id":"u-3391","metadata":{"email":"ops@example.com","name":"Ops Admin"}},"targets":[{"type":"team","id":88231,"metadata":null}],"access_route":["203.0.113.9","10.0.3.1"],"remote_addr":"203.0.113.9","user_agent":"curl/8.5.0","metadata":{"setting":"captcha_protection_level","previous":{`)
	for i := 0; i < 40; i++ {
		if i > 0 {
			big.WriteByte(',')
		}
		fmt.Fprintf(&big, `"field_%02d":"value %d of the previous configuration"`, i, i)
	}
	big.WriteString(`},"current":{"level":"strict","rules":[1,2,3,4,5,6,7,8]}}}`)
	docs := []string{seed, system, big.String()}

	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "jobs-api")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	ts := pcommon.NewTimestampFromTime(time.Date(2025, 8, 1, 21, 0, 0, 0, time.UTC))
	for i := 0; i < benchBatch; i++ {
		lr := lrs.AppendEmpty()
		lr.SetTimestamp(ts + pcommon.Timestamp(i))
		lr.SetEventName("audit")
		doc := docs[i%len(docs)]
		switch encoding {
		case "map":
			if err := pjson.DecodeMap([]byte(doc), lr.Body().SetEmptyMap()); err != nil {
				b.Fatal(err)
			}
		case "string":
			lr.Body().SetStr(doc)
		case "attributes":
			m := pcommon.NewMap()
			if err := pjson.DecodeMap([]byte(doc), m); err != nil {
				b.Fatal(err)
			}
			a := lr.Attributes()
			for k, v := range m.All() {
				switch k {
				case "actor":
					for ak, av := range v.Map().All() {
						av.CopyTo(a.PutEmpty("audit.actor." + ak))
					}
				case "access_route":
					v.CopyTo(a.PutEmpty(attrForwardedFor))
				case "remote_addr":
					v.CopyTo(a.PutEmpty(attrClientAddress))
				case "user_agent":
					v.CopyTo(a.PutEmpty(attrUserAgent))
				default:
					v.CopyTo(a.PutEmpty("audit." + k))
				}
			}
		}
	}
	return ld
}

// BenchmarkProcessor normalizes batches of benchBatch records; compare with BenchmarkProtoMarshal of
// the same batch in the same run (see BENCHMARKS.md).
func BenchmarkProcessor(b *testing.B) {
	for _, enc := range []string{"map", "string", "attributes"} {
		b.Run(enc, func(b *testing.B) {
			src := benchLogs(b, enc)
			p, err := NewFactory().CreateLogs(context.Background(), processortest.NewNopSettings(NewFactory().Type()), createDefaultConfig(), consumertest.NewNop())
			if err != nil {
				b.Fatal(err)
			}
			ld := plog.NewLogs()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				src.CopyTo(ld)
				b.StartTimer()
				if err := p.ConsumeLogs(context.Background(), ld); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/record")
		})
	}
}

// BenchmarkProtoMarshal is the yardstick: one pass over the same batch by the OTLP protobuf encoder.
func BenchmarkProtoMarshal(b *testing.B) {
	for _, enc := range []string{"map", "string", "attributes"} {
		b.Run(enc, func(b *testing.B) {
			ld := benchLogs(b, enc)
			var m plog.ProtoMarshaler
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := m.MarshalLogs(ld); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/record")
		})
	}
}
