//go:build tools

// The program `cargo xtask cluster` builds; importing it keeps its dependencies
// in go.mod and go.sum.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
