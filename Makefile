# The project's own tools. `make help` lists them.
SHELL := /bin/bash
GO ?= go
ES_URL ?= http://127.0.0.1:9200
export ES_URL

TOOLS := $(CURDIR)/.tools
MDATAGEN := $(TOOLS)/mdatagen

.PHONY: help build test test-short bench es-start es-stop es-status lint fmt vet generate tools clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## compile every package
	$(GO) build ./...

test: ## run all tests with the race detector against a real Elasticsearch (started if none answers at ES_URL)
	scripts/with-elasticsearch.sh $(GO) test -race -count=1 ./...

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
