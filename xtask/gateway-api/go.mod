// The Gateway API's CRDs (HTTPRoute and its kin), from the module's own
// config/crd/standard folder: the local control plane serves them so that Rollouts
// routing by HTTPRoute meet the real schema and defaults.
module sluice.dev/xtask/gateway-api

go 1.26.0

require sigs.k8s.io/gateway-api v1.6.3
