package audit

import (
	"strings"
	"testing"
)

func TestCheckTeamID(t *testing.T) {
	valid := []string{"191796", "1", "acme", "acme-corp", "team_7", "7a", strings.Repeat("a", 64), "9223372036854775807"}
	for _, s := range valid {
		if err := CheckTeamID(s); err != nil {
			t.Errorf("CheckTeamID(%q) = %v, want ok", s, err)
		}
	}
	hostile := []string{
		"", "0", "007", "-1", "Acme", "acme corp", " acme", "acme\n", "a,b", "audit-*", "*", "?", "a*",
		"..", ".", "../other", "a/b", `a\b`, "a:b", "a#b", "_all", "-acme", "_acme", "ａｃｍｅ", "é",
		"a\x00b", strings.Repeat("a", 65), "acme|other", "a\"b", "<a>", "a+b", "191796,191797",
	}
	for _, s := range hostile {
		if err := CheckTeamID(s); err == nil {
			t.Errorf("CheckTeamID(%q) = nil, want an error", s)
		}
	}
}

func TestCheckActionName(t *testing.T) {
	for _, s := range []string{"job_user_access_changed", "data_export", "a", "x1"} {
		if err := CheckActionName(s); err != nil {
			t.Errorf("CheckActionName(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "Job", "1job", "job-created", "job created", "job.created", "_job", strings.Repeat("a", 129)} {
		if err := CheckActionName(s); err == nil {
			t.Errorf("CheckActionName(%q) = nil, want an error", s)
		}
	}
}

func TestProblemFormat(t *testing.T) {
	p := FormatProblem(ProblemInvalidTeamID, `"A,B" is not a positive integer`)
	if ProblemCode(p) != ProblemInvalidTeamID {
		t.Fatalf("ProblemCode(%q) = %q", p, ProblemCode(p))
	}
	if ProblemCode(ProblemMissingAction) != ProblemMissingAction {
		t.Fatal("a bare code is its own code")
	}
}

func TestTruncateAndAbbreviate(t *testing.T) {
	for _, tc := range []struct {
		s             string
		n             int
		trunc, abbrev string
	}{
		{"ab", 2, "ab", "ab"},
		{"aé", 2, "a", "a…"}, // no half of a two-byte character
		{"ééé", 1, "", "…"},
	} {
		if got := Truncate(tc.s, tc.n); got != tc.trunc {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.trunc)
		}
		if got := Abbreviate(tc.s, tc.n); got != tc.abbrev {
			t.Errorf("Abbreviate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.abbrev)
		}
	}
}
