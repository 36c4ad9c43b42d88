# Kubernetes (README "Running on a cluster"): KServe InferenceServices, Jobs, Locust, power sidecar.
#
#   make k8s-check          render every overlay (kubectl kustomize) and validate it offline:
#                           kubernetes-validate for built-in kinds (K8S_VERSION), KServe's CRD
#                           schema for InferenceService/ServingRuntime (kubernetes/schemas/)
#
# Knobs: K8S_VERSION (1.33.0), KSERVE_CRDS (folder with the CRD files named in
# kubernetes/schemas/kserve-crds.lock.json), K8S_REQUIRE_CRD=1 (fail when they are not found).

K8S_VERSION ?= 1.33.0

.PHONY: k8s-check
k8s-check: $(STAMP) ## validate kubernetes/ offline (kubectl kustomize + kubernetes-validate K8S_VERSION= + KServe CRD schema)
	$(PY) -m serving.k8s_check --k8s-version $(K8S_VERSION)
