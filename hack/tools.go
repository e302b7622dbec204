//go:build tools

// Package tools pins the code generators in go.mod so `make generate` runs the
// versions this module was built with.
package tools

import _ "k8s.io/code-generator"
