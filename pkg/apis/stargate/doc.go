// +k8s:deepcopy-gen=package
// +groupName=stargate.io

// Package stargate holds the internal (hub) types of the stargate.io API.
// Validation, strategies and registries work on these; wire versions convert
// to and from them.
package stargate
