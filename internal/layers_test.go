// Package internal_test guards the house: which packages each layer may import (docs/architecture.md).
package internal_test

import (
	"go/build"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/auditpipe/auditpipe/"

// allowed lists, for each layer under internal/, the project's packages its (non-test) code may
// import. A package's own layer and the layers below it; only the recorder imports the components.
var allowed = map[string][]string{
	"internal/shared/":   {"audit", "internal/shared/"},
	"internal/document":  {"audit", "internal/shared/"},
	"internal/query":     {"audit", "internal/shared/", "internal/document"},
	"internal/recorder":  {"audit", "auditlog", "internal/shared/", "internal/document", "internal/query", "processor/auditprocessor", "exporter/auditelasticsearchexporter"},
	"internal/seal":      {"audit", "internal/shared/", "internal/document", "internal/query"},
	"internal/tenantapi": {"audit", "auditlog", "internal/shared/", "internal/document", "internal/query", "internal/recorder", "internal/seal"},
	"internal/importer":  {"audit", "auditlog", "internal/shared/", "internal/document", "internal/query", "internal/recorder"},
	"internal/testrig/":  {"audit", "auditlog", "internal/shared/", "internal/document", "internal/testrig/"},
}

func TestLayers(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(filepath.Join(root, "internal"), func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if rel == "internal/tools" {
			return filepath.SkipDir
		}
		pkg, err := build.ImportDir(path, 0)
		if err != nil || len(pkg.GoFiles) == 0 {
			return nil // no code: a folder of layers, or tests only
		}
		var rules []string
		for layer, r := range allowed {
			if rel == layer || strings.HasPrefix(rel+"/", layer) && strings.HasSuffix(layer, "/") {
				rules = r
			}
		}
		if rules == nil {
			t.Errorf("%s is in no layer: add it to docs/architecture.md and this table", rel)
			return nil
		}
		checked++
		for _, imp := range pkg.Imports {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			fine := false
			for _, a := range rules {
				if dep == a || strings.HasSuffix(a, "/") && strings.HasPrefix(dep, a) {
					fine = true
				}
			}
			if !fine {
				t.Errorf("%s imports %s, which its layer may not", rel, dep)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("only %d packages checked", checked)
	}
}
