//go:build tools

// The program `cargo xtask cluster up --with-argo` builds.
package tools

import _ "github.com/argoproj/argo-rollouts/cmd/rollouts-controller"
