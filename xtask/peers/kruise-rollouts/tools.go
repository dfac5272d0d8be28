//go:build tools

// The program `cargo xtask cluster up --with-kruise` builds.
package tools

import _ "github.com/openkruise/rollouts"
