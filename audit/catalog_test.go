package audit

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedCatalog reads the action table and the tracked team settings out of the specification document.
func seedCatalog(t *testing.T) (actions map[string]string, settings []string) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "audit-logs.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	actions = map[string]string{}
	section := ""
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.HasPrefix(l, "The full list of actions logged"):
			section = "actions"
			i += 2 // the "Value" and "Description" headings
			continue
		case strings.HasPrefix(l, "Actions tracked for team_settings_changed"):
			section = "settings"
			continue
		case strings.HasPrefix(l, "Sample record"):
			section = ""
		}
		switch section {
		case "actions":
			actions[l] = lines[i+1]
			i++
		case "settings":
			settings = append(settings, strings.TrimSpace(strings.TrimPrefix(l, "•")))
		}
	}
	if len(actions) < 40 || len(settings) < 10 {
		t.Fatalf("could not read the seed document: %d actions, %d settings", len(actions), len(settings))
	}
	return actions, settings
}

func TestDefaultCatalogHasEverySeedAction(t *testing.T) {
	actions, settings := seedCatalog(t)
	c := DefaultCatalog()
	for name, desc := range actions {
		got, ok := c.Lookup(name)
		if !ok {
			t.Errorf("catalog lacks seed action %q", name)
			continue
		}
		if got.Description != desc {
			t.Errorf("%s: description %q, seed says %q", name, got.Description, desc)
		}
		if got.Category == "" {
			t.Errorf("%s: no category", name)
		}
	}
	// Besides the seed's actions, only the pipeline's own (category audit_log).
	own := 0
	for _, a := range c.Actions() {
		if _, seed := actions[a.Name]; !seed {
			if a.Category != "audit_log" {
				t.Errorf("%s is neither a seed action nor in category audit_log", a.Name)
			}
			own++
		}
	}
	if n := len(c.Actions()) - own; n != len(actions) {
		t.Errorf("catalog has %d seed actions, the seed %d", n, len(actions))
	}
	var descs []string
	for _, s := range c.TeamSettings() {
		descs = append(descs, s.Description)
	}
	if strings.Join(descs, "\n") != strings.Join(settings, "\n") {
		t.Errorf("team settings differ from the seed:\n got %q\nwant %q", descs, settings)
	}
}

func TestParseCatalogRejectsMalformedFiles(t *testing.T) {
	cases := map[string]struct{ file, want string }{
		"empty":           {"", "file is empty"},
		"not yaml":        {"version: [1", "catalog: yaml"},
		"wrong version":   {"version: 2\nactions: [{name: a, description: d}]", "version: got 2, want 1"},
		"no actions":      {"version: 1\nactions: []", "actions: the list is empty"},
		"unknown key":     {"version: 1\nactons: []", "field actons not found"},
		"bad action name": {"version: 1\nactions: [{name: Job-Created, description: d}]", "actions[0].name"},
		"no description":  {"version: 1\nactions: [{name: job_created}]", "actions[0] (job_created): description is empty"},
		"duplicate":       {"version: 1\nactions: [{name: a, description: d}, {name: a, description: e}]", `actions[1]: "a" is listed twice`},
		"bad setting":     {"version: 1\nactions: [{name: a, description: d}]\nteam_settings: [{name: 'x y', description: d}]", "team_settings[0].name"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseCatalog(strings.NewReader(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadCatalogFileNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mine.yaml")
	if err := os.WriteFile(p, []byte("version: 1\nactions: [{name: a}]"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadCatalogFile(p)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("error %v does not name %s", err, p)
	}
}

func TestExtend(t *testing.T) {
	add, err := ParseCatalog(strings.NewReader(`version: 1
actions:
  - {name: report_viewed, category: report, description: A report was viewed}
  - {name: job_created, category: job, description: A job was created (reworded)}
team_settings:
  - {name: sso_enforced, description: SSO enforcement changed}
`))
	if err != nil {
		t.Fatal(err)
	}
	base := DefaultCatalog()
	c := base.Extend(add)
	if !c.Known("report_viewed") || !c.Known("user_created") {
		t.Fatal("extended catalog lacks an action")
	}
	if got := c.Description("job_created"); got != "A job was created (reworded)" {
		t.Errorf("job_created description %q: the extension should win", got)
	}
	if len(c.Actions()) != len(base.Actions())+1 {
		t.Errorf("%d actions, want %d", len(c.Actions()), len(base.Actions())+1)
	}
	if n := len(c.TeamSettings()); n != len(base.TeamSettings())+1 {
		t.Errorf("%d settings, want %d", n, len(base.TeamSettings())+1)
	}
	if base.Known("report_viewed") {
		t.Error("Extend modified the base catalog")
	}
}

func TestActionsGoIsUpToDate(t *testing.T) {
	have, err := os.ReadFile("actions.go")
	if err != nil {
		t.Fatal(err)
	}
	if want := GenerateActionsGo(DefaultCatalog()); string(have) != string(want) {
		t.Fatal("actions.go differs from catalog.yaml: run `go generate ./audit`")
	}
	if ActionJobUserAccessChanged != "job_user_access_changed" || ActionTeamAPIKeyCreated != "team_api_key_created" {
		t.Fatal("unexpected constant values")
	}
}
