// Package document is the stored document: the one place that says which fields an event document
// and a quarantine document have (the field list below, from which the mappings are rendered), the
// template version, how the exporter encodes a checked event (encode.go) and how every reader
// decodes what is stored, for every template version still readable (decode.go).
//
// The exporter writes with it; the query core, the recorder, the API, the Kibana generator and the
// proof tools read with it. A new stored field is one row of eventFields, one line of AppendEvent
// and, if readers need it, one field of Stored.
package document

import (
	"strings"
)

// TemplateVersion is the version of the mappings below. Raise it whenever they change; the exporter
// then reinstalls the templates at its next start (other settings changes are caught by a hash).
//
//   - 1: the first per-team indices.
//   - 2: the quarantine keeps its hashes and the whole original record (timestamps, resource,
//     scope) for replay; Quarantined.Rebuild still reads version 1 quarantine documents.
//   - 3: the partitioned layout: the team is the required _routing of every event.
//   - 4: the lighter document (docs/document.md, "Version 4"): the ECS copies of the document's own
//     values are field aliases (event.action, organization.id, user.id) or derived when read
//     (Expand: event.kind, event.outcome, event.category, user.name, related.*,
//     audit.action_description); event.hash is kept in _source only; event.id is written only when
//     the _id cannot carry it; fields read more than searched keep doc values only.
//
// A template applies to the indices created after it, so a new mapping applies from the next
// partition. Added fields reach the existing partitions too (the exporter puts them); a changed field
// type must wait for the next partition, and every reader keeps reading older partitions.
const TemplateVersion = 4

// Field is one leaf field of a stored document: its dotted path and its mapping.
type Field struct {
	Path    string
	Mapping string
}

// Leaf mappings.
const (
	keyword   = `{"type":"keyword","ignore_above":1024}`
	dateNanos = `{"type":"date_nanos"}`
	flattened = `{"type":"flattened","ignore_above":8191}`
	// sourceOnly is a value kept in _source and read back, never searched, sorted or aggregated:
	// neither terms nor doc values are built for it.
	sourceOnly = `{"type":"keyword","index":false,"doc_values":false}`
	// The dvOnly mappings build doc values and no index: the field sorts and aggregates as before,
	// and a query on it reads the doc values, after the team filter has cut the documents to one
	// team's. For fields that are read more than searched: it saves the node an index per field.
	keywordDVOnly   = `{"type":"keyword","ignore_above":1024,"index":false}`
	dateNanosDVOnly = `{"type":"date_nanos","index":false}`
)

// alias is the mapping of a field alias: the name queries a field the document holds already, at
// no cost per document.
func alias(path string) string { return `{"type":"alias","path":"` + path + `"}` }

// The fields readers query, sort or aggregate on. Every one is a row of eventFields (or
// quarantineFields), which a test checks.
const (
	Timestamp        = "@timestamp"
	Action           = "action"
	TeamID           = "team_id"
	ActorID          = "actor.id"
	TargetType       = "targets.type"
	TargetID         = "targets.id"
	EventID          = "event.id"
	EventHash        = "event.hash"
	EventIngested    = "event.ingested"
	QuarantineTeamID = "quarantine.team_id"
	QuarantineReason = "quarantine.reasons"
)

// eventFields is the field list of an event document, in the order AppendEvent writes them: the
// specification's fields first, then ECS (docs/document.md says what each is for). Metadata of any
// shape lives in flattened fields, which cannot conflict. Aliases are not written: they name a field
// above. event.id is written only when the _id does not carry it (layout.DocIDCarries).
var eventFields = []Field{
	{Timestamp, dateNanos},
	{Action, keyword},
	{TeamID, keyword},
	{"actor.type", keyword},
	{ActorID, keyword},
	{"actor.metadata", flattened},
	{TargetType, keyword},
	{TargetID, keyword},
	{"targets.metadata", flattened},
	{"access_route", keyword},
	{"remote_addr", keyword},
	{"user_agent", keyword},
	{"metadata", flattened},
	{EventID, keyword},
	{"event.action", alias(Action)},
	{EventHash, sourceOnly},
	{EventIngested, dateNanosDVOnly},
	{"organization.id", alias(TeamID)},
	{"source.ip", `{"type":"ip","index":false}`},
	{"user.id", alias(ActorID)},
	{"user.email", keywordDVOnly},
	{"service.name", keywordDVOnly},
	{"audit.action_known", `{"type":"boolean","index":false}`},
	{"audit.warnings", keyword},
}

// Alias tells whether a field of the list is an alias, which no document holds.
func (f Field) Alias() bool { return strings.Contains(f.Mapping, `"type":"alias"`) }

// quarantineFields is the field list of a quarantine document. The original record is kept as
// unindexed text, so no input can break the mapping.
var quarantineFields = []Field{
	{Timestamp, dateNanos},
	{EventID, keyword},
	{EventIngested, dateNanos},
	{"quarantine.stage", keyword},
	{QuarantineReason, `{"type":"keyword","ignore_above":2048}`},
	{"quarantine.error_type", keyword},
	{"quarantine.error_reason", `{"type":"text"}`},
	{QuarantineTeamID, keyword},
	{"quarantine.index", keyword},
	{"quarantine.hash", keyword},
	{"quarantine.stored_hash", keyword},
	{"record.event_name", keyword},
	{"record.time_unix_nano", keyword},
	{"record.observed_time_unix_nano", keyword},
	{"record.scope_name", keyword},
	{"record.body", `{"type":"text","index":false}`},
	{"record.attributes", `{"type":"text","index":false}`},
	{"record.resource", `{"type":"text","index":false}`},
	{"record.size", `{"type":"long"}`},
	{"record.truncated", `{"type":"boolean"}`},
	{"service.name", keyword},
}

// EventFields returns the event document's field list.
func EventFields() []Field { return append([]Field(nil), eventFields...) }

// QuarantineFields returns the quarantine document's field list.
func QuarantineFields() []Field { return append([]Field(nil), quarantineFields...) }

// EventMappings is the partitions' mapping. dynamic:strict keeps every document to this exact shape;
// _routing is required: a shared partition holds many teams, each on the shard its id routes to.
var EventMappings = `{"dynamic":"strict","_routing":{"required":true},"properties":` + properties(eventFields) + `}`

// EventProperties is EventMappings without _routing, which an existing index cannot change (the
// side-by-side benchmark also gives it to the indices of contrib's exporter, which does not route).
var EventProperties = `{"dynamic":"strict","properties":` + properties(eventFields) + `}`

// EventIndexSort is the partitions' index sort, as index settings (a member of "index"): one team's
// events lie together on disk, newest first. With best_compression, whose zstd blocks hold up to
// 2,048 documents, a page of one team's events then comes from a few blocks, not one block per
// event of a partition where the teams are interleaved (docs/document.md, "Index sorting and the
// codec"). Like the mapping, it applies to partitions created after it.
const EventIndexSort = `"sort":{"field":["` + TeamID + `","` + Timestamp + `"],"order":["asc","desc"]}`

// QuarantineMappings is the quarantine index's mapping.
var QuarantineMappings = `{"dynamic":"strict","properties":` + properties(quarantineFields) + `}`

// Properties renders fields as a mapping's {"properties": …}: what is put on an existing index to
// add them.
func Properties(fields []Field) string { return `{"properties":` + properties(fields) + `}` }

// properties renders a field list as a mapping's "properties" object, objects in the order of
// their first field.
func properties(fields []Field) string {
	var b strings.Builder
	b.WriteByte('{')
	done := map[string]bool{}
	for i, f := range fields {
		head, _, nested := strings.Cut(f.Path, ".")
		if done[head] {
			continue
		}
		done[head] = true
		if len(done) > 1 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + head + `":`)
		if !nested {
			b.WriteString(f.Mapping)
			continue
		}
		var sub []Field
		for _, g := range fields[i:] {
			if h, rest, ok := strings.Cut(g.Path, "."); ok && h == head {
				sub = append(sub, Field{rest, g.Mapping})
			}
		}
		b.WriteString(`{"properties":` + properties(sub) + `}`)
	}
	b.WriteByte('}')
	return b.String()
}
