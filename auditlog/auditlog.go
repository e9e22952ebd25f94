// Package auditlog lets a Go service emit audit events as OpenTelemetry log records in one call.
//
//	al := auditlog.New(loggerProvider)
//	ev := audit.Event{Action: audit.ActionJobUserAccessChanged, TeamID: "191796",
//		Actor:   auditlog.User("445177", "ann+oats@gem.com", "Ann Samuelson"),
//		Targets: []audit.Target{{Type: "job", ID: "313520"}},
//		Metadata: auditlog.Changed(nil, "access_level_id", 7347, 7349)}
//	auditlog.FromRequest(&ev, r)
//	id, err := al.Emit(ctx, ev)
//
// Records carry the event name "audit.<action>", the canonical body and the event id in audit.id, so
// the audit processor recognizes and normalizes them with its default configuration. Each event gets
// a unique id (UUIDv7) unless it has one, so retries by the OpenTelemetry SDK or the collector never
// store it twice.
package auditlog

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"

	"github.com/auditpipe/auditpipe/audit"
)

// ScopeName is the instrumentation scope of the records this package emits.
const ScopeName = "github.com/auditpipe/auditpipe/auditlog"

// Logger emits audit events.
type Logger struct {
	logger log.Logger
	now    func() time.Time
}

// New returns a Logger on the provider (an OpenTelemetry SDK LoggerProvider, typically with an OTLP
// exporter pointed at the audit collector).
func New(provider log.LoggerProvider) *Logger {
	return &Logger{logger: provider.Logger(ScopeName), now: time.Now}
}

// Emit validates the event, fills in its id and time when missing, and emits it. It returns the event
// id. An invalid event is not emitted: the error says what to fix.
func (l *Logger) Emit(ctx context.Context, ev audit.Event) (string, error) {
	if err := Validate(ev); err != nil {
		return "", err
	}
	if ev.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return "", fmt.Errorf("auditlog: event id: %w", err)
		}
		ev.ID = id.String()
	}
	if ev.Time.IsZero() {
		ev.Time = l.now()
	}
	l.logger.Emit(ctx, Record(ev))
	return ev.ID, nil
}

// Record is the log record of an event whose id and time are set (Emit sets them), for senders that
// add attributes of their own before emitting it.
func Record(ev audit.Event) log.Record {
	var r log.Record
	r.SetEventName(audit.EventNamePrefix + ev.Action)
	r.SetTimestamp(ev.Time)
	r.SetSeverity(log.SeverityInfo)
	r.SetBody(Body(ev))
	r.AddAttributes(attribute.String(audit.AttrID, ev.ID))
	return r
}

// Validate applies the rules the processor applies, so that a service learns of a bad event at once
// instead of from the quarantine index.
func Validate(ev audit.Event) error {
	var errs []error
	if err := audit.CheckActionName(ev.Action); err != nil {
		errs = append(errs, fmt.Errorf("action %w", err))
	}
	if err := audit.CheckTeamID(ev.TeamID); err != nil {
		errs = append(errs, fmt.Errorf("team_id %w", err))
	}
	switch ev.Actor.Type {
	case audit.ActorUser:
		if ev.Actor.ID == "" {
			errs = append(errs, errors.New("actor: a user actor needs an id"))
		}
	case audit.ActorSystem:
	default:
		errs = append(errs, fmt.Errorf("actor type %q is not %q or %q", ev.Actor.Type, audit.ActorUser, audit.ActorSystem))
	}
	if !ev.Time.IsZero() {
		if err := audit.CheckTime(ev.Time); err != nil {
			errs = append(errs, fmt.Errorf("time %w", err))
		}
	}
	if _, repaired := audit.SafeID(ev.ID); repaired {
		errs = append(errs, fmt.Errorf("id must be valid UTF-8 of at most %d bytes", audit.MaxIDBytes))
	}
	for i, t := range ev.Targets {
		if t.Type == "" || t.ID == "" {
			errs = append(errs, fmt.Errorf("targets[%d]: type and id are required", i))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("auditlog: invalid event: %w", err)
	}
	return nil
}

// Body renders the event in the canonical body shape: the specification's field names, every field
// present, null where empty.
func Body(ev audit.Event) attribute.Value {
	targets := make([]attribute.Value, len(ev.Targets))
	for i, t := range ev.Targets {
		targets[i] = attribute.MapValue(
			attribute.String(audit.FieldType, t.Type),
			attribute.String(audit.FieldID, t.ID),
			kv(audit.FieldMetadata, mapValue(t.Metadata)),
		)
	}
	route := make([]attribute.Value, len(ev.AccessRoute))
	for i, a := range ev.AccessRoute {
		route[i] = attribute.StringValue(a)
	}
	return attribute.MapValue(
		attribute.String(audit.FieldAction, ev.Action),
		attribute.String(audit.FieldTeamID, ev.TeamID),
		kv(audit.FieldActor, attribute.MapValue(
			attribute.String(audit.FieldType, string(ev.Actor.Type)),
			kv(audit.FieldID, optString(ev.Actor.ID)),
			kv(audit.FieldMetadata, mapValue(ev.Actor.Metadata)),
		)),
		kv(audit.FieldTargets, attribute.SliceValue(targets...)),
		kv(audit.FieldAccessRoute, attribute.SliceValue(route...)),
		kv(audit.FieldRemoteAddr, optString(ev.RemoteAddr)),
		kv(audit.FieldUserAgent, optString(ev.UserAgent)),
		kv(audit.FieldMetadata, mapValue(ev.Metadata)),
	)
}

func kv(k string, v attribute.Value) attribute.KeyValue {
	return attribute.KeyValue{Key: attribute.Key(k), Value: v}
}

func optString(s string) attribute.Value {
	if s == "" {
		return attribute.Value{}
	}
	return attribute.StringValue(s)
}

func mapValue(m map[string]any) attribute.Value {
	if m == nil {
		return attribute.Value{}
	}
	return Value(m)
}

// Value converts metadata to a log value: maps (keys sorted, for stable output), slices, strings,
// booleans, integers and floats as themselves, nil as empty, anything else as its fmt.Sprint text.
func Value(v any) attribute.Value {
	switch x := v.(type) {
	case nil:
		return attribute.Value{}
	case attribute.Value:
		return x
	case string:
		return attribute.StringValue(x)
	case bool:
		return attribute.BoolValue(x)
	case int:
		return attribute.IntValue(x)
	case int64:
		return attribute.Int64Value(x)
	case int32:
		return attribute.Int64Value(int64(x))
	case uint32:
		return attribute.Int64Value(int64(x))
	case float64:
		return attribute.Float64Value(x)
	case float32:
		return attribute.Float64Value(float64(x))
	case []byte:
		return attribute.ByteSliceValue(x)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		kvs := make([]attribute.KeyValue, len(keys))
		for i, k := range keys {
			kvs[i] = kv(k, Value(x[k]))
		}
		return attribute.MapValue(kvs...)
	case []any:
		vals := make([]attribute.Value, len(x))
		for i, e := range x {
			vals[i] = Value(e)
		}
		return attribute.SliceValue(vals...)
	}
	// Other slices ([]string, []int, …) element by element.
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array {
		vals := make([]attribute.Value, rv.Len())
		for i := range vals {
			vals[i] = Value(rv.Index(i).Interface())
		}
		return attribute.SliceValue(vals...)
	}
	if rv := reflect.ValueOf(v); rv.CanInt() {
		return attribute.Int64Value(rv.Int())
	}
	return attribute.StringValue(fmt.Sprint(v))
}

// User returns a user actor with the email and name metadata the specification shows.
func User(id, email, name string) audit.Actor {
	md := map[string]any{}
	if email != "" {
		md["email"] = email
	}
	if name != "" {
		md["name"] = name
	}
	if len(md) == 0 {
		md = nil
	}
	return audit.Actor{Type: audit.ActorUser, ID: id, Metadata: md}
}

// System returns the system actor, for what no individual can be held to.
func System() audit.Actor { return audit.Actor{Type: audit.ActorSystem} }

// Changed records a change of field key in metadata m (created when nil) the way the specification
// does: the new value under key and the original under "previous_<key>".
func Changed(m map[string]any, key string, from, to any) map[string]any {
	if m == nil {
		m = map[string]any{}
	}
	m[key] = to
	m["previous_"+key] = from
	return m
}

// FromRequest fills the event's request fields from an incoming HTTP request: the access route is
// the X-Forwarded-For chain followed by the peer address, the remote address is the peer that
// connected (not a header, which a client can forge), and the user agent is the request's.
func FromRequest(ev *audit.Event, r *http.Request) {
	peer := r.RemoteAddr
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	var route []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		for _, a := range strings.Split(h, ",") {
			if a = strings.TrimSpace(a); a != "" {
				route = append(route, a)
			}
		}
	}
	if peer != "" {
		route = append(route, peer)
	}
	ev.AccessRoute = route
	ev.RemoteAddr = peer
	ev.UserAgent = r.UserAgent()
}
