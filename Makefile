# Stargate: `make run` runs it locally, `make test` tests it.
SHELL := /usr/bin/env bash
GO ?= go
BIN := $(CURDIR)/bin
PORT ?= 8443
GOTESTFLAGS ?=
# make krew: the release's version (unset: hack/krew-release.sh's default,
# git describe --tags --always), and where its archives will be uploaded.
VERSION ?=
RELEASE_URL ?=

COMMANDS := $(notdir $(wildcard cmd/*))

.PHONY: all build krew run test unit test-e2e test-faults cluster-tools bench bench-quick bench-micro vet generate verify fuzz clean help

FUZZTIME ?= 20s

all: build

help: ## List the targets.
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## Build every command into bin/.
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(COMMANDS))

krew: ## Cross-build kubectl-stargate for krew into bin/krew/: an archive per os/arch and stargate.yaml, uri RELEASE_URL/VERSION/... (unset: file://).
	GO=$(GO) VERSION=$(VERSION) RELEASE_URL=$(RELEASE_URL) OUT=$(BIN)/krew hack/krew-release.sh

run: build ## Run Stargate standalone on the embedded defaults (Ctrl-C stops it).
	PORT=$(PORT) hack/run-local.sh

test: vet unit verify test-e2e ## Everything: vet, unit/registry/integration, generated-code drift, end-to-end.

unit: ## Unit, registry and integration tests (no kube-apiserver needed).
	$(GO) test -count=1 $(GOTESTFLAGS) ./...

test-e2e: cluster-tools ## End-to-end behind a real kube-apiserver, etcd and kubectl on 127.0.0.1.
	$(GO) test -tags e2e -count=1 -timeout 20m $(GOTESTFLAGS) ./test/e2e/

test-faults: cluster-tools ## Fault suite: kill -9, Campaigns killed and handed over, replicas killed, paused and added, etcd down, DC faults, hostile input, steady load (under 20 min).
	$(GO) test -tags faults -count=1 -timeout 20m -v $(GOTESTFLAGS) ./test/faults/

bench: cluster-tools ## Stargate vs a CRD vs etcd, a Campaign of 20,000 servers, a million servers, datacenter API load, full counts (about 18 min, plus 6-8 for the campaign section); writes test/bench/RESULTS.md.
	$(GO) run ./test/bench

bench-quick: cluster-tools ## The same with small counts (about 4 min, plus 1 for the campaign section); prints, does not write RESULTS.md.
	$(GO) run ./test/bench -quick -out ''

bench-micro: ## go test -bench of the hot paths, benchstat-comparable (-count 6).
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./pkg/apis/stargate/validation ./pkg/registry/stargate/hardware ./pkg/controller/jobs

cluster-tools: ## Build (once, cached in .cache/cluster) kube-apiserver, kubectl and etcd.
	@hack/build-cluster-tools.sh >/dev/null

vet: ## go vet and gofmt.
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/e2e/
	$(GO) vet -tags faults ./test/faults/
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [[ -n "$$out" ]]; then echo "gofmt needed: $$out"; exit 1; fi

generate: ## Regenerate code with k8s.io/code-generator.
	hack/update-codegen.sh

verify: ## Fail if generated code is out of date.
	hack/verify-codegen.sh

FUZZ_TARGETS := ./mockdc:FuzzSubmitDecoding \
	$(addprefix ./pkg/apis/stargate/validation:,FuzzHardware FuzzTemplate FuzzJob FuzzDatacenter FuzzCampaign FuzzRepaveRequest)

fuzz: ## Run each fuzz target for FUZZTIME (default 20s); seeds are in each package's testdata/fuzz.
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
		if ! out=$$($(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}" 2>&1); then \
			echo "$$out"; \
			if echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
				echo "== $${t#*:} again: Go's fuzzing engine timed out stopping its workers at the deadline (no failing input)"; \
				$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
			else exit 1; fi; \
		else echo "$$out"; fi; \
	done

clean: ## Remove build output (not .stargate/ data).
	rm -rf $(BIN)
