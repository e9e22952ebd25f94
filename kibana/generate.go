package kibana

//go:generate go run ./internal/gensaved saved_objects.ndjson
