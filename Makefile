# The project's own tools. `make help` lists them.
SHELL := /bin/bash
GO ?= go
ES_URL ?= http://127.0.0.1:9200
export ES_URL

TOOLS := $(CURDIR)/.tools
MDATAGEN := $(TOOLS)/mdatagen
BUILDER_VERSION := v0.165.0
DIST := _build/otelcol-audit
API := _build/auditapi
# The distribution is rebuilt only when its inputs change: the manifest, the module, any Go source.
DIST_INPUTS := builder-config.yaml go.mod go.sum $(shell find audit auditlog exporter processor internal -name '*.go' -not -name '*_test.go' -not -path 'internal/tools/*' 2>/dev/null) $(wildcard audit/*.yaml)

.PHONY: help build cli compile run demo reliability reliability-short load footprint contrib-baseline fuzz test test-short bench es-start es-stop es-status lint fmt vet generate tools clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: $(DIST) $(API) ## build the collector distribution _build/otelcol-audit with the OpenTelemetry Collector Builder, and the audit log API _build/auditapi

$(DIST): $(DIST_INPUTS)
	GOFLAGS=-mod=mod $(GO) run go.opentelemetry.io/collector/cmd/builder@$(BUILDER_VERSION) --config builder-config.yaml
	@touch $(DIST)

# The API server is a plain Go build: the go command decides what is out of date.
.PHONY: $(API)
$(API):
	$(GO) build -o $(API) ./cmd/auditapi

cli: ## build the auditctl command line into _build/auditctl
	$(GO) build -o _build/auditctl ./cmd/auditctl

reliability: $(DIST) ## fault scenarios with the real binary, its own Elasticsearch on port 9250 and a three-node cluster on 9450-9452 (about 35 minutes)
	$(GO) run ./cmd/auditproof reliability

reliability-short: $(DIST) ## the short version CI runs (about 15 minutes)
	$(GO) run ./cmd/auditproof reliability -short

load: $(DIST) ## sustained end-to-end throughput for 10 to 100,000 teams and several metadata sizes, with shards and cluster state (see BENCHMARKS.md)
	$(GO) run ./cmd/auditproof load

footprint: ## cluster state and time of an index or a filtered alias per team, on the default node (see docs/layout.md)
	$(GO) run ./cmd/auditproof footprint

contrib-baseline: ## build bench/contrib/_build/otelcol-contrib-es, contrib's elasticsearchexporter v0.150.0, for `auditproof load -compare contrib`
	cd bench/contrib && GOSUMDB=off $(GO) run go.opentelemetry.io/collector/cmd/builder@v0.150.0 --config builder-config.yaml

FUZZTIME ?= 30s
fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	$(GO) test -run '^$$' -fuzz '^FuzzNormalize$$' -fuzztime $(FUZZTIME) ./processor/auditprocessor/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMap$$' -fuzztime $(FUZZTIME) ./internal/shared/pjson/
	$(GO) test -run '^$$' -fuzz '^FuzzPrepare$$' -fuzztime $(FUZZTIME) ./exporter/auditelasticsearchexporter/
	$(GO) test -run '^$$' -fuzz '^FuzzQueueEntry$$' -fuzztime $(FUZZTIME) ./exporter/auditelasticsearchexporter/
	$(GO) test -run '^$$' -fuzz '^FuzzCSVRow$$' -fuzztime $(FUZZTIME) ./internal/query/
	$(GO) test -run '^$$' -fuzz '^FuzzExpand$$' -fuzztime $(FUZZTIME) ./internal/document/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/shared/layout/
	$(GO) test -run '^$$' -fuzz '^FuzzParams$$' -fuzztime $(FUZZTIME) ./internal/tenantapi/
	$(GO) test -run '^$$' -fuzz '^FuzzCanonicalize$$' -fuzztime $(FUZZTIME) ./internal/shared/jcs/
	$(GO) test -run '^$$' -fuzz '^FuzzParseCheckpoint$$' -fuzztime $(FUZZTIME) ./internal/shared/merkle/
	$(GO) test -run '^$$' -fuzz '^FuzzVerifyBundle$$' -fuzztime $(FUZZTIME) ./internal/shared/merkle/
	$(GO) test -run '^$$' -fuzz '^FuzzCursor$$' -fuzztime $(FUZZTIME) ./internal/tenantapi/
	$(GO) test -run '^$$' -fuzz '^FuzzCSVReader$$' -fuzztime $(FUZZTIME) ./internal/importer/
	$(GO) test -run '^$$' -fuzz '^FuzzCompactID$$' -fuzztime $(FUZZTIME) ./internal/seal/
	$(GO) test -run '^$$' -fuzz '^FuzzReadPage$$' -fuzztime $(FUZZTIME) ./internal/seal/

compile: ## compile every package of the module
	$(GO) build ./...

run: $(DIST) $(API) ## the main job: a local Elasticsearch (started if none answers), the collector with config.example.yaml and the audit log API
	scripts/with-elasticsearch.sh scripts/run-collector.sh

demo: ## send the specification's sample record to the running collector and show where it landed
	$(GO) run ./examples/jobs-service -demo

test: $(DIST) ## run all tests with the race detector against a real Elasticsearch (started if none answers at ES_URL)
	scripts/with-elasticsearch.sh $(GO) test -race -count=1 -timeout 20m ./...

test-short: ## unit tests only, no Elasticsearch needed
	$(GO) test -short -count=1 ./...

bench: ## run the benchmarks (see BENCHMARKS.md)
	scripts/with-elasticsearch.sh $(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee bench.txt

es-start: ## start the local Elasticsearch node (fetched from Maven Central on first use)
	scripts/elasticsearch.sh start

es-stop: ## stop the local Elasticsearch node
	scripts/elasticsearch.sh stop

es-status: ## show the local node's health
	scripts/elasticsearch.sh status

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

vet: ## go vet and a gofmt check
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi

lint: vet ## static checks

tools: $(MDATAGEN)

# mdatagen is not served by the module proxy past v0.159.0; internal/tools pins it and the generated
# code is committed (adapted to v0.165.0 where the API moved), as in the Collector's own repositories.
$(MDATAGEN): internal/tools/go.mod
	cd internal/tools && GOFLAGS=-mod=mod $(GO) build -o $(MDATAGEN) go.opentelemetry.io/collector/cmd/mdatagen

generate: $(MDATAGEN) ## regenerate component metadata code with mdatagen
	PATH=$(TOOLS):$$PATH $(GO) generate ./...

clean: ## remove build outputs
	rm -rf _build .tools bench.txt
