package v1alpha1

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group served by Stargate.
const GroupName = "stargate.io"

// SchemeGroupVersion is the group and version of the types in this package.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

var (
	// SchemeBuilder collects the functions that add this version to a scheme.
	SchemeBuilder      runtime.SchemeBuilder
	localSchemeBuilder = &SchemeBuilder
	// AddToScheme adds this version's types, defaults, conversions and field labels to a scheme.
	AddToScheme = localSchemeBuilder.AddToScheme
)

func init() {
	// Generated functions (defaults, conversions) register themselves from the
	// generated files; only hand-written ones are listed here.
	localSchemeBuilder.Register(addKnownTypes, addDefaultingFuncs, addFieldLabelConversions)
}

// Resource returns a group-qualified resource of this version.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion,
		&Hardware{}, &HardwareList{},
		&Template{}, &TemplateList{},
		&Job{}, &JobList{},
		&Datacenter{}, &DatacenterList{},
		&Campaign{}, &CampaignList{},
		&RepaveRequest{},
	)
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}

// selectableFields lists, per kind, the field selectors clients may use beyond
// metadata.name and metadata.namespace. The registries' GetAttrs must serve the
// same set; a test keeps the two in step.
var selectableFields = map[string][]string{
	"Hardware":   {"spec.mac", "spec.ipv4", "spec.inventory.sku", "status.state"},
	"Job":        {"spec.hardwareRef.name", "spec.operation", "status.phase", "status.occupying"},
	"Template":   {"spec.osVersion"},
	"Datacenter": {},
	"Campaign":   {"spec.operation", "status.phase"},
}

// SelectableFields returns the non-metadata field selectors supported for a kind.
func SelectableFields(kind string) []string { return selectableFields[kind] }

func addFieldLabelConversions(scheme *runtime.Scheme) error {
	for kind, extra := range selectableFields {
		allowed := map[string]bool{"metadata.name": true, "metadata.namespace": true}
		for _, f := range extra {
			allowed[f] = true
		}
		err := scheme.AddFieldLabelConversionFunc(SchemeGroupVersion.WithKind(kind),
			func(label, value string) (string, string, error) {
				if allowed[label] {
					return label, value, nil
				}
				return "", "", fmt.Errorf("field label %q is not supported for %s", label, kind)
			})
		if err != nil {
			return err
		}
	}
	return nil
}
