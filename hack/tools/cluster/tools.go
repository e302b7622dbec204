//go:build tools

// Package tools pins the real kube-apiserver, kubectl and etcd that the end-to-end
// tests and benchmarks run: hack/build-cluster-tools.sh builds them from here.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
