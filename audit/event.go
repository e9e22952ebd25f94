// Package audit holds what every part of the audit pipeline agrees on: the canonical event, its field
// and attribute names, the validation rules (above all the tenant key) and the action catalog. The
// processor, the exporter, the emitter package and the CLI all use this package and copy none of it.
package audit

import "time"

// ActorType says who initiated an action.
type ActorType string

// The two actor types of the specification.
const (
	ActorUser   ActorType = "user"   // an individual user; carries an id
	ActorSystem ActorType = "system" // anything that cannot be attributed to an individual
)

// Event is one audit event in canonical form. Ids are strings: the product emits numeric ids
// (team 191796, actor 445177), other sources may use slugs or UUIDs, and one type keeps them
// comparable everywhere; a number is written in plain decimal.
type Event struct {
	ID          string         `json:"-"` // the event id, the Elasticsearch _id; carried as audit.id
	Time        time.Time      `json:"-"` // when it happened; carried as the log record timestamp
	Action      string         `json:"action"`
	TeamID      string         `json:"team_id"`
	Actor       Actor          `json:"actor"`
	Targets     []Target       `json:"targets"`
	AccessRoute []string       `json:"access_route"`
	RemoteAddr  string         `json:"remote_addr"`
	UserAgent   string         `json:"user_agent"`
	Metadata    map[string]any `json:"metadata"`
}

// Actor is who initiated the action. A user actor has an id and usually email and name metadata.
type Actor struct {
	Type     ActorType      `json:"type"`
	ID       string         `json:"id"`
	Metadata map[string]any `json:"metadata"`
}

// Target is one record the action touched.
type Target struct {
	Type     string         `json:"type"`
	ID       string         `json:"id"`
	Metadata map[string]any `json:"metadata"`
}

// Field names of the canonical event body: the specification's own names.
const (
	FieldAction      = "action"
	FieldTeamID      = "team_id"
	FieldActor       = "actor"
	FieldTargets     = "targets"
	FieldAccessRoute = "access_route"
	FieldRemoteAddr  = "remote_addr"
	FieldUserAgent   = "user_agent"
	FieldMetadata    = "metadata"
	FieldType        = "type"
	FieldID          = "id"
)

// BodyFields are the top-level fields of the canonical event body, in the specification's order.
var BodyFields = []string{
	FieldAction, FieldTeamID, FieldActor, FieldTargets, FieldAccessRoute, FieldRemoteAddr, FieldUserAgent, FieldMetadata,
}

// Log record attributes. The input ones let a service send an event as attributes instead of a body;
// the output ones are set by the processor on every audit record it has normalized.
const (
	// EventName is the LogRecord event name of an audit record; "audit.<action>" names the action too.
	EventName       = "audit"
	EventNamePrefix = "audit."

	AttrAction        = "audit.action"
	AttrTeamID        = "audit.team_id"
	AttrActorType     = "audit.actor.type"
	AttrActorID       = "audit.actor.id"
	AttrActorMetadata = "audit.actor.metadata"
	AttrTargets       = "audit.targets"
	AttrMetadata      = "audit.metadata"
	AttrID            = "audit.id"

	// Set by the processor.
	AttrStatus   = "audit.status"   // StatusValid or StatusInvalid
	AttrProblems = "audit.problems" // list of "code: detail" strings that made the event invalid
	AttrWarnings = "audit.warnings" // list of "code: detail" strings that did not
	AttrHash     = "audit.hash"     // hex SHA-256 of the canonical encoding of the body
	AttrKnown    = "audit.action_known"
	// AttrQuarantineTeamID is set on an invalid record: the team id it named, kept as given even when
	// it is not a valid team id, so the quarantine can say whose record it is.
	AttrQuarantineTeamID = "audit.quarantine.team_id"

	StatusValid   = "valid"
	StatusInvalid = "invalid"
)
