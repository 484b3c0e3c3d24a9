# Infrastructure targets, included by the Makefile (which defines VENV, PY, BIN and install).
#   make layer  - build (or reuse) the Lambda layer directories under .build/layers
#   make synth  - synthesize every stage, offline and without AWS credentials, into
#                 cdk.out/<stage>; cdk-nag runs during synth and fails it on any finding
#                 not acknowledged in code.
ifndef OCSF_DETECT_INFRA_MK
OCSF_DETECT_INFRA_MK := 1
# Included above the Makefile's first rule: keep its default goal.
_infra_default_goal := $(.DEFAULT_GOAL)

STAGES ?= dev staging prod
# Any well-formed bundle_version: synth only names the key, it reads nothing from S3.
SYNTH_MODEL_VERSION ?= 0.0.0+synthcheck
SYNTH_MODEL_OBJECT_VERSION ?= synthcheck
# Staging and prod refuse a bundle not pinned by its manifest's sha256; any 64 hex digits.
SYNTH_MODEL_MANIFEST_SHA256 ?= 0000000000000000000000000000000000000000000000000000000000000000
# The bundle's unpacked size in bytes, for the 250 MB budget (e.g. `du -sb out/bundle`);
# without it synth warns and budgets the code and the other layers only.
SYNTH_MODEL_UNZIPPED_BYTES ?=
CDK_OUT ?= cdk.out
LAYER_ARCHS ?= x86_64
NODE_STAMP := node_modules/.package-lock.json
# No AWS account, no network beyond the registries: no notices, no telemetry, no IMDS probe.
# jsii repeats a Node 20 end-of-life banner on every run; Node 20 is the platform's.
CDK := AWS_EC2_METADATA_DISABLED=true CDK_DISABLE_VERSION_CHECK=1 \
  JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 npx --no-install cdk
CDK_SYNTH_FLAGS ?= --quiet --no-notices --no-version-reporting

.PHONY: synth layer

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund

layer: install
	$(PY) -m infra.layers $(foreach arch,$(LAYER_ARCHS),--arch $(arch))

synth: install layer $(NODE_STAMP)
	@set -e; for stage in $(STAGES); do \
	  echo "cdk synth: $$stage -> $(CDK_OUT)/$$stage"; \
	  $(CDK) synth --app "$(PY) -m infra.app" -o $(CDK_OUT)/$$stage $(CDK_SYNTH_FLAGS) \
	    -c stage=$$stage -c modelVersion=$(SYNTH_MODEL_VERSION) \
	    -c modelObjectVersion=$(SYNTH_MODEL_OBJECT_VERSION) \
	    -c modelManifestSha256=$(SYNTH_MODEL_MANIFEST_SHA256) \
	    $(if $(SYNTH_MODEL_UNZIPPED_BYTES),-c modelUnzippedBytes=$(SYNTH_MODEL_UNZIPPED_BYTES)); \
	done

.DEFAULT_GOAL := $(_infra_default_goal)
endif
