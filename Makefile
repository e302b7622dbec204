# Stargate: `make run` runs it locally, `make test` tests it.
SHELL := /usr/bin/env bash
GO ?= go
BIN := $(CURDIR)/bin
PORT ?= 8443
GOTESTFLAGS ?=

COMMANDS := $(notdir $(wildcard cmd/*))

.PHONY: all build run test unit vet generate verify fuzz clean help

FUZZTIME ?= 20s

all: build

help: ## List the targets.
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## Build every command into bin/.
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(COMMANDS))

run: build ## Run Stargate standalone on the embedded defaults (Ctrl-C stops it).
	PORT=$(PORT) hack/run-local.sh

test: vet unit verify ## Vet, unit/registry/integration tests, and generated-code drift.

unit: ## Unit, registry and integration tests (no kube-apiserver needed).
	$(GO) test -count=1 $(GOTESTFLAGS) ./...

vet: ## go vet and gofmt.
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [[ -n "$$out" ]]; then echo "gofmt needed: $$out"; exit 1; fi

generate: ## Regenerate code with k8s.io/code-generator.
	hack/update-codegen.sh

verify: ## Fail if generated code is out of date.
	hack/verify-codegen.sh

fuzz: ## Run each fuzz target for FUZZTIME (default 20s).
	$(GO) test -run '^$$' -fuzz '^FuzzSubmitDecoding$$' -fuzztime $(FUZZTIME) ./mockdc

clean: ## Remove build output (not .stargate/ data).
	rm -rf $(BIN)
