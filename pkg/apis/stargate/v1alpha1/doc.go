// +k8s:openapi-gen=true
// +k8s:deepcopy-gen=package
// +k8s:conversion-gen=stargate.io/stargate/pkg/apis/stargate
// +k8s:defaulter-gen=TypeMeta
// +groupName=stargate.io
// +k8s:openapi-model-package=io.stargate.stargate.pkg.apis.stargate.v1alpha1

// Package v1alpha1 is the v1alpha1 wire version of the stargate.io API: the
// types clients send and receive. Servers convert it to the internal types in
// the parent package before doing anything else with it.
package v1alpha1
