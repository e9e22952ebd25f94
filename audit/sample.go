package audit

// SampleEvent returns the sample record of the audit-log specification (job_user_access_changed for
// team 191796: access level 7347 changed to 7349), as the canonical event. Demos and tests use it.
func SampleEvent() Event {
	return Event{
		Action: ActionJobUserAccessChanged,
		TeamID: "191796",
		Actor:  Actor{Type: ActorUser, ID: "445177", Metadata: map[string]any{"email": "ann+oats@gem.com", "name": "Ann Samuelson"}},
		Targets: []Target{
			{Type: "job_user_access", ID: "107404", Metadata: map[string]any{"job_id": 313520, "user_id": 506607, "access_level_id": 7349}},
			{Type: "job", ID: "313520"},
			{Type: "user", ID: "506607"},
		},
		AccessRoute: []string{"::1"},
		RemoteAddr:  "::1",
		UserAgent:   "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36",
		Metadata:    map[string]any{"previous_access_level_id": 7347},
	}
}
