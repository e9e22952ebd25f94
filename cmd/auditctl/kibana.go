// auditctl kibana: the saved objects, and a team's link in Discover.

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	kibanaobjects "github.com/auditpipe/auditpipe/kibana"

	"github.com/auditpipe/auditpipe/audit"
	"github.com/auditpipe/auditpipe/internal/recorder"
)

func kibana(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	url := fs.String("kibana-url", recorder.Env("KIBANA_URL", "http://127.0.0.1:5601"), "Kibana URL (KIBANA_URL)")
	user := fs.String("kibana-user", recorder.Env("KIBANA_USER", ""), "Kibana user (KIBANA_USER)")
	password := fs.String("kibana-password", recorder.Env("KIBANA_PASSWORD", ""), "Kibana password (KIBANA_PASSWORD)")
	apiKey := fs.String("kibana-api-key", recorder.Env("KIBANA_API_KEY", ""), "Kibana API key (KIBANA_API_KEY)")
	file := fs.String("file", "", "saved objects NDJSON to import (default: the ones built into auditctl)")
	team := fs.String("team", "", "print the link to one team's events in Discover instead of importing")
	days := fs.Int("days", 30, "with --team: how many days back the link shows")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *team != "" {
		if err := audit.CheckTeamID(*team); err != nil {
			return fmt.Errorf("team %w", err)
		}
		fmt.Fprintln(stdout, kibanaobjects.DiscoverURL(*url, *team, *days))
		return nil
	}
	objects := kibanaobjects.SavedObjects
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return err
		}
		objects = b
	}
	n, err := kibanaobjects.Import(ctx, *url, kibanaobjects.Auth{User: *user, Password: *password, APIKey: *apiKey}, objects)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %d saved objects into %s: open the dashboard \"Audit log\"\n", n, *url)
	return nil
}
