// OpenKruise Rollouts v0.6.2, the engine of KubeVela's Kruise Rollout page: the
// oracle Sluice's fidelity is measured against, and a peer it is measured beside.
// Its go.mod has no replace lines; its own requirements are repeated here as it
// states them, so that the build selects exactly its versions (`go mod tidy`
// would move some, for the tests of its dependencies). Refresh go.sum with
// `go get github.com/openkruise/rollouts@v0.6.2`, not tidy.
module sluice.dev/xtask/peers/kruise-rollouts

go 1.26.0

require github.com/openkruise/rollouts v0.6.2

require (
	github.com/davecgh/go-spew v1.1.1
	github.com/evanphx/json-patch v4.12.0+incompatible
	github.com/onsi/ginkgo v1.16.5
	github.com/onsi/gomega v1.24.1
	github.com/openkruise/kruise-api v1.3.0
	github.com/spf13/pflag v1.0.5
	github.com/stretchr/testify v1.8.2
	github.com/yuin/gopher-lua v0.0.0-20220504180219-658193537a64
	golang.org/x/time v0.3.0
	gopkg.in/yaml.v2 v2.4.0
	k8s.io/api v0.26.3
	k8s.io/apiextensions-apiserver v0.26.3
	k8s.io/apimachinery v0.26.3
	k8s.io/apiserver v0.26.3
	k8s.io/client-go v0.26.3
	k8s.io/component-base v0.26.3
	k8s.io/klog/v2 v2.100.1
	k8s.io/utils v0.0.0-20221128185143-99ec85e7a448
	layeh.com/gopher-json v0.0.0-20201124131017-552bb3c4c3bf
	sigs.k8s.io/controller-runtime v0.14.6
	sigs.k8s.io/gateway-api v0.7.1
	sigs.k8s.io/yaml v1.3.0
	github.com/beorn7/perks v1.0.1
	github.com/blang/semver/v4 v4.0.0
	github.com/cespare/xxhash/v2 v2.1.2
	github.com/emicklei/go-restful/v3 v3.9.0
	github.com/evanphx/json-patch/v5 v5.6.0
	github.com/fsnotify/fsnotify v1.6.0
	github.com/go-logr/logr v1.2.3
	github.com/go-logr/zapr v1.2.3
	github.com/go-openapi/jsonpointer v0.19.5
	github.com/go-openapi/jsonreference v0.20.0
	github.com/go-openapi/swag v0.19.14
	github.com/gogo/protobuf v1.3.2
	github.com/golang/groupcache v0.0.0-20210331224755-41bb18bfe9da
	github.com/golang/protobuf v1.5.2
	github.com/google/gnostic v0.5.7-v3refs
	github.com/google/go-cmp v0.5.9
	github.com/google/gofuzz v1.1.0
	github.com/google/uuid v1.1.2
	github.com/imdario/mergo v0.3.12
	github.com/josharian/intern v1.0.0
	github.com/json-iterator/go v1.1.12
	github.com/mailru/easyjson v0.7.6
	github.com/matttproud/golang_protobuf_extensions v1.0.2
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd
	github.com/modern-go/reflect2 v1.0.2
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822
	github.com/nxadm/tail v1.4.8
	github.com/pkg/errors v0.9.1
	github.com/pmezard/go-difflib v1.0.0
	github.com/prometheus/client_golang v1.14.0
	github.com/prometheus/client_model v0.3.0
	github.com/prometheus/common v0.37.0
	github.com/prometheus/procfs v0.8.0
	go.uber.org/atomic v1.7.0
	go.uber.org/multierr v1.6.0
	go.uber.org/zap v1.24.0
	golang.org/x/net v0.7.0
	golang.org/x/oauth2 v0.0.0-20220223155221-ee480838109b
	golang.org/x/sys v0.5.0
	golang.org/x/term v0.5.0
	golang.org/x/text v0.7.0
	gomodules.xyz/jsonpatch/v2 v2.2.0
	google.golang.org/appengine v1.6.7
	google.golang.org/protobuf v1.28.1
	gopkg.in/inf.v0 v0.9.1
	gopkg.in/tomb.v1 v1.0.0-20141024135613-dd632973f1e7
	gopkg.in/yaml.v3 v3.0.1
	k8s.io/kube-openapi v0.0.0-20221012153701-172d655c2280
	sigs.k8s.io/json v0.0.0-20220713155537-f223a00ba0e2
	sigs.k8s.io/structured-merge-diff/v4 v4.2.3
)
