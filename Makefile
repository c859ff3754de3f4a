# Kip for Google Cloud. `make test` is the one command CI and developers run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help deps lint format typecheck test test-unit build clean

help: ## list the targets
	@grep -hE '^[a-zA-Z/_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

deps: ## install Debian and npm packages the build and tests need (idempotent)
	@scripts/install-deps.sh

lint: deps ## eslint and the prettier format check
	npx eslint .
	npx prettier --check .

format: deps ## rewrite sources with prettier
	npx prettier --write .

typecheck: deps ## strict TypeScript check of every source and test
	npx tsc -p tsconfig.json --noEmit

TEST_SPEC := '{lib,emulators,provider,cell-agent,image-cache,usage-reporter,test}/**/*.test.ts'

test: deps lint typecheck ## install, lint, type-check and run every test
	npx mocha $(TEST_SPEC)

build: deps ## compile to dist/ (what the images run)
	npx tsc -p tsconfig.build.json

clean: ## remove build output
	rm -rf dist
