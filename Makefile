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

test: deps lint typecheck ## install, lint, type-check and run every test (TEST_JOBS=3 files at once)
	scripts/run-tests.sh

build: deps ## compile to dist/ (what the images run)
	npx tsc -p tsconfig.build.json

clean: ## remove build output
	rm -rf dist

# ---- Marketplace package: make app/* (docs/marketplace.md, docs/install.md) ----
APP_ID ?= kip
APP_NAME ?= kip
APP_NAMESPACE ?= default
PROJECT ?=
REGISTRY ?= gcr.io/$(PROJECT)
# publishedVersion in schema.yaml is the one source of the release version.
RELEASE ?= $(shell sed -n "s/^ *publishedVersion: *['\"]*\([^'\" ]*\)['\"]*.*/\1/p" schema.yaml)
TRACK ?= $(shell echo '$(RELEASE)' | cut -d. -f1,2)
MARKETPLACE_TOOLS_TAG ?= $(shell cat deployer/MARKETPLACE_TOOLS_TAG)
APP_IMAGE_PREFIX ?= $(REGISTRY)/$(APP_ID)
APP_DEPLOYER_IMAGE ?= $(APP_IMAGE_PREFIX)/deployer:$(RELEASE)
TESTER_IMAGE ?= $(APP_IMAGE_PREFIX)/tester:$(RELEASE)
REPORTING_SECRET ?= gs://cloud-marketplace-tools/reporting_secrets/fake_reporting_secret.yaml
APP_PARAMETERS ?= {"name": "$(APP_NAME)", "namespace": "$(APP_NAMESPACE)", "cloud.project": "$(PROJECT)", "reportingSecret": "$(REPORTING_SECRET)"}
# app/render needs no project: it shows a placeholder where none is given.
RENDER_PARAMETERS ?= {"cloud.project": "$(or $(PROJECT),your-project-id)"}
CHART_RENDER := .tmp/bin/chart-render
ETCD_SOURCE_IMAGE ?= gcr.io/etcd-development/etcd:v3.5.21
KUBE_PROXY_SOURCE_IMAGE ?= registry.k8s.io/kube-proxy:v1.32.4

# Checks run when a recipe is expanded, so a missing tool stops the target with one line.
app_docker_ok = $(shell docker info >/dev/null 2>&1 && echo yes)
app_cluster_ok = $(shell kubectl get --raw=/version --request-timeout=5s >/dev/null 2>&1 && echo yes)
app_need_docker = $(if $(app_docker_ok),,$(error $@: docker is not available (no daemon answers `docker info`)))
app_need_cluster = $(if $(app_cluster_ok),,$(error $@: no Kubernetes cluster is reachable (kubectl has no working context)))
app_need_project = $(if $(PROJECT)$(filter-out gcr.io/,$(REGISTRY)),,$(error $@: set PROJECT=<gcp project> or REGISTRY=<image registry>))

.PHONY: app/render app/build app/install app/install-test app/uninstall app/verify app/crd

$(CHART_RENDER): tools/chart-render/main.go tools/chart-render/chart.go tools/chart-render/schema.go
	@command -v go >/dev/null || { echo "chart-render: go is not installed (make deps installs golang-go)" >&2; exit 1; }
	@mkdir -p $(dir $@)
	@# Built aside and renamed, so a test running the binary never sees it half written.
	@cd tools/chart-render && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$${GOCACHE:-$(CURDIR)/.tmp/go-cache}" \
	  go build -o $(CURDIR)/$@.$$$$ . && mv -f $(CURDIR)/$@.$$$$ $(CURDIR)/$@

app/render: $(CHART_RENDER) ## render the chart with schema.yaml's defaults (VALUES=<file> overrides) to stdout
	@$(CHART_RENDER) --chart chart/kip --schema schema.yaml --name '$(APP_NAME)' --namespace '$(APP_NAMESPACE)' \
	  --image-prefix '$(if $(PROJECT),$(APP_IMAGE_PREFIX),gcr.io/your-project-id/$(APP_ID))' \
	  --parameters '$(RENDER_PARAMETERS)' $(if $(VALUES),--values '$(VALUES)')

app/build: ## build and push every image and the deployer, tagged RELEASE and TRACK (needs docker)
	$(app_need_docker)$(app_need_project)
	@for pair in kip:provider kip/cell-agent:cell-agent kip/image-cache-controller:image-cache kip/ubbagent:usage-reporter; do \
	  image="$(REGISTRY)/$${pair%%:*}"; target="$${pair##*:}"; \
	  docker build --target "$$target" -t "$$image:$(RELEASE)" -t "$$image:$(TRACK)" . && \
	  docker push "$$image:$(RELEASE)" && docker push "$$image:$(TRACK)" || exit 1; \
	done
	@for pair in etcd=$(ETCD_SOURCE_IMAGE) kube-proxy=$(KUBE_PROXY_SOURCE_IMAGE); do \
	  image="$(APP_IMAGE_PREFIX)/$${pair%%=*}"; src="$${pair#*=}"; \
	  docker pull "$$src" && docker tag "$$src" "$$image:$(RELEASE)" && docker tag "$$src" "$$image:$(TRACK)" && \
	  docker push "$$image:$(RELEASE)" && docker push "$$image:$(TRACK)" || exit 1; \
	done
	docker build -f apptest/tester/Dockerfile -t "$(TESTER_IMAGE)" apptest/tester && docker push "$(TESTER_IMAGE)"
	docker build -f deployer/Dockerfile --build-arg MARKETPLACE_TOOLS_TAG=$(MARKETPLACE_TOOLS_TAG) \
	  --build-arg REGISTRY=$(APP_IMAGE_PREFIX) --build-arg TAG=$(RELEASE) \
	  -t "$(APP_DEPLOYER_IMAGE)" -t "$(APP_IMAGE_PREFIX)/deployer:$(TRACK)" .
	docker push "$(APP_DEPLOYER_IMAGE)" && docker push "$(APP_IMAGE_PREFIX)/deployer:$(TRACK)"

.tmp/app/dev:
	$(app_need_docker)
	@mkdir -p $(dir $@)
	docker run --rm "gcr.io/cloud-marketplace-tools/k8s/dev:$(MARKETPLACE_TOOLS_TAG)" cat /scripts/dev > $@
	@chmod +x $@

app/install: ## install an instance with mpdev from the deployer image (needs docker and a cluster)
	$(app_need_docker)$(app_need_cluster)$(app_need_project)
	@$(MAKE) --no-print-directory .tmp/app/dev
	.tmp/app/dev install --deployer='$(APP_DEPLOYER_IMAGE)' --parameters='$(APP_PARAMETERS)'

app/install-test: ## install with the test overlay and run the tester (needs docker and a cluster)
	$(app_need_docker)$(app_need_cluster)$(app_need_project)
	@$(MAKE) --no-print-directory .tmp/app/dev
	.tmp/app/dev install --deployer='$(APP_DEPLOYER_IMAGE)' --parameters='$(APP_PARAMETERS)' --entrypoint=/bin/deploy_with_tests.sh

app/verify: ## run Marketplace verification (mpdev verify) on the deployer (needs docker and a cluster)
	$(app_need_docker)$(app_need_cluster)$(app_need_project)
	@$(MAKE) --no-print-directory .tmp/app/dev
	.tmp/app/dev verify --deployer='$(APP_DEPLOYER_IMAGE)' --wait_timeout=900

app/uninstall: ## remove an instance; refuses while cells run unless FORCE=1 (needs a cluster)
	$(app_need_cluster)
	@deployer/scripts/uninstall.sh '$(APP_NAME)' '$(APP_NAMESPACE)' '$(FORCE)'

app/crd: ## apply the Application CRD to a cluster that lacks it (needs a cluster)
	$(app_need_cluster)
	kubectl apply -f manifest/app-crd.yaml

.PHONY: bench-kube-emulator
bench-kube-emulator: ## kube emulator writes/s and watch fan-out to 10 watchers
	npx tsx bench/kube-emulator.ts

# ---- Local lab: the whole product on this machine (docs/lab.md) ----
.PHONY: local local-down
local: ## start the local lab in the background (etcd, registry, kube and Compute emulators, provider)
	@npx tsx scripts/lab/lab-up.ts

local-down: ## stop the local lab and delete what it made
	@npx tsx scripts/lab/lab-down.ts

.PHONY: bench-pod-burst
bench-pod-burst: ## 1000 pods at once against the provider, cells simulated over mutual TLS
	npx tsx bench/pod-burst.ts

.PHONY: bench-metering
bench-metering: ## metering: cell events/s, interval close and send time with 2000 cells, billed vs runtime
	npx tsx bench/metering.ts
